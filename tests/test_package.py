import subprocess
import sys


def test_import_pulls_in_no_training_framework():
    code = ("import sys, dejavu; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'torchvision', 'lpips', 'matplotlib', 'tensorboard')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
