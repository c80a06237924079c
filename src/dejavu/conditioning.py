"""The maps DejaVu's CRM is conditioned on (the paper, section 3): what each task's ``condition`` makes of
its raw output, by name for :class:`~dejavu.DejaVuLoss` (``adapter="softmax"``...), and the blank
condition, which carries no spatial information (the reliance measure's reference)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ADAPTERS", "blank_condition", "depth_map", "hard_probabilities", "probabilities", "unit_vectors"]


def probabilities(logits: Tensor) -> Tensor:
    """Class probabilities (softmax over channels), for segmentation logits."""
    return logits.softmax(dim=1)


def hard_probabilities(logits: Tensor) -> Tensor:
    """One-hot arg-max classes, with the softmax's gradient (straight-through estimator).

    The soft probabilities' low-confidence channels can carry colour and texture to the CRM, which helps
    it regenerate without helping the segmentation; a one-hot condition carries the labels alone, and
    matches the condition a CRM pretrained on the ground truth saw.
    """
    soft = logits.softmax(dim=1)
    hard = F.one_hot(soft.argmax(dim=1), soft.shape[1]).permute(0, 3, 1, 2).to(soft.dtype)
    return hard + soft - soft.detach()


def depth_map(depth: Tensor) -> Tensor:
    """Depth normalised per image to [0, 1], so the CRM sees shape, not scale."""
    lo = depth.amin(dim=(1, 2, 3), keepdim=True)
    hi = depth.amax(dim=(1, 2, 3), keepdim=True)
    return (depth - lo) / (hi - lo).clamp_min(1e-6)


def unit_vectors(x: Tensor) -> Tensor:
    """Unit vectors along channels, for surface normals."""
    return F.normalize(x, dim=1)


ADAPTERS: dict[str, Callable[[Tensor], Tensor]] = {
    "softmax": probabilities,
    "hard_softmax": hard_probabilities,
    "sigmoid": torch.sigmoid,
    "depth": depth_map,
    "normals": unit_vectors,
    "identity": lambda x: x,
}


def blank_condition(condition: Tensor) -> Tensor:
    """An uninformative condition: ``condition`` averaged over the batch and all pixels, the same
    value at every pixel. It keeps the condition's overall statistics (so the CRM's normalisation
    sees familiar values) and carries no spatial information.

    Example:
        >>> blank_condition(torch.rand(2, 4, 8, 8)).std(dim=(0, 2, 3)).max() < 1e-6
        tensor(True)
    """
    return condition.mean(dim=(0, 2, 3), keepdim=True).expand_as(condition)
