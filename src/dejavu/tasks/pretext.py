"""Pretext tasks that corrupt the image and learn to undo it: DDeP's denoising and masked image
modelling (the supplementary's MAE baseline)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanSquaredError

from ..redaction import random_block_mask
from .base import Task
from .registry import register_task

__all__ = ["Denoising", "MaskedModeling"]


@register_task("denoising")
class Denoising(Task):
    """DDeP's pretext task (the DDeP paper, Brempong et al., CVPR 2022 workshops): predict the noise of a noised image.

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


@register_task("masked")
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
