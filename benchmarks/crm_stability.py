"""Every DejaVu preset under the optimisers the papers and users run: 200 steps of a small network and
the preset's CRM on procedural scenes, then the held-out regeneration MSE against the redacted
input's (benchmarks/RESULTS.md, "A regenerator that trains under any optimiser").

    python benchmarks/crm_stability.py [--seeds 3] [--mode own|shared|both]

``own``: the CRM under its own Adam (``DejaVuLoss.regenerator_optimizer``), the network under each
optimiser; ``shared``: the CRM's parameters in the network's optimiser. The training loop is the
test suite's (tests/test_stability.py), so the table and the tests measure the same thing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_stability import HELD_OUT, OPTIMISERS, PRESETS, TRAIN, SyntheticScenes, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mode", choices=("own", "shared", "both"), default="both")
    args = parser.parse_args()
    ds = SyntheticScenes(TRAIN + HELD_OUT, size=(64, 64), seed=0)
    items = [ds[i] for i in range(len(ds))]
    scenes = {k: torch.stack([it[k] for it in items]) for k in ("image", "semantic", "depth", "normals")}
    modes = ("own", "shared") if args.mode == "both" else (args.mode,)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.seeds} seeds, 200 steps, 64x64")
    print("| CRM's optimiser | preset | network's optimiser | finite | regen MSE / redacted (held out) "
          "| largest DejaVu loss / first | seconds |")
    print("|---|---|---|---|---|---|---|")
    for mode in modes:
        for preset in sorted(PRESETS):
            for name in OPTIMISERS:
                t0, ratios, finite, growth = time.time(), [], True, []
                for seed in range(args.seeds):
                    losses, _, after, redacted = train(preset, name, seed, scenes, mode == "shared")
                    finite &= len(losses) == 200 and all(map(math.isfinite, losses))
                    ratios.append(after / redacted)
                    growth.append(max(losses) / losses[0] if losses[0] > 0 else math.nan)
                spread = f" ± {statistics.stdev(ratios):.3f}" if len(ratios) > 1 else ""
                who = "its own Adam 1e-3" if mode == "own" else "the network's"
                print(f"| {who} | {preset} | {name} | {'yes' if finite else 'NO'} | "
                      f"{statistics.mean(ratios):.3f}{spread} | {max(growth):.3g} | {time.time() - t0:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
