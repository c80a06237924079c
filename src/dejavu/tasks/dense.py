"""The dense tasks: semantic segmentation, depth, surface normals, and several at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex

from ..conditioning import depth_map, hard_probabilities, probabilities, unit_vectors
from ..data import distinct_palette
from .base import Task
from .metrics import AngleMetrics, BoundaryIoU, DepthMetrics
from .registry import create_task, register_task
from .views import DEPTH_SCALE, FileContent, Palette, class_colours, indexed_png, inverse_depth_colours, to_uint8

__all__ = ["Depth", "MultiTask", "Normals", "Segmentation"]


@register_task("segmentation")
class Segmentation(Task):
    """Semantic segmentation: ``channels = num_classes`` logits; pixels equal to ``ignore_index`` are
    left out of the loss and the metrics. Metrics: ``mIoU`` (mean over classes present in prediction
    or target) and ``pixel_acc``, from torchmetrics, ``boundary_iou`` (:class:`BoundaryIoU`), and the
    ``confusion`` matrix (true class x predicted class), from which runs report each class's IoU.
    Condition: softmax probabilities, or with ``hard_condition=True`` their one-hot arg-max with the
    softmax's gradient (:func:`dejavu.conditioning.hard_probabilities`). ``class_names`` (from the dataset
    under ``dejavu fit``) are DejaVu-TS's text prompts unless it is given its own.

    Raises:
        TypeError: labels that are not integers.
        ValueError: a label outside ``0..num_classes - 1`` that is not ``ignore_index`` (names it).
    """

    name, key, monitor = "semantic", "semantic", ("mIoU", "max")
    from_dataset = ("num_classes", "ignore_index", "class_names")

    def __init__(self, num_classes: int, ignore_index: int = 255, hard_condition: bool = False,
                 class_names: list[str] | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"Segmentation: num_classes must be >= 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Segmentation: {len(class_names)} class_names for num_classes={num_classes}")
        self.channels, self.num_classes, self.ignore_index = num_classes, num_classes, ignore_index
        self.hard_condition, self.class_names = hard_condition, class_names

    def _target(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = super()._target(target)
        if tgt.is_floating_point() or tgt.is_complex() or tgt.dtype == torch.bool:
            raise TypeError(f"Segmentation: labels must be integer class ids (e.g. torch.long), got {tgt.dtype}; "
                            "convert them with .long()")
        # out-of-range ids fail deep inside cross_entropy (a device-side assert on CUDA) or torchmetrics
        bad = ((tgt < 0) | (tgt >= self.num_classes)) & (tgt != self.ignore_index)
        if bad.any():
            raise ValueError(f"Segmentation: label {int(tgt[bad][0])} is outside 0..{self.num_classes - 1} and is not "
                             f"ignore_index={self.ignore_index}; check num_classes and the label encoding (e.g. map "
                             "the dataset's ids to train ids) or set ignore_index")
        return tgt.long()

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        """Cross-entropy averaged over the labelled pixels; 0 (and no gradient) for a batch whose pixels
        are all ``ignore_index``, where the mean over no pixel would be NaN."""
        tgt = self._target(target)
        total = F.cross_entropy(self._resized(raw, tgt.shape[-2:]), tgt, ignore_index=self.ignore_index,
                                reduction="sum")
        return total / (tgt != self.ignore_index).sum().clamp_min(1)  # no device sync

    def condition(self, raw: Tensor) -> Tensor:
        return hard_probabilities(raw) if self.hard_condition else probabilities(raw)

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        """One-hot labels; ignored pixels get the uniform distribution."""
        tgt = self._target(target)
        ignored = tgt == self.ignore_index
        onehot = F.one_hot(tgt.masked_fill(ignored, 0).long(), self.num_classes).permute(0, 3, 1, 2).float()
        return torch.where(ignored[:, None], torch.full_like(onehot, 1 / self.num_classes), onehot)

    def metrics(self) -> MetricCollection:
        kw = {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "validate_args": False}
        return MetricCollection({"mIoU": MulticlassJaccardIndex(average="macro", **kw),
                                 "pixel_acc": MulticlassAccuracy(average="micro", **kw),
                                 "boundary_iou": BoundaryIoU(self.num_classes, self.ignore_index),
                                 # rows: the true class, columns: the predicted one; per-class IoU comes from it
                                 "confusion": MulticlassConfusionMatrix(**kw)})


    def predicted_map(self, raw: Tensor, size: Sequence[int] | None = None) -> Tensor:
        return raw.argmax(1)

    def view(self, value: Tensor, palette: Palette = None) -> np.ndarray:
        return class_colours(value.numpy(), self.num_classes, palette)

    def legend(self, palette: Palette = None, names: Sequence[str] | None = None) -> list[tuple[str | None, tuple]]:
        names = names or self.class_names or [None] * self.num_classes
        colours = palette or distinct_palette(self.num_classes)
        return [(name, tuple(colours[i])) for i, name in enumerate(names[:self.num_classes])]

    def prediction_files(self, stem: str, raw_ids: bool = False) -> list[str]:
        """The class ids as a palette PNG (shown in the class colours), and with ``raw_ids`` as a plain
        8- or 16-bit PNG."""
        return [f"{stem}.png"] + ([f"{stem}_ids.png"] if raw_ids else [])

    def predicted_files(self, value: Tensor, stem: str, palette: Palette = None, raw_ids: bool = False
                        ) -> dict[str, FileContent]:
        ids = value.numpy()
        files: dict[str, FileContent] = {f"{stem}.png": indexed_png(ids, self.num_classes, palette)}
        if raw_ids:
            files[f"{stem}_ids.png"] = Image.fromarray(ids.astype(np.uint16 if self.num_classes > 256 else np.uint8))
        return files


# the KITTI evaluation crops, as fractions of the image's (height, width): (top, bottom), (left, right)
EVAL_CROPS = {"garg": ((0.40810811, 0.99189189), (0.03594771, 0.96405229)),
              "eigen": ((0.3324324, 0.91351351), (0.0359477, 0.96405229))}


@register_task("depth")
class Depth(Task):
    """Monocular depth: one channel holding log-depth; ``decode`` gives metres (``exp``).

    Args:
        loss: ``"l1"`` (on metres) or ``"silog"`` (scale-invariant log error, Eigen et al., with
            ``lambda=0.85``).
        max_depth: targets above it are left out (``None``: keep all). Targets ``<= 0`` are always left out.
        eval_crop: evaluate inside the KITTI crop of Garg et al. (``"garg"``) or Eigen et al.
            (``"eigen"``) only, as the KITTI literature reports (with ``max_depth=80``); ``None``: everywhere.

    Condition: depth normalised per image to ``[0, 1]``, so the CRM sees shape rather than scale.

    Raises:
        ValueError: a batch without a single valid target pixel (its loss would be NaN).
    """

    name, key, channels, monitor = "depth", "depth", 1, ("abs_rel", "min")

    def __init__(self, loss: str = "l1", max_depth: float | None = None, eval_crop: str | None = None) -> None:
        if loss not in ("l1", "silog"):
            raise ValueError(f"Depth: loss must be 'l1' or 'silog', got {loss!r}")
        if eval_crop is not None and eval_crop not in EVAL_CROPS:
            raise ValueError(f"Depth: eval_crop must be one of {sorted(EVAL_CROPS)} or None, got {eval_crop!r}")
        self.loss_kind, self.max_depth, self.eval_crop = loss, max_depth, eval_crop

    def decode(self, raw: Tensor) -> Tensor:
        return raw.clamp(-10, 10).exp()

    def view(self, value: Tensor, palette: Palette = None) -> np.ndarray:
        return inverse_depth_colours(value[0].numpy())

    def prediction_files(self, stem: str, raw_ids: bool = False) -> list[str]:
        """Metres as a 16-bit PNG (x 256, KITTI's convention) and as float32 in ``.npy``."""
        return [f"{stem}_depth.png", f"{stem}_depth.npy"]

    def predicted_files(self, value: Tensor, stem: str, palette: Palette = None, raw_ids: bool = False
                        ) -> dict[str, FileContent]:
        metres = value[0].numpy().astype(np.float32)
        return {f"{stem}_depth.png": Image.fromarray(np.clip(metres * DEPTH_SCALE, 0, 65535).astype(np.uint16)),
                f"{stem}_depth.npy": metres}

    def _valid(self, t: Tensor) -> Tensor:
        valid = (t > 0) & torch.isfinite(t)
        return valid & (t <= self.max_depth) if self.max_depth is not None else valid

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        raw = self._resized(raw, tgt.shape[-2:])
        valid = self._valid(tgt)
        if not valid.any():  # the mean over no pixel is NaN
            cap = f" and <= max_depth={self.max_depth}" if self.max_depth is not None else ""
            raise ValueError(f"Depth: no valid target pixel in this batch of {tgt.shape[0]} (valid: finite, > 0{cap}); "
                             "check the depth files' scale and units")
        if self.loss_kind == "l1":
            return (self.decode(raw) - tgt)[valid].abs().mean()
        g = raw.clamp(-10, 10)[valid] - tgt[valid].log()
        return torch.sqrt((g**2).mean() - 0.85 * g.mean() ** 2 + 1e-8)

    def condition(self, raw: Tensor) -> Tensor:
        return depth_map(self.decode(raw))

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        """The ground-truth depth normalised like ``condition``; invalid pixels take the farthest valid depth."""
        tgt = self._target(target).float()
        valid = self._valid(tgt)
        far = torch.where(valid, tgt, torch.zeros_like(tgt)).amax(dim=(1, 2, 3), keepdim=True)
        return depth_map(torch.where(valid, tgt, far))

    def metrics(self) -> MetricCollection:
        return MetricCollection({"depth": DepthMetrics()})

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        pred = self.decode(self._resized(raw.detach().float(), tgt.shape[-2:]))
        metrics.update(pred, self.evaluated(tgt))

    def evaluated(self, target: Tensor) -> Tensor:
        """The target with 0 (left out) wherever it is invalid, beyond ``max_depth`` or outside ``eval_crop``."""
        valid = self._valid(target)
        if self.eval_crop is not None:
            (top, bottom), (left, right) = EVAL_CROPS[self.eval_crop]
            h, w = target.shape[-2:]
            inside = torch.zeros_like(valid)
            inside[..., int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
            valid &= inside
        return torch.where(valid, target, torch.zeros_like(target))


@register_task("normals")
class Normals(Task):
    """Surface normals: three channels, ``decode`` makes unit vectors; loss ``1 - cos`` over valid pixels
    (target of length > 0.5), targets scaled to unit length first (as the angle metrics do). Condition:
    the unit normals.

    Raises:
        ValueError: a batch without a single valid target normal (its loss would be NaN).
    """

    name, key, channels, monitor = "normals", "normals", 3, ("mean_angle", "min")

    def decode(self, raw: Tensor) -> Tensor:
        return unit_vectors(raw)

    def view(self, value: Tensor, palette: Palette = None) -> np.ndarray:
        return ((value.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)

    def prediction_files(self, stem: str, raw_ids: bool = False) -> list[str]:
        """The unit normals as RGB, ``(n + 1) / 2``."""
        return [f"{stem}_normals.png"]

    def predicted_files(self, value: Tensor, stem: str, palette: Palette = None, raw_ids: bool = False
                        ) -> dict[str, FileContent]:
        return {f"{stem}_normals.png": Image.fromarray(to_uint8(self.view(value)))}

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        cos = (self.decode(self._resized(raw, tgt.shape[-2:])) * F.normalize(tgt, dim=1)).sum(1)
        valid = tgt.norm(dim=1) > 0.5
        if not valid.any():  # the mean over no pixel is NaN
            raise ValueError(f"Normals: no valid target normal in this batch of {tgt.shape[0]} (valid: length > 0.5); "
                             "targets must be unit vectors, (0, 0, 0) where unknown")
        return (1 - cos[valid]).mean()

    def condition(self, raw: Tensor) -> Tensor:
        return self.decode(raw)

    def mirror(self, raw: Tensor) -> Tensor:
        """Mirrored back, with the x component negated: a mirrored surface faces the other way."""
        return raw.flip(-1) * raw.new_tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        return F.normalize(self._target(target).float(), dim=1)  # (0, 0, 0) where unknown stays so

    def metrics(self) -> MetricCollection:
        return MetricCollection({"normals": AngleMetrics()})


@register_task("multitask")
class MultiTask(Task):
    """Several tasks predicted by one network as one tensor: the tasks' channels, concatenated in order.
    ``tasks`` are :class:`Task` objects or specs ``{"name": ..., **kwargs}`` for :func:`create_task`.

    The loss is the weighted sum of the task losses; metrics are prefixed with the task name
    (``semantic/mIoU``, ``depth/abs_rel``...); the condition concatenates every task's condition, as
    the paper does for multi-task learning.

    Example:
        >>> mt = MultiTask([Segmentation(6), Depth(), Normals()])
        >>> mt.channels
        10
    """

    name, key = "multitask", ""

    def __init__(self, tasks: list[Task | Mapping], weights: list[float] | None = None) -> None:
        if not tasks:
            raise ValueError("MultiTask: tasks must not be empty (give tasks=[{'name': ...}, ...] or Task objects)")
        tasks = [t if isinstance(t, Task) else create_task(**dict(t)) for t in tasks]
        if any(t.query_based for t in tasks):
            raise ValueError("MultiTask: its tasks share one dense output, split by channels; a query-based task "
                             "(query_panoptic) has none: train it on its own")
        if weights is not None and len(weights) != len(tasks):
            raise ValueError(f"MultiTask: need one weight per task ({len(tasks)}), got {weights!r}")
        self.tasks, self.weights = list(tasks), list(weights or [1.0] * len(tasks))
        self.channels = sum(t.channels for t in self.tasks)
        first = self.tasks[0]
        self.monitor = (f"{first.name}/{first.monitor[0]}", first.monitor[1])

    @property
    def subtasks(self) -> list[Task]:
        return self.tasks

    @property
    def head_channels(self) -> list[int]:
        return [t.channels for t in self.tasks]

    def split(self, raw: Tensor) -> list[Tensor]:
        self._check_raw(raw)
        return list(raw.split([t.channels for t in self.tasks], dim=1))

    def _target(self, target):
        if not isinstance(target, Mapping):
            raise TypeError("MultiTask: target must be the batch dict holding every task's entry")
        return target

    def loss(self, raw: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        """The weighted sum of the task losses. With partial labels (``target["labelled"]``: a bool
        ``(B,)`` per task key), each task's loss is over the images labelled for it, and a task with
        none in the batch adds nothing."""
        target = self._target(target)
        labelled = target.get("labelled")
        total = raw.sum() * 0  # keeps the graph when no task is labelled in a batch
        for t, w, r in zip(self.tasks, self.weights, self.split(raw), strict=True):
            keep = labelled.get(t.key) if labelled is not None else None
            if keep is None:
                total = total + w * t.loss(r, target)
            elif keep.any():
                total = total + w * t.loss(r[keep], {t.key: target[t.key][keep]})
        return total

    def decode(self, raw: Tensor) -> dict[str, Tensor]:
        return {t.name: t.decode(r) for t, r in zip(self.tasks, self.split(raw), strict=True)}

    def modules(self) -> dict:
        return {f"{t.name}_{k}": m for t in self.tasks for k, m in t.modules().items()}

    def condition(self, raw: Tensor) -> Tensor:
        return torch.cat([t.condition(r) for t, r in zip(self.tasks, self.split(raw), strict=True)], dim=1)

    def mirror(self, raw: Tensor) -> Tensor:
        return torch.cat([t.mirror(r) for t, r in zip(self.tasks, self.split(raw), strict=True)], dim=1)

    def target_condition(self, target: Mapping[str, Tensor]) -> Tensor | None:
        parts = [t.target_condition(self._target(target)) for t in self.tasks]
        return None if any(p is None for p in parts) else torch.cat(parts, dim=1)

    def metrics(self) -> MetricCollection:
        return MetricCollection({t.name: _TaskMetrics(t) for t in self.tasks}, compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Mapping[str, Tensor]) -> None:
        target = self._target(target)
        for t, r in zip(self.tasks, self.split(raw), strict=True):
            metrics[t.name].update(r, target)


class _TaskMetrics(Metric):
    """One task's metrics inside a multi-task collection, reported as ``task/metric``."""

    full_state_update = False

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task, self.inner = task, task.metrics()

    def update(self, raw: Tensor, target: Mapping[str, Tensor]) -> None:
        self.task.update_metrics(self.inner, raw, target)

    def compute(self) -> dict[str, Tensor]:
        return {f"{self.task.name}/{k}": v for k, v in self.inner.compute().items()}

    def reset(self) -> None:
        super().reset()
        self.inner.reset()
