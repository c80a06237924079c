import contextlib
import shutil
import subprocess
import sys
import zipfile

import pytest
from helpers import ROOT


def test_import_pulls_in_no_training_framework():
    code = ("import sys, dejavu; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'torchvision', 'lpips', 'matplotlib', 'tensorboard')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_wheel_ships_every_data_file(tmp_path):
    """Configs and the tiny CLIP's config must be in the wheel, not only in an editable install."""
    root = ROOT
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
    assert "dejavu/models/clip_configs/dejavu-tiny-clip.json" in data
    assert [p for p in data if p not in shipped] == []


def dejavu_command(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "dejavu", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_the_command_line_is_consistent():
    """`dejavu --version` works; a mistyped command names the one meant."""
    import dejavu

    assert dejavu_command("--version").stdout.strip() == f"dejavu-dense {dejavu.__version__}"
    typo = dejavu_command("predcit")
    assert typo.returncode == 1 and "unknown command 'predcit'; did you mean 'predict'?" in typo.stderr


def test_a_users_mistake_prints_its_message_not_a_traceback(tmp_path):
    """A user's mistake prints its message alone; --debug adds the traceback."""
    args = ("predict", str(tmp_path), str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    short = dejavu_command(*args)
    assert short.returncode == 1 and "Traceback" not in short.stderr
    assert short.stderr.splitlines()[0].startswith("dejavu predict: ") and len(short.stderr.splitlines()) == 2
    for debug in (dejavu_command(*args, "--debug"), dejavu_command(*args, DEJAVU_DEBUG="1")):
        assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_every_option_has_help_and_compare_explains_its_pass_through(monkeypatch, capsys):
    """`compare --help` did not say what `--` does, and several options had no help text."""
    import argparse

    from dejavu.cli import main

    class ParsedError(Exception):
        pass

    parsers = []

    def parse_args(self, args=None, namespace=None):
        parsers.append(self)
        raise ParsedError

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    for command in ("demo", "compare", "bench", "predict", "export"):
        with contextlib.suppress(ParsedError):
            main([command])
    assert [p.prog for p in parsers] == [f"dejavu {c}" for c in ("demo", "compare", "bench", "predict", "export")]
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in parsers for a in p._actions if not a.help]
    assert missing == []
    monkeypatch.undo()
    with contextlib.suppress(SystemExit):
        main(["compare", "--help"])
    assert "Everything after a lone -- is passed to every run's dejavu fit" in " ".join(capsys.readouterr().out.split())


PARSER_ERRORS = [  # arguments, what the first line says
    (("--data.batch_sise", "4"), "dejavu fit: unknown option --data.batch_sise; did you mean --data.batch_size?"),
    (("--trainer.max_epoch", "1"),
     "dejavu fit: unknown option --trainer.max_epoch; did you mean --trainer.max_epochs?"),
    (("--data.size", "96,128"), 'dejavu fit: --data.size: \'96,128\' is not a valid value; it takes tuple[int, int] '
                                'or null. Write a list as YAML, in quotes: --data.size "[96, 128]"'),
    (("--config", "nowhere/nothing.yaml"), "dejavu fit: --config: File does not exist"),
]


@pytest.mark.parametrize("args,first", PARSER_ERRORS, ids=["mistyped", "abbreviated", "list value", "no config"])
def test_a_parser_error_comes_first_in_a_few_lines(args, first):
    """A parser error is the first line, at most 10 lines in all; an abbreviated option is refused (it would
    match two options once one is added)."""
    config = () if args[0] == "--config" else ("--config", "synthetic/segmentation_baseline.yaml")
    result = dejavu_command("fit", *config, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) <= 10, result.stderr
    assert lines[0].startswith(first), lines[0]
    if args[0] == "--config":
        assert "`dejavu configs` lists the shipped ones" in lines[0]


def test_configs_lists_those_whose_name_holds_the_words(capsys):
    from dejavu.cli import main

    main(["configs", "synthetic", "depth"])
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names and all(n.startswith("synthetic/") and "depth" in n for n in names)
    with pytest.raises(SystemExit, match="no shipped config's name holds 'nothing'"):
        main(["configs", "nothing"])
    with pytest.raises(SystemExit, match="unknown option --all"):
        main(["configs", "--all"])
    with pytest.raises(SystemExit, match="--version takes no arguments"):
        main(["--version", "fit"])


def test_lightnings_refusal_names_the_option(tmp_path):
    """Lightning's refusal of a setting (a negative --trainer.max_epochs) is one short message naming the option."""
    result = dejavu_command("fit", "--config", "synthetic/segmentation_baseline.yaml", "--trainer.max_epochs", "-3",
                            "--run_dir", str(tmp_path / "r"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "dejavu fit: --trainer.max_epochs must be a non-negative integer or -1" in result.stderr
