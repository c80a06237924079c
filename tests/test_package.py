import shutil
import subprocess
import sys
import zipfile
from pathlib import Path


def test_import_pulls_in_no_training_framework():
    code = ("import sys, dejavu; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'torchvision', 'lpips', 'matplotlib', 'tensorboard')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_wheel_ships_every_data_file(tmp_path):
    """Configs and the tiny CLIP's config must be in the wheel, not only in an editable install."""
    root = Path(__file__).resolve().parent.parent
    tree = tmp_path / "tree"  # a clean copy: a stale build/ folder would hide a missing file
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "src"):
        (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(tree)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("dejavu_dense-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = root / "src" / "dejavu"
    data = [p.relative_to(package.parent).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix in (".yaml", ".json")]
    assert "dejavu/extensions/clip_configs/dejavu-tiny-clip.json" in data
    assert [p for p in data if p not in shipped] == []
