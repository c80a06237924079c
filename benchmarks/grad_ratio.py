"""How strong is DejaVu's training signal? The norm of the gradient the DejaVu loss sends into a trained
network's prediction, over the task loss's, and the cosine between the two, on validation batches
(train-mode losses, eval-mode network). A cosine near 0 means DejaVu pushes the prediction in a direction
the labels do not; near -1, against them.

    python benchmarks/grad_ratio.py RUN_DIR [RUN_DIR ...] [--batches 4]

Each RUN_DIR is a finished DejaVu run (``config.yaml``, ``model.safetensors``, ``crm.safetensors``; e.g.
``runs/study/synthetic/levers/gamma10/seed0``); nothing is unpickled. At gamma 1 with LPIPS off the
ratio is about 1% on synthetic segmentation (benchmarks/RESULTS.md): the network barely hears the CRM.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from dejavu.training.lightning_cli import DejaVuCLI


def grad_ratios(run: Path, batches: int) -> tuple[float, list[float], list[float]]:
    """The run's gamma, and the gradient-norm ratio and cosine on each of its first ``batches`` validation batches."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = DejaVuCLI(args=["--config", str(run / "config.yaml"), "--run_dir", tmp,
                              "--model.dejavu.regenerator_weights", "null"], run=False)
    module, data = cli.model, cli.datamodule
    if module.dejavu_loss is None:
        raise SystemExit(f"{run}: not a DejaVu run (its config has no model.dejavu)")
    module.net.load_state_dict(load_file(str(run / "model.safetensors")))
    module.dejavu_loss.regenerator.load_state_dict(load_file(str(run / "crm.safetensors")))
    module.net.eval()
    ratios, cosines = [], []
    for i, batch in zip(range(batches), data.val_dataloader(), strict=False):
        batch = module.task.prepare(batch)
        with torch.no_grad():
            raw = module.net(batch["image"])
        raw.requires_grad_(True)
        (g_task,) = torch.autograd.grad(module.task.loss(raw, batch), raw)
        out = module.dejavu_loss(batch["image"], raw, generator=torch.Generator().manual_seed(i))
        (g_dejavu,) = torch.autograd.grad(out.loss, raw)
        ratios.append(float(g_dejavu.norm() / g_task.norm()))
        cosines.append(float(torch.nn.functional.cosine_similarity(g_dejavu.flatten(), g_task.flatten(), dim=0)))
    return module.dejavu_loss.gamma, ratios, cosines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--batches", type=int, default=4)
    a = p.parse_args()
    print("| run | gamma | DejaVu / task gradient norm on the prediction | cosine |\n|---|---|---|---|")
    for run in a.runs:
        gamma, r, c = grad_ratios(run, a.batches)
        print(f"| {run} | {gamma:g} | {statistics.fmean(r):.4f} ({min(r):.4f}–{max(r):.4f}) | "
              f"{statistics.fmean(c):+.3f} ({min(c):+.3f}–{max(c):+.3f}) |")


if __name__ == "__main__":
    main()
