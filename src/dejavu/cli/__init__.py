"""The ``dejavu`` command line: it only dispatches to a command.

``fit``, ``validate`` and ``test`` are LightningCLI (:mod:`dejavu.training.lightning_cli`); ``demo``,
``compare``, ``bench``, ``predict`` and ``export`` are modules of this package. Each command is imported
when it is asked for.
"""

from __future__ import annotations

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

`dejavu COMMAND --help` gives the options of one command."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dejavu`` console command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        if not argv:
            raise SystemExit(2)
    elif argv[0] == "demo":
        from .demo import main as demo

        demo(argv[1:])
    elif argv and argv[0] == "compare":
        from .compare import main as compare

        compare(argv[1:])
    elif argv and argv[0] == "bench":
        from .bench import main as bench

        bench(argv[1:])
    elif argv[0] in ("predict", "export"):
        from .deploy import export_main, predict_main

        (predict_main if argv[0] == "predict" else export_main)(argv[1:])
    else:
        from ..training.lightning_cli import DejaVuCLI

        DejaVuCLI(args=argv)
