"""Figures in the manner of the paper's Figure 6: input, ground truth, prediction(s), redacted, regenerated."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch
from torch import Tensor

from ..conditioning import blank_condition
from ..models import QueryPrediction
from ..tasks import Task


def dejavu_figure(path: str | Path, images: Tensor, task: Task, targets: dict[str, Tensor],
                  predictions: dict[str, Tensor], redacted: Tensor | None = None,
                  regenerated: Tensor | None = None, regenerated_blank: Tensor | None = None,
                  palette: Sequence[Sequence[int]] | None = None) -> Path:
    """Write a grid, one row per image: input, ground truth and prediction per task, redacted, regenerated.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        targets: the batch dict (ground truth under each task's ``key``).
        predictions: raw network outputs ``(B, C, H, W)`` (or a query-based network's
            :class:`~dejavu.models.QueryPrediction`) by name (e.g. ``{"baseline": ..., "DejaVu": ...}``).
        redacted, regenerated: ``(B, 3, H, W)`` in ``[0, 1]`` from :class:`dejavu.DejaVuLoss`, if any.
        regenerated_blank: the same regeneration from a blank condition
            (:func:`dejavu.conditioning.blank_condition`): what the CRM makes without the prediction.
    """
    columns: list[tuple[str, list[np.ndarray]]] = [
        ("input", [im.permute(1, 2, 0).clamp(0, 1).numpy() for im in images])
    ]
    for i, t in enumerate(task.subtasks):
        columns.append((f"{t.name}: ground truth", [t.view(y, palette) for y in t.target_map(targets)]))
        for name, raw in predictions.items():
            answers = t.predicted_map(task.split(raw)[i], images.shape[-2:])
            columns.append((f"{t.name}: {name}", [t.view(a, palette) for a in answers]))
    for title, extra in (("redacted", redacted), ("regenerated", regenerated),
                         ("regenerated from a blank condition", regenerated_blank)):
        if extra is not None:
            columns.append((title, [x.permute(1, 2, 0).float().clamp(0, 1).numpy() for x in extra]))
    rows, cols = len(images), len(columns)
    h, w = images.shape[-2:]
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols * w / max(h, w), 1.9 * rows * h / max(h, w) + 0.3),
                             squeeze=False)
    for c, (title, pics) in enumerate(columns):
        axes[0, c].set_title(title, fontsize=7)
        for r in range(rows):
            axes[r, c].imshow(pics[r], interpolation="nearest")
            axes[r, c].axis("off")
    handles = legend_handles(task, palette)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=6, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def module_figure(module, batch: dict[str, Tensor], path: str | Path, generator_seed: int = 0,
                  palette: Sequence[Sequence[int]] | None = None) -> Path:
    """The figure for a trained :class:`~dejavu.training.module.DejaVuModule` on one batch (eval mode)."""
    was_training = module.training
    module.eval()
    batch = {k: v.to(module.device) for k, v in batch.items() if isinstance(v, Tensor)}
    batch = module.fixed_prepare(batch, 0)
    raw, extras = module.predict(batch["image"])
    regenerated = extras.get("sa_regenerated")
    redacted = module.net.redact(batch["image"]) if regenerated is not None else None
    blank = None
    loss = module.dejavu_loss
    if loss is not None:
        cond = loss.condition(batch["image"], module.task.render(raw))
        images = {}
        for name, c in (("prediction", cond), ("blank", blank_condition(cond))):
            generator = torch.Generator(module.device).manual_seed(generator_seed)  # one mask for both
            images[name] = loss.regenerate(batch["image"], c, generator)
        _, redacted, steps = images["prediction"]
        regenerated, blank = steps[-1], images["blank"][2][-1]
    module.train(was_training)
    cpu = {k: v.float().cpu() if k == "image" else v.cpu() for k, v in batch.items()}
    images = [None if x is None else x.float().cpu() for x in (redacted, regenerated, blank)]
    raw = raw.apply(_on_cpu) if isinstance(raw, QueryPrediction) else _on_cpu(raw)
    return dejavu_figure(path, cpu["image"], module.task, cpu, {"prediction": raw}, *images,
                         palette=palette)


def _on_cpu(x: Tensor) -> Tensor:
    return x.float().cpu()


def legend_handles(task: Task, palette: Sequence[Sequence[int]] | None = None) -> list[Patch]:
    """A colour patch per class of the first subtask that names its classes (none otherwise)."""
    for t in task.subtasks:
        legend = t.legend(palette)
        if legend and None not in (name for name, _ in legend):
            return [Patch(color=np.array(colour) / 255, label=name) for name, colour in legend]
    return []


def confusion_figure(confusion: np.ndarray, names: Sequence[str], path: str | Path, title: str = "") -> None:
    """A confusion matrix as an image: each row (true class) as fractions of its pixels, so classes of
    any frequency read alike; each class's IoU beside its name."""
    confusion = np.asarray(confusion, dtype=np.float64)
    rows = confusion / np.clip(confusion.sum(1, keepdims=True), 1, None)
    iou = per_class_iou(confusion)
    n = len(names)
    fig, ax = plt.subplots(figsize=(2 + 0.4 * n, 1.5 + 0.4 * n))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    labels = [f"{name} ({'n/a' if np.isnan(v) else f'{v:.2f}'})" for name, v in zip(names, iou, strict=True)]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (IoU)")
    ax.set_title(title or "confusion: each row as fractions of its pixels", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """Each class's IoU from a confusion matrix (rows true, columns predicted): NaN for a class that is
    neither in the targets nor predicted."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)
