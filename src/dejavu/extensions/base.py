"""Auxiliary objectives: what an extension of DejaVu adds to a training step.

An extension is one :class:`AuxiliaryLoss` subclass: ``forward(step)`` reads a :class:`TrainingStep`
and returns its named, weighted losses, which the training loop adds to the task loss and logs as
``train/<name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import DejaVuLoss, DejaVuOutput

__all__ = ["AuxiliaryLoss", "TrainingStep"]


@dataclass
class TrainingStep:
    """One training step, as auxiliary objectives see it.

    Attributes:
        net: the dense prediction network (images in its own normalisation to raw outputs).
        image: the network's input ``(B, 3, H, W)``.
        prediction: its raw output.
        condition: the task's map from raw outputs to the conditioning map.
        loss_fn, regeneration: the DejaVu loss and its output, ``None`` in a run without DejaVu.
        extras: anything else the network produced (DejaVu-SA: ``"sa_regenerated"``).
    """

    net: Callable[[Tensor], Tensor]
    image: Tensor
    prediction: Tensor
    condition: Callable[[Tensor], Tensor]
    loss_fn: DejaVuLoss | None = None
    regeneration: DejaVuOutput | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def regenerated01(self) -> Tensor:
        """DejaVu's regenerated image in ``[0, 1]`` at the input's size (it is smaller when ``scale < 1``)."""
        if self.regeneration is None:
            raise ValueError("this objective extends DejaVu: the run needs model.dejavu")
        out = self.regeneration.regenerated
        if out.shape[-2:] != self.image.shape[-2:]:
            out = F.interpolate(out, size=self.image.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def image01(self) -> Tensor:
        """The input image in ``[0, 1]``."""
        if self.loss_fn is None:
            raise ValueError("this objective extends DejaVu: the run needs model.dejavu")
        return self.loss_fn.to_unit_range(self.image)


class AuxiliaryLoss(nn.Module):
    """Base class of an extension's objective: ``forward(step) -> {name: weighted loss}``.

    Example:
        >>> class Smoothness(AuxiliaryLoss):
        ...     def __init__(self, weight: float = 0.1) -> None:
        ...         super().__init__()
        ...         self.weight = weight
        ...
        ...     def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        ...         dx = step.prediction.diff(dim=-1).abs().mean()
        ...         return {"smoothness": self.weight * dx}
    """

    def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        raise NotImplementedError
