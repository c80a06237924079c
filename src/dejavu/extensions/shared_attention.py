"""DejaVu-SA's regeneration loss: the network (:class:`dejavu.models.SharedAttention`) regenerates the
image itself, and this objective scores it like DejaVu's loss does (MSE, and LPIPS with the paper's
weight 0.3)."""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from ..perceptual import LPIPS
from ..weights import FrozenStateMixin
from .base import AuxiliaryLoss, TrainingStep, register_auxiliary

__all__ = ["SharedAttentionRegeneration"]


@register_auxiliary("sa")
class SharedAttentionRegeneration(FrozenStateMixin, AuxiliaryLoss):
    """``{"sa_regen_mse": weight * MSE, "sa_regen_lpips": lpips_weight * LPIPS}`` between a DejaVu-SA
    network's regenerated image (``step.extras["sa_regenerated"]``) and its input, both in ``[0, 1]``.

    Args:
        weight, lpips_weight: the weights (paper: 1 and 0.3); ``lpips_weight=0`` loads no LPIPS.
        lpips_weights: LPIPS's backbone weights (see :class:`dejavu.perceptual.LPIPS`).
    """

    frozen_children = ("lpips",)  # a fixed metric: kept out of checkpoints

    def __init__(self, weight: float = 1.0, lpips_weight: float = 0.3, lpips_weights: str | Path | None = None) -> None:
        super().__init__()
        self.weight, self.lpips_weight = weight, lpips_weight
        self.lpips = LPIPS(weights=lpips_weights) if lpips_weight > 0 else None

    def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        regenerated, image = step.extras["sa_regenerated"].float(), step.image.float()
        losses = {"sa_regen_mse": self.weight * F.mse_loss(regenerated, image)}
        if self.lpips is not None:
            losses["sa_regen_lpips"] = self.lpips_weight * self.lpips(regenerated.clamp(0, 1), image).mean()
        return losses
