"""Dense prediction tasks: what the network outputs, its loss, its metrics, and DejaVu's condition.

A task turns the network's raw output ``(B, channels, h, w)`` into everything else:

- ``loss(raw, target)``: the task loss (segmentation cross-entropy with ignore index; depth L1 or
  scale-invariant log; normals cosine);
- ``decode(raw)``: the natural prediction (logits, metric depth, unit normals);
- ``condition(raw)``: the map the CRM is conditioned on (PAPER_NOTES section 1.2), so
  ``DejaVuLoss(task.channels, adapter=task.condition)`` works for any task or combination;
- ``metrics()``: a torchmetrics ``MetricCollection`` that accumulates over a dataset (and syncs under
  DDP); ``compute_metrics(raw, target)`` is the one-batch shortcut.

``target`` is the ground-truth tensor or the batch dict (the task reads its own ``key``). A raw
output smaller than the target is resized to it (bilinear).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.regression import MeanSquaredError

from .losses import _depth_map
from .redaction import random_block_mask

__all__ = ["Denoising", "Depth", "MaskedModeling", "MultiTask", "Normals", "Segmentation", "Task", "create_task"]


class Task:
    """Base class. Subclasses set ``name``, ``key`` (the batch entry), ``channels`` and ``monitor``
    (the metric that says which model is best, and ``"max"`` or ``"min"``)."""

    name: str
    key: str
    channels: int
    monitor: tuple[str, str]

    def _target(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        if isinstance(target, Mapping):
            if self.key not in target:
                raise KeyError(f"{type(self).__name__}: batch has no {self.key!r} entry (has {sorted(target)})")
            return target[self.key]
        return target

    def _check_raw(self, raw: Tensor) -> None:
        if raw.dim() != 4 or raw.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__}: prediction must have shape (B, {self.channels}, H, W), "
                             f"got {tuple(raw.shape)}")

    def _resized(self, raw: Tensor, size: torch.Size) -> Tensor:
        self._check_raw(raw)
        if raw.shape[-2:] != size:
            raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
        return raw

    def decode(self, raw: Tensor) -> Tensor:
        return raw

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor | None:
        """The condition a perfect prediction would give (what ``condition`` makes of the ground
        truth), for DejaVu's reliance measure; ``None`` where the task has no such map."""
        return None

    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The batch the network trains on; pretext tasks (denoising, masking) corrupt the image here."""
        return dict(batch)

    def compute_metrics(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> dict[str, float]:
        """Metrics of one batch, as floats."""
        metrics = self.metrics().to(raw.device)
        self.update_metrics(metrics, raw, target)
        return {k: float(v) for k, v in metrics.compute().items()}

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        metrics.update(self.decode(self._resized(raw.detach().float(), tgt.shape[-2:])), tgt)


class Segmentation(Task):
    """Semantic segmentation: ``channels = num_classes`` logits; pixels equal to ``ignore_index`` are
    left out of the loss and the metrics. Metrics: ``mIoU`` (mean over classes present in prediction
    or target) and ``pixel_acc``, from torchmetrics. Condition: softmax probabilities.
    """

    name, key, monitor = "semantic", "semantic", ("mIoU", "max")

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 2:
            raise ValueError(f"Segmentation: num_classes must be >= 2, got {num_classes}")
        self.channels, self.num_classes, self.ignore_index = num_classes, num_classes, ignore_index

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        return F.cross_entropy(self._resized(raw, tgt.shape[-2:]), tgt, ignore_index=self.ignore_index)

    def condition(self, raw: Tensor) -> Tensor:
        return raw.softmax(dim=1)

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        """One-hot labels; ignored pixels get the uniform distribution."""
        tgt = self._target(target)
        ignored = tgt == self.ignore_index
        onehot = F.one_hot(tgt.masked_fill(ignored, 0).long(), self.num_classes).permute(0, 3, 1, 2).float()
        return torch.where(ignored[:, None], torch.full_like(onehot, 1 / self.num_classes), onehot)

    def metrics(self) -> MetricCollection:
        kw = {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "validate_args": False}
        return MetricCollection({"mIoU": MulticlassJaccardIndex(average="macro", **kw),
                                 "pixel_acc": MulticlassAccuracy(average="micro", **kw)})


class DepthMetrics(Metric):
    """Depth errors pooled over all valid pixels (target > 0) of all images seen.

    ``abs_rel = mean(|p - t| / t)``, ``sq_rel = mean((p - t)^2 / t)``, ``rmse = sqrt(mean((p - t)^2))``,
    ``rmse_log = sqrt(mean((log p - log t)^2))``, ``delta1..3 = share of max(p/t, t/p) < 1.25^k``,
    ``abs_err = mean(|p - t|)``.
    """

    full_state_update = False
    _SUMS = ("n", "abs_rel", "sq_rel", "sq", "sq_log", "delta1", "delta2", "delta3", "abs_err")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in self._SUMS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = (target > 0) & torch.isfinite(target)
        p, t = pred[valid].double().clamp_min(1e-6), target[valid].double()
        ratio = torch.maximum(p / t, t / p)
        diff = p - t
        self.n += valid.sum()
        self.abs_rel += (diff.abs() / t).sum()
        self.sq_rel += (diff**2 / t).sum()
        self.sq += (diff**2).sum()
        self.sq_log += ((p.log() - t.log()) ** 2).sum()
        for k in (1, 2, 3):
            setattr(self, f"delta{k}", getattr(self, f"delta{k}") + (ratio < 1.25**k).sum())
        self.abs_err += diff.abs().sum()

    def compute(self) -> dict[str, Tensor]:
        n = self.n.clamp_min(1)
        return {"abs_rel": self.abs_rel / n, "sq_rel": self.sq_rel / n, "rmse": (self.sq / n).sqrt(),
                "rmse_log": (self.sq_log / n).sqrt(), "delta1": self.delta1 / n, "delta2": self.delta2 / n,
                "delta3": self.delta3 / n, "abs_err": self.abs_err / n}


class Depth(Task):
    """Monocular depth: one channel holding log-depth; ``decode`` gives metres (``exp``).

    Args:
        loss: ``"l1"`` (on metres) or ``"silog"`` (scale-invariant log error, Eigen et al., with
            ``lambda=0.85``).
        max_depth: targets above it are left out (``None``: keep all). Targets ``<= 0`` are always left out.

    Condition: depth normalised per image to ``[0, 1]``, so the CRM sees shape rather than scale.
    """

    name, key, channels, monitor = "depth", "depth", 1, ("abs_rel", "min")

    def __init__(self, loss: str = "l1", max_depth: float | None = None) -> None:
        if loss not in ("l1", "silog"):
            raise ValueError(f"Depth: loss must be 'l1' or 'silog', got {loss!r}")
        self.loss_kind, self.max_depth = loss, max_depth

    def decode(self, raw: Tensor) -> Tensor:
        return raw.clamp(-10, 10).exp()

    def _valid(self, t: Tensor) -> Tensor:
        valid = (t > 0) & torch.isfinite(t)
        return valid & (t <= self.max_depth) if self.max_depth is not None else valid

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        raw = self._resized(raw, tgt.shape[-2:])
        valid = self._valid(tgt)
        if self.loss_kind == "l1":
            return (self.decode(raw) - tgt)[valid].abs().mean()
        g = raw.clamp(-10, 10)[valid] - tgt[valid].log()
        return torch.sqrt((g**2).mean() - 0.85 * g.mean() ** 2 + 1e-8)

    def condition(self, raw: Tensor) -> Tensor:
        return _depth_map(self.decode(raw))

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        """The ground-truth depth normalised like ``condition``; invalid pixels take the farthest valid depth."""
        tgt = self._target(target).float()
        valid = self._valid(tgt)
        far = torch.where(valid, tgt, torch.zeros_like(tgt)).amax(dim=(1, 2, 3), keepdim=True)
        return _depth_map(torch.where(valid, tgt, far))

    def metrics(self) -> MetricCollection:
        return MetricCollection({"depth": DepthMetrics()})

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        pred = self.decode(self._resized(raw.detach().float(), tgt.shape[-2:]))
        metrics.update(pred, torch.where(self._valid(tgt), tgt, torch.zeros_like(tgt)))


class AngleMetrics(Metric):
    """Angular error of unit normals over valid pixels (target of non-zero length), in degrees:
    mean, median (from a 0.01-degree histogram) and the share within 11.25, 22.5 and 30 degrees."""

    full_state_update = False
    BINS = 18000

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("hist", default=torch.zeros(self.BINS, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for t in ("within_11", "within_22", "within_30"):
            self.add_state(t, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target.norm(dim=1) > 0.5
        cos = (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)[valid].clamp(-1, 1)
        deg = torch.rad2deg(torch.acos(cos.double()))
        self.hist += torch.histc(deg, bins=self.BINS, min=0, max=180)
        self.total += deg.sum()
        self.within_11 += (deg < 11.25).sum()
        self.within_22 += (deg < 22.5).sum()
        self.within_30 += (deg < 30).sum()

    def compute(self) -> dict[str, Tensor]:
        n = self.hist.sum().clamp_min(1)
        median_bin = torch.searchsorted(self.hist.cumsum(0), n / 2)
        return {"mean_angle": self.total / n, "median_angle": (median_bin + 0.5) * 180 / self.BINS,
                "within_11.25": self.within_11 / n, "within_22.5": self.within_22 / n, "within_30": self.within_30 / n}


class Normals(Task):
    """Surface normals: three channels, ``decode`` makes unit vectors; loss ``1 - cos`` over valid pixels
    (target of non-zero length). Condition: the unit normals."""

    name, key, channels, monitor = "normals", "normals", 3, ("mean_angle", "min")

    def decode(self, raw: Tensor) -> Tensor:
        return F.normalize(raw, dim=1)

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        cos = (self.decode(self._resized(raw, tgt.shape[-2:])) * tgt).sum(1)
        valid = tgt.norm(dim=1) > 0.5
        return (1 - cos[valid]).mean()

    def condition(self, raw: Tensor) -> Tensor:
        return self.decode(raw)

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        return self._target(target).float()

    def metrics(self) -> MetricCollection:
        return MetricCollection({"normals": AngleMetrics()})


class MultiTask(Task):
    """Several tasks predicted by one network as one tensor: the tasks' channels, concatenated in order.

    The loss is the weighted sum of the task losses; metrics are prefixed with the task name
    (``semantic/mIoU``, ``depth/abs_rel``...); the condition concatenates every task's condition, as
    the paper does for multi-task learning.

    Example:
        >>> mt = MultiTask([Segmentation(6), Depth(), Normals()])
        >>> mt.channels
        10
    """

    name, key = "multitask", ""

    def __init__(self, tasks: list[Task], weights: list[float] | None = None) -> None:
        if not tasks:
            raise ValueError("MultiTask: tasks must not be empty")
        if weights is not None and len(weights) != len(tasks):
            raise ValueError(f"MultiTask: need one weight per task ({len(tasks)}), got {weights!r}")
        self.tasks, self.weights = list(tasks), list(weights or [1.0] * len(tasks))
        self.channels = sum(t.channels for t in self.tasks)
        first = self.tasks[0]
        self.monitor = (f"{first.name}/{first.monitor[0]}", first.monitor[1])

    def split(self, raw: Tensor) -> list[Tensor]:
        self._check_raw(raw)
        return list(raw.split([t.channels for t in self.tasks], dim=1))

    def _target(self, target):
        if not isinstance(target, Mapping):
            raise TypeError("MultiTask: target must be the batch dict holding every task's entry")
        return target

    def loss(self, raw: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        target = self._target(target)
        return sum(w * t.loss(r, target) for t, w, r in zip(self.tasks, self.weights, self.split(raw), strict=True))

    def decode(self, raw: Tensor) -> dict[str, Tensor]:
        return {t.name: t.decode(r) for t, r in zip(self.tasks, self.split(raw), strict=True)}

    def condition(self, raw: Tensor) -> Tensor:
        return torch.cat([t.condition(r) for t, r in zip(self.tasks, self.split(raw), strict=True)], dim=1)

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


class Denoising(Task):
    """DDeP's pretext task (PAPER_NOTES section 2): predict the noise of a noised image.

    The image ``x`` in ``[0, 1]`` is mapped to ``[-1, 1]`` and noised with scaled additive noise
    ``x_noisy = sqrt(gamma) * x + sqrt(1 - gamma) * eps``, ``eps ~ N(0, I)``, one fixed ``gamma``
    (default 0.9, ours: the paper sweeps the noise level);
    the network sees ``(x_noisy + 1) / 2`` (the input scale it will be fine-tuned on) and predicts
    ``eps`` (3 channels), with an MSE loss.
    """

    name, key, channels, monitor = "denoising", "noise", 3, ("noise_mse", "min")

    def __init__(self, gamma: float = 0.9) -> None:
        if not 0 < gamma < 1:
            raise ValueError(f"Denoising: gamma must be in (0, 1), got {gamma!r}")
        self.gamma = gamma

    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        x = batch["image"] * 2 - 1
        eps = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device).to(x)
        noisy = self.gamma**0.5 * x + (1 - self.gamma) ** 0.5 * eps
        return {**batch, "image": (noisy + 1) / 2, "clean": batch["image"], "noise": eps}

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        return F.mse_loss(self._resized(raw, tgt.shape[-2:]), tgt)

    def condition(self, raw: Tensor) -> Tensor:
        return raw

    def metrics(self) -> MetricCollection:
        return MetricCollection({"noise_mse": MeanSquaredError()})

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        metrics.update(self._resized(raw.detach().float(), tgt.shape[-2:]).flatten(), tgt.flatten())


class MaskedModeling(Task):
    """Masked-image-modelling pretext task (MAE-style, supp. Table B.2's baseline): ``b x b`` patches
    are masked with probability ``ratio`` (filled with 0) and the network reconstructs the pixels;
    the MSE counts masked pixels only."""

    name, key, channels, monitor = "masked", "clean", 3, ("masked_mse", "min")

    def __init__(self, block_size: int = 8, ratio: float = 0.75) -> None:
        self.block_size, self.ratio = block_size, ratio

    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        x = batch["image"]
        removed = random_block_mask(x, self.block_size, self.ratio, generator)
        return {**batch, "image": x.masked_fill(removed, 0.0), "clean": x, "removed": removed}

    def condition(self, raw: Tensor) -> Tensor:
        return raw

    def loss(self, raw: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        tgt, removed = self._target(target), target["removed"]
        err = (self._resized(raw, tgt.shape[-2:]) - tgt) ** 2 * removed
        return err.sum() / (removed.sum() * tgt.shape[1]).clamp_min(1)

    def metrics(self) -> MetricCollection:
        return MetricCollection({"masked_mse": MeanSquaredError()})

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Mapping[str, Tensor]) -> None:
        tgt, removed = self._target(target), target["removed"].expand_as(target[self.key])
        metrics.update(self._resized(raw.detach().float(), tgt.shape[-2:])[removed], tgt[removed])


def create_task(name: str, **kwargs) -> Task:
    """A task by name: ``segmentation``, ``depth``, ``normals``, or ``multitask`` with
    ``tasks=[{"name": ..., **kwargs}, ...]`` and optional ``weights``."""
    simple = {"segmentation": Segmentation, "depth": Depth, "normals": Normals, "denoising": Denoising,
              "masked": MaskedModeling}
    if name == "multitask":
        specs = kwargs.pop("tasks", None)
        if not specs:
            raise ValueError("create_task: 'multitask' needs tasks=[{'name': ...}, ...]")
        return MultiTask([create_task(**dict(s)) for s in specs], **kwargs)
    if name not in simple:
        raise ValueError(f"create_task: unknown task {name!r}; choose from {[*sorted(simple), 'multitask']}")
    return simple[name](**kwargs)


