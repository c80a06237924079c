"""XTC: cross-task consistency by learnt mapping functions (Li, Liu & Bilen, "Learning Multiple Dense
Prediction Tasks from Partially Annotated Data", CVPR 2022: MTPSL), the "SegNet-XTC" rows of the DejaVu
paper's NYUD-v2 tables.

For an ordered pair of tasks ``(s, t)``, one mapping network ``m`` (a SegNet encoder with an input layer
per task, its normalised activations scaled and shifted per task pair: FiLM) takes the prediction of
``s`` and the ground truth of ``t`` to a joint space, where they should agree:
``1 - cos(m(pred_s), m(gt_t))``, plus ``reg_weight`` times the same distance of each to the network's own
shared representation (detached), which keeps the mapping from collapsing. With partial labels, the
pairs of an image are its unlabelled tasks as sources and its labelled ones as targets; with full labels,
every ordered pair. Each task's maps are its conditioning maps (DejaVu's: probabilities, normalised
depth, unit normals), a prediction's and the ground truth's alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AuxiliaryLoss, TrainingStep, register_auxiliary
from .cyclic import frozen_norm_statistics

if TYPE_CHECKING:
    from ..tasks import Task

__all__ = ["CrossTaskConsistency", "FiLMConv", "MappingNetwork", "task_pairs"]


def task_pairs(labelled: Tensor | None, tasks: int) -> list[tuple[int, int, Tensor | None]]:
    """The ordered pairs ``(source, target, images)`` of ``tasks`` tasks the consistency compares: with
    ``labelled`` ``(B, T)`` bools, the images where the source is unlabelled and the target labelled
    (pairs with none left out); without, every pair on every image (``images`` ``None``).

    Example:
        >>> task_pairs(torch.tensor([[True, False, False]]), 3)
        [(1, 0, tensor([True])), (2, 0, tensor([True]))]
    """
    pairs = []
    for s in range(tasks):
        for t in range(tasks):
            if s == t:
                continue
            images = None if labelled is None else ~labelled[:, s] & labelled[:, t]
            if images is None or images.any():
                pairs.append((s, t, images))
    return pairs


class FiLMConv(nn.Module):
    """3x3 convolution, batch norm, a scale and shift chosen by the task pair, ReLU (MTPSL's ``conv_task``)."""

    def __init__(self, cin: int, cout: int, pairs: int) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.gamma, self.beta = nn.Parameter(torch.ones(pairs, cout)), nn.Parameter(torch.zeros(pairs, cout))

    def forward(self, x: Tensor, pair: int) -> Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x * self.gamma[pair].view(1, -1, 1, 1) + self.beta[pair].view(1, -1, 1, 1))


class MappingNetwork(nn.Module):
    """The mapping to the joint space: a conv-BN-ReLU input layer per task, then a SegNet encoder of
    :class:`FiLMConv` layers (``convs[i]`` at ``widths[i]``, max pooling after each level) shared by
    every task pair. Its output has the shape of the network's shared representation.

    Example:
        >>> m = MappingNetwork([6, 1], widths=[8, 16], convs=[1, 1])
        >>> m(torch.rand(2, 6, 32, 32), task=0, pair=1).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, channels: Sequence[int], widths: Sequence[int], convs: Sequence[int]) -> None:
        super().__init__()
        pairs = len(channels) * (len(channels) - 1)
        self.inputs = nn.ModuleList(nn.Sequential(nn.Conv2d(c, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]),
                                                  nn.ReLU(inplace=True)) for c in channels)
        self.levels = nn.ModuleList(
            nn.ModuleList(FiLMConv(a if i == 0 else b, b, pairs) for i in range(n))
            for a, b, n in zip([widths[0], *widths[:-1]], widths, convs, strict=True))

    def forward(self, x: Tensor, task: int, pair: int) -> Tensor:
        x = self.inputs[task](x)
        for level in self.levels:
            for layer in level:
                x = layer(x, pair)
            x = F.max_pool2d(x, 2)
        return x


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """Per image, ``1 - cos`` along channels averaged over pixels: ``(B,)``."""
    return 1 - F.cosine_similarity(a, b, dim=1, eps=1e-12).flatten(1).mean(1)


@register_auxiliary("xtc")
class CrossTaskConsistency(AuxiliaryLoss):
    """``weight * (1/B) sum_images sum_pairs [d(m(pred_s), m(gt_t)) + reg_weight (d(m(pred_s), f) + d(m(gt_t), f))]``
    with ``d`` the cosine distance, ``m`` the :class:`MappingNetwork` and ``f`` the network's shared
    representation (the output of its module ``feature_module``, detached).

    Args:
        channels: the conditioning channels of each task (from the multi-task task).
        subtasks: the tasks, which make their conditioning maps and name their labels.
        weight: the consistency's weight (MTPSL: 2).
        reg_weight: the weight of the distances to the shared representation (MTPSL: 0.5).
        widths, convs: the mapping network's levels; they must give the shared representation's shape
            (MTPSL's, the default: its SegNet encoder, ``[64, 128, 256, 512, 512]`` and ``[2, 2, 3, 3, 3]``).
        feature_module: the network's submodule whose output is the shared representation
            (:class:`~dejavu.models.SegNetMTL`'s ``shared``).

    The representation is read by a second pass of the network without gradients (its batch-norm
    statistics left as they were), through a forward hook on ``feature_module``.

    Raises:
        ValueError: a task with fewer than two subtasks; at a step, a network without ``feature_module``
            or a mapping whose output is not the representation's shape (both named).
    """

    def __init__(self, channels: Sequence[int], subtasks: Sequence[Task], weight: float = 2.0, reg_weight: float = 0.5,
                 widths: Sequence[int] = (64, 128, 256, 512, 512), convs: Sequence[int] = (2, 2, 3, 3, 3),
                 feature_module: str = "shared") -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("model.auxiliaries: xtc compares the predictions of two or more tasks; the run has "
                             f"{len(channels)} (use the multitask task)")
        if len(convs) != len(widths):
            raise ValueError(f"model.auxiliaries: xtc's convs ({list(convs)}) and widths ({list(widths)}) must have "
                             "one entry per level")
        self.subtasks, self.weight, self.reg_weight = list(subtasks), float(weight), float(reg_weight)
        self.mapping = MappingNetwork(channels, widths, convs)
        self.feature_module = feature_module

    @classmethod
    def for_task(cls, task: Task, **kwargs: Any) -> CrossTaskConsistency:
        subtasks = task.subtasks
        return cls([t.condition_channels for t in subtasks], subtasks, **kwargs)

    def representation(self, net: nn.Module, image: Tensor) -> Tensor:
        """The network's shared representation of ``image``, without gradients."""
        try:
            module = net.get_submodule(self.feature_module)
        except AttributeError:
            raise ValueError(f"model.auxiliaries: xtc reads the shared representation at the network's module "
                             f"{self.feature_module!r}, which {type(net).__name__} lacks; give feature_module "
                             "(e.g. segnet_mtl's 'shared')") from None
        seen = []
        handle = module.register_forward_hook(lambda m, args, out: seen.append(out))
        try:
            with torch.no_grad(), frozen_norm_statistics(net):
                net(image)
        finally:
            handle.remove()
        return seen[-1]

    def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        batch = step.batch
        feature = self.representation(step.net, step.image)
        labelled = batch.get("labelled")
        if labelled is not None:
            labelled = torch.stack([labelled[t.key] for t in self.subtasks], 1).to(feature.device)
        parts = self.split(step.prediction)
        total = step.prediction.new_zeros(step.prediction.shape[0])
        for s, t, images in task_pairs(labelled, len(self.subtasks)):
            pair = s * (len(self.subtasks) - 1) + (t if t < s else t - 1)  # its row-major place among s != t
            source = self.mapping(self.subtasks[s].condition(parts[s]), s, pair)
            target = self.mapping(self.subtasks[t].target_condition(batch).to(source.dtype), t, pair)
            if source.shape != feature.shape:
                raise ValueError(f"model.auxiliaries: xtc's mapping gives {tuple(source.shape[1:])} but the shared "
                                 f"representation is {tuple(feature.shape[1:])}; give widths and convs as the "
                                 "network's encoder has them")
            loss = cosine_distance(source, target)
            if self.reg_weight > 0:
                loss = loss + self.reg_weight * (cosine_distance(source, feature) + cosine_distance(target, feature))
            total = total + (loss if images is None else loss * images)
        return {"xtc": self.weight * total.mean()}

    def split(self, raw: Tensor) -> list[Tensor]:
        sizes = [t.channels for t in self.subtasks]
        return list(raw.split(sizes, dim=1))
