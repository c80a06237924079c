"""DejaVu-CL: cyclic consistency. The network run again on the regenerated image should predict what
it predicted on the real one: ``L_CL = MSE(c(h(I_G)), c(h(I)))`` with ``c`` the conditioning map
(probabilities, normalised depth, unit normals), weight 0.1 in the paper (the DejaVu paper, section
3.4; supplementary Table B.1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn

from .base import AuxiliaryLoss, TrainingStep, register_auxiliary

__all__ = ["CyclicConsistency", "cyclic_consistency", "frozen_norm_statistics"]


@contextmanager
def frozen_norm_statistics(net: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Run ``net`` without changing its normalisation layers' running statistics.

    Batch norm in training mode still normalises with the batch's own statistics; its running
    averages (and batch counter) are swapped for copies during the block and put back on exit, so
    they keep describing real images alone. (Swapped, not restored in place: autograd keeps the
    tensors the first pass used.)
    """
    names = ("running_mean", "running_var", "num_batches_tracked")
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
             ] if isinstance(net, nn.Module) else []
    originals = [{n: getattr(m, n) for n in names if getattr(m, n) is not None} for m in norms]
    for m, buffers in zip(norms, originals, strict=True):
        for n, b in buffers.items():
            setattr(m, n, b.clone())
    try:
        yield
    finally:
        for m, buffers in zip(norms, originals, strict=True):
            for n, b in buffers.items():
                setattr(m, n, b)


def cyclic_consistency(net: Callable[[Tensor], Tensor], regenerated: Tensor, prediction: Tensor,
                       condition: Callable[[Tensor], Tensor] = lambda x: x) -> Tensor:
    """MSE between ``condition(net(regenerated))`` and ``condition(prediction)``.

    Args:
        net: the dense prediction network, taking images in its own input normalisation.
        regenerated: the regenerated image ``(B, 3, H, W)``, already in the network's input normalisation.
        prediction: the network's raw output on the real image, ``(B, C, h, w)``.
        condition: maps raw outputs to comparable maps (e.g. a task's ``condition``).

    Gradients reach the network through both predictions and the CRM through ``regenerated``. The
    second pass leaves the network's batch-norm running statistics as they were
    (:func:`frozen_norm_statistics`): a training step updates them once, from the real images.

    Example:
        >>> import torch
        >>> net = nn.Conv2d(3, 4, 1)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> float(cyclic_consistency(net, x, net(x)))
        0.0
    """
    if regenerated.dim() != 4 or prediction.dim() != 4:
        raise ValueError(f"cyclic_consistency: regenerated and prediction must be (B, C, H, W), got "
                         f"{tuple(regenerated.shape)} and {tuple(prediction.shape)}")
    with frozen_norm_statistics(net):
        again = net(regenerated)
    if again.shape != prediction.shape:
        raise ValueError(f"cyclic_consistency: the network's output on the regenerated image has shape "
                         f"{tuple(again.shape)}, on the image {tuple(prediction.shape)}")
    return F.mse_loss(condition(again).float(), condition(prediction).float())


@register_auxiliary("cyclic")
class CyclicConsistency(AuxiliaryLoss):
    """DejaVu-CL as an auxiliary objective: ``{"cyclic_loss": weight * L_CL}`` on a training step's
    regenerated image (upsampled to the input's size when DejaVu regenerates smaller).

    Args:
        weight: the loss weight (paper: 0.1).
        condition: the map compared; ``None`` uses the task's (``step.condition``).
    """

    extends_dejavu = True

    def __init__(self, weight: float = 0.1, condition: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"CyclicConsistency: weight must be >= 0, got {weight!r}")
        self.weight, self.condition = weight, condition

    def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        regenerated = step.loss_fn.from_unit_range(step.regenerated01())
        loss = cyclic_consistency(step.net, regenerated, step.prediction, self.condition or step.condition)
        return {"cyclic_loss": self.weight * loss}
