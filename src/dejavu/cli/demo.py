"""``dejavu demo``: baseline and DejaVu on synthetic scenes, side by side, in a few minutes on a CPU.

Trains ``configs/synthetic/segmentation_baseline.yaml`` and ``segmentation_dejavu.yaml`` (same network,
data, schedule and seed; they differ only in DejaVu), then writes to ``--out``: each arm's run folder,
``summary.json``, ``summary.md`` and ``figure.png`` (input, ground truth, both predictions, redacted
and regenerated images). It reports what it measured, one seed; ``dejavu compare`` gives seeds and
confidence intervals.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from ..training.callbacks import spread_batch, write_json
from ..training.figures import dejavu_figure
from ..training.lightning_cli import fit_run, packaged_config
from ..training.module import DejaVuModule

ARMS = {"baseline": "synthetic/segmentation_baseline.yaml", "DejaVu": "synthetic/segmentation_dejavu.yaml"}


def table(rows: dict[str, dict[str, float]], arms: list[str]) -> str:
    """A Markdown table: one row per metric, one column per arm, and the difference of the last two."""
    metrics = sorted({k for arm in arms for k in rows[arm]})
    lines = [f"| metric | {' | '.join(arms)} | difference |", "|---" * (len(arms) + 2) + "|"]
    for m in metrics:
        vals = [rows[a].get(m) for a in arms]
        diff = f"{vals[-1] - vals[-2]:+.4f}" if None not in vals[-2:] else ""
        lines.append(f"| {m} | " + " | ".join(f"{v:.4f}" if v is not None else "" for v in vals) + f" | {diff} |")
    return "\n".join(lines)


def load_module(run_dir: Path) -> DejaVuModule:
    return DejaVuModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                             weights_only=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="dejavu demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per arm (default: 10)")
    p.add_argument("--quick", action="store_true", help="a tiny run (1 epoch on 32 images) to check the plumbing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        if not a.overwrite:
            raise SystemExit(f"dejavu demo: {out} already exists; pass --overwrite or choose another --out")
        shutil.rmtree(out)
    extra = ["--trainer.max_epochs", "1" if a.quick else str(a.epochs)]
    if a.quick:
        extra += ["--data.train_length", "32", "--data.val_length", "16"]

    results, seconds = {}, {}
    for arm, config in ARMS.items():
        print(f"\n=== dejavu demo: training the {arm} arm ({config}) ===", flush=True)
        t = time.perf_counter()
        results[arm] = {k: v for k, v in fit_run(packaged_config(config), out / arm.lower(), *extra)["val"].items()
                        if "/IoU/" not in k}  # the summary metrics; each run's metrics.json has every class's
        seconds[arm] = time.perf_counter() - t

    modules = {arm: load_module(out / arm.lower()) for arm in ARMS}
    dm_items = _figure_batch(out / "dejavu")
    with torch.no_grad():
        preds = {f"{arm} prediction": m.eval()(dm_items["image"]) for arm, m in modules.items()}
        regen = modules["DejaVu"].dejavu_loss(dm_items["image"], preds["DejaVu prediction"],
                                              generator=torch.Generator().manual_seed(0))
    dejavu_figure(out / "figure.png", dm_items["image"], modules["DejaVu"].task, dm_items, preds,
                  regen.redacted, regen.regenerated)

    arms = list(ARMS)
    summary = {"metrics": results, "train_seconds": seconds, "epochs": 1 if a.quick else a.epochs,
               "configs": ARMS, "seed": 0, "device": "cuda" if torch.cuda.is_available() else "cpu"}
    write_json(out / "summary.json", summary)
    md = (f"# dejavu demo\n\nSynthetic-scene segmentation, validation set, one seed (0), "
          f"{summary['epochs']} epochs per arm on {summary['device']}.\n\n{table(results, arms)}\n\n"
          "Wall time of each run on this machine (training, validation and writing its files; it varies with "
          "whatever else the machine runs, so it is not DejaVu's cost, which `dejavu bench` measures): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".\n\n"
          "One seed says little: differences of a point or two are within seed-to-seed noise. "
          "`dejavu compare --config A --config B --seeds N` gives confidence intervals.\n")
    (out / "summary.md").write_text(md)
    print("\n" + table(results, arms))
    print("\nwall time on this machine (not the method's cost: see dejavu bench): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; wrote {out}/summary.md, "
          f"{out}/summary.json and {out}/figure.png")


def _figure_batch(run_dir: Path, n: int = 4) -> dict[str, torch.Tensor]:
    from ..training.datamodule import DenseDataModule

    dm = DenseDataModule(**{k: v for k, v in _data_config(run_dir).items()})
    return spread_batch(dm.val_dataloader().dataset, n)


def _data_config(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
