"""The task protocol: what a dense prediction task gives the training loop and DejaVu."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

__all__ = ["Task"]


class Task:
    """Base class. Subclasses set ``name``, ``key`` (the batch entry), ``channels`` and ``monitor``
    (the metric that says which model is best, and ``"max"`` or ``"min"``)."""

    name: str
    key: str
    channels: int
    monitor: tuple[str, str]
    query_based = False  # True: the network predicts per query (a QueryPrediction), not per pixel

    @property
    def condition_channels(self) -> int:
        """The channels of DejaVu's condition (``condition(render(raw))``)."""
        return self.channels

    def render(self, raw: Tensor) -> Tensor:
        """The per-pixel map of a prediction, which :meth:`condition` takes: the raw output itself for a
        dense network; a query-based network's masks rendered into per-pixel maps."""
        return raw

    def _target(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        if isinstance(target, Mapping):
            if self.key not in target:
                raise KeyError(f"{type(self).__name__}: batch has no {self.key!r} entry (has {sorted(target)})")
            return target[self.key]
        return target

    def _check_raw(self, raw: Tensor) -> None:
        if not isinstance(raw, Tensor):
            raise ValueError(f"{type(self).__name__}: the prediction must be a tensor (B, {self.channels}, H, W), got "
                             f"a {type(raw).__name__}; a query-based network (mask2former) goes with the "
                             "query_panoptic task")
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

    def modules(self) -> dict[str, nn.Module]:
        """Trainable parts of the task itself (e.g. a pose network), trained with the network."""
        return {}

    def mirror(self, raw: Tensor) -> Tensor:
        """The raw prediction of a left-right mirrored image, mirrored back (flip test-time augmentation)."""
        return raw.flip(-1)

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor | None:
        """The condition a perfect prediction would give (what ``condition`` makes of the ground
        truth), for DejaVu's reliance measure; ``None`` where the task has no such map."""
        return None

    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The batch the network trains on; pretext tasks (denoising, masking) corrupt the image here."""
        return dict(batch)

    def compute_metrics(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> dict[str, float]:
        """The scalar metrics of one batch, as floats (a confusion matrix is left out)."""
        metrics = self.metrics().to(raw.device)
        self.update_metrics(metrics, raw, target)
        return {k: float(v) for k, v in metrics.compute().items() if v.dim() == 0}

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        metrics.update(self.decode(self._resized(raw.detach().float(), tgt.shape[-2:])), tgt)
