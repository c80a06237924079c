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
    """DDeP's pretext task (the DDeP paper, Brempong et al., CVPR 2022 workshops): undo the noise of a
    noised image.

    The image ``x`` in ``[0, 1]`` is mapped to ``[-1, 1]`` and noised, the network sees the noisy image
    mapped back, ``(x_noisy + 1) / 2`` (the input scale it will be fine-tuned on), and an MSE trains its 3
    output channels. The paper's ablations are settings:

    Args:
        gamma: the noise level of scaled additive noise, in ``(0, 1)`` (one fixed level, as the paper
            found best; 0.9 is ours: the seeds do not give the paper's value).
        target: ``"noise"`` predicts ``eps`` (the paper's choice); ``"image"`` predicts the clean ``x``.
        noise: ``"scaled"``: ``x_noisy = sqrt(gamma) * x + sqrt(1 - gamma) * eps`` (diffusion-style, the
            paper's choice); ``"additive"``: ``x_noisy = x + sigma * eps``.
        sigma: the standard deviation of plain additive noise (``noise="additive"`` only).

    Raises:
        ValueError: ``gamma`` outside ``(0, 1)``, an unknown target or noise, ``sigma`` missing, not
            positive, or given for scaled noise.

    Example:
        >>> task = Denoising(noise="additive", sigma=0.5, target="image")
        >>> batch = task.prepare({"image": torch.full((1, 3, 2, 2), 0.75)}, torch.Generator().manual_seed(0))
        >>> task.key, float(batch["clean_scaled"][0, 0, 0, 0])  # the clean image in [-1, 1]
        ('clean_scaled', 0.5)
    """

    name, channels = "denoising", 3

    def __init__(self, gamma: float = 0.9, target: str = "noise", noise: str = "scaled",
                 sigma: float | None = None) -> None:
        if not 0 < gamma < 1:
            raise ValueError(f"Denoising: gamma must be in (0, 1), got {gamma!r}")
        if target not in ("noise", "image"):
            raise ValueError(f"Denoising: target must be 'noise' or 'image', got {target!r}")
        if noise not in ("scaled", "additive"):
            raise ValueError(f"Denoising: noise must be 'scaled' or 'additive', got {noise!r}")
        if (noise == "additive") != (sigma is not None) or (sigma is not None and sigma <= 0):
            raise ValueError(f"Denoising: sigma (> 0) sets the level of additive noise and only of it; got noise="
                             f"{noise!r}, sigma={sigma!r}")
        self.gamma, self.target, self.noise, self.sigma = gamma, target, noise, sigma
        self.key = "noise" if target == "noise" else "clean_scaled"
        self.monitor = (f"{target}_mse", "min")

    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        x = batch["image"] * 2 - 1
        eps = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device).to(x)
        if self.noise == "scaled":
            noisy = self.gamma**0.5 * x + (1 - self.gamma) ** 0.5 * eps
        else:
            noisy = x + self.sigma * eps
        return {**batch, "image": (noisy + 1) / 2, "clean": batch["image"], "clean_scaled": x, "noise": eps}

    def loss(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        tgt = self._target(target)
        return F.mse_loss(self._resized(raw, tgt.shape[-2:]), tgt)

    def condition(self, raw: Tensor) -> Tensor:
        return raw

    def metrics(self) -> MetricCollection:
        return MetricCollection({self.monitor[0]: MeanSquaredError()})

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
