"""The ``dejavu`` command line: it only dispatches to a command.

``fit``, ``validate`` and ``test`` are LightningCLI (:mod:`dejavu.training.lightning_cli`); ``demo``,
``compare``, ``predict`` and ``export`` are modules of this package; ``bench`` runs the checkout's
``benchmarks/bench.py``. Each command is imported when it is asked for.
"""

from __future__ import annotations

import difflib
import os
import re
import sys

USAGE = """usage: dejavu COMMAND [ARGS...]

Regenerative learning (DejaVu, DDeP) for dense prediction.

commands:
  fit        train a network from a YAML config (--config FILE, --section.key value overrides)
  validate   evaluate a checkpoint on the validation split (--ckpt_path FILE)
  test       evaluate a checkpoint on a split, optionally under noise (--data.split, --model.test_noise)
  demo       train a baseline and a DejaVu model on synthetic scenes and compare them (no download)
  compare    train two configs over several seeds; paired differences with 95% intervals
  bench      measure DejaVu's training cost, redaction speed, data rate and zero inference cost
  predict    run a trained network over a folder of images and write prediction files
  export     export a trained network to ONNX or a torch.export program (dynamic batch and size)
  configs    list the configs shipped with the package, or those whose name holds each WORD given
             (--config takes their names from any folder)
  fake-data  write a small fake copy of a paper dataset in its official layout, to smoke-test a recipe

`dejavu COMMAND --help` gives the options of one command; `dejavu --version` the version. A mistake
prints its message; add --debug (or set DEJAVU_DEBUG=1) for the traceback."""


COMMANDS = ("fit", "validate", "test", "demo", "compare", "bench", "predict", "export", "configs", "fake-data")
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               FloatingPointError)


def _user_errors() -> tuple[type[BaseException], ...]:
    """:data:`USER_ERRORS`, an argument of the wrong type, and Lightning's refusal of a Trainer setting."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from ..arguments import ArgumentTypeError

    return (*USER_ERRORS, ArgumentTypeError, MisconfigurationException)


def _message(error: BaseException, command: str) -> str:
    """The error as one line that starts with the command; a Trainer argument Lightning names in
    backquotes (`max_epochs`) is written as the option that sets it (`--trainer.max_epochs`)."""
    text = str(error)
    if type(error).__name__ == "MisconfigurationException":
        import inspect

        from lightning.pytorch import Trainer

        names = set(inspect.signature(Trainer).parameters)
        text = re.sub(r"`(\w+)`", lambda m: f"--trainer.{m.group(1)}" if m.group(1) in names else m.group(0), text)
    return text if text.startswith("dejavu") else f"dejavu {command}: {text}".replace("  ", " ")


def main(argv: list[str] | None = None) -> None:
    """Run one ``dejavu`` command; errors propagate as exceptions (what tests and Python callers want).
    The console command is :func:`console`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        if not argv:
            raise SystemExit(2)
    elif argv[0] == "--version":
        if argv[1:]:
            raise SystemExit(f"dejavu --version takes no arguments, got {' '.join(argv[1:])}")
        from .. import __version__

        print(f"dejavu-dense {__version__}")
    elif argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SystemExit(f"dejavu: unknown command '{argv[0]}'; {hint}the commands are {', '.join(COMMANDS)} "
                         "(dejavu --help says what each does)")
    elif argv[0] == "configs":
        list_configs(argv[1:])
    elif argv[0] == "fake-data":
        fake_data(argv[1:])
    elif argv[0] == "demo":
        from .demo import main as demo

        demo(argv[1:])
    elif argv[0] == "compare":
        from .compare import main as compare

        compare(argv[1:])
    elif argv[0] == "bench":
        from .benchmarks import bench

        bench(argv[1:])
    elif argv[0] in ("predict", "export"):
        from .deploy import export_main, predict_main

        (predict_main if argv[0] == "predict" else export_main)(argv[1:])
    else:
        from ..training.lightning_cli import DejaVuCLI

        DejaVuCLI(args=argv)


def list_configs(words: list[str]) -> None:
    """``dejavu configs [WORD...]``: the shipped configs whose name holds every word (all without one)."""
    from ..training.lightning_cli import packaged_config, packaged_configs

    if any(w.startswith("-") for w in words):
        if words[0] in ("-h", "--help"):
            print("usage: dejavu configs [WORD...]\n\nList the configs shipped with the package whose name holds "
                  "every WORD (e.g. dejavu configs camvid, dejavu configs cityscapes ocr); --config takes them by "
                  "name.")
            return
        raise SystemExit(f"dejavu configs: unknown option {next(w for w in words if w.startswith('-'))}; "
                         "dejavu configs [WORD...] lists the configs whose name holds every word")
    configs = [(n, s) for n, s in packaged_configs() if all(w.lower() in n.lower() for w in words)]
    if not configs:
        folders = sorted({n.split("/")[0] for n, _ in packaged_configs()})
        raise SystemExit(f"dejavu configs: no shipped config's name holds {' and '.join(map(repr, words))}; the "
                         f"folders are {', '.join(folders)}")
    print(f"configs shipped with dejavu-dense ({packaged_config('')}); give one as --config NAME:")
    for name, summary in configs:
        print(f"  {name:45s} {summary}")


def fake_data(argv: list[str]) -> None:
    """``dejavu fake-data NAME DIR``: :func:`dejavu.data.fake.write_fake` from the command line."""
    import argparse

    from ..data.fake import FAKE_LAYOUTS, write_fake

    p = argparse.ArgumentParser(prog="dejavu fake-data", description="Write a small fake copy of a paper dataset "
                                "in its official layout (random images, valid labels), to smoke-test a recipe with "
                                "--data.root DIR before downloading the real one. Its scores mean nothing.")
    p.add_argument("name", choices=sorted(FAKE_LAYOUTS), help="the dataset (kitti: both the Eigen split and "
                   "monodepth2's video split files)")
    p.add_argument("dir", help="a new or empty folder to write it to")
    p.add_argument("--images", type=int, default=4, help="images per split")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size (default: the dataset's own, "
                   "scaled down)")
    a = p.parse_args(argv)
    root = write_fake(a.name, a.dir, a.images, a.size)
    print(f"dejavu fake-data: wrote a fake {a.name} ({a.images} images per split) to {root}; give it as "
          f"--data.root {root} (dejavu configs {a.name.split('_')[0]} lists its recipes)")


def console() -> None:
    """The ``dejavu`` console command: :func:`main`, where a user's mistake (a missing file, a bad value,
    weights that cannot be downloaded offline, an existing output) prints its message and exits 1
    instead of a 40-line traceback. ``--debug`` anywhere, or ``DEJAVU_DEBUG=1``, keeps the traceback."""
    argv = sys.argv[1:]
    debug = "--debug" in argv or os.environ.get("DEJAVU_DEBUG", "").strip().lower() in ("1", "true", "yes")
    argv = [a for a in argv if a != "--debug"]
    try:
        main(argv)
    except Exception as e:
        if debug or not isinstance(e, _user_errors()):
            raise
        command = argv[0] if argv and argv[0] in COMMANDS else ""
        print(f"{_message(e, command)}\n(the traceback: add --debug, or set DEJAVU_DEBUG=1)", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        if debug:
            raise
        print("dejavu: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
