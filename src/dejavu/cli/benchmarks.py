"""``dejavu bench``: runs the benchmark harness of a source checkout, ``benchmarks/bench.py``. The harness
measures; it is not part of the library, so an installed wheel has none and says where to get it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["bench"]

HARNESS = Path(__file__).resolve().parents[3] / "benchmarks" / "bench.py"  # src/dejavu/cli -> the checkout


def bench(argv: list[str]) -> None:
    """``python benchmarks/bench.py ARGV`` of the checkout this package is installed from (``pip install -e``)."""
    if not HARNESS.is_file():
        raise SystemExit("dejavu bench: the benchmark harness is benchmarks/bench.py of a source checkout, which this "
                         "installation lacks; clone the repository, pip install -e . there, and run dejavu bench (or "
                         "python benchmarks/bench.py) from it")
    sys.path.insert(0, str(HARNESS.parent))  # as `python benchmarks/bench.py` runs: its helpers beside it
    spec = importlib.util.spec_from_file_location("dejavu_benchmarks_bench", HARNESS)
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    harness.main(argv)
