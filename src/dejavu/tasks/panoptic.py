"""Panoptic segmentation, bottom-up (Panoptic-DeepLab, Cheng et al., CVPR 2020): a dense head
predicts semantic logits, an instance-centre heatmap and each pixel's offset to its instance's
centre; grouping thing pixels around the centre they point to gives the instances.

Every output is a dense map, so the head sits on any network of :func:`dejavu.models.create_model`
and DejaVu's condition is simply these maps. The DejaVu paper's COCO network, Mask2Former, is
query-based: :class:`~dejavu.tasks.QueryPanoptic` trains it and renders its masks into the map
DejaVu conditions on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassJaccardIndex

from ..conditioning import probabilities
from .base import Task
from .dense import Segmentation
from .metrics import PanopticMetrics
from .registry import register_task
from .views import FileContent, Palette, panoptic_colours, panoptic_png

__all__ = ["Panoptic", "instance_centres", "panoptic_map"]


def _centroids(instance: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each pixel's compact instance index (-1 on stuff), and per index its image and ``(y, x)`` centroid."""
    b, h, w = instance.shape
    thing = instance > 0
    ids = torch.where(thing, instance + torch.arange(b, device=instance.device).view(b, 1, 1) * (instance.max() + 1), 0)
    unique, compact = torch.unique(ids[thing], return_inverse=True)
    index = torch.full_like(instance, -1)
    index[thing] = compact
    y, x = torch.meshgrid(torch.arange(h, device=instance.device), torch.arange(w, device=instance.device),
                          indexing="ij")
    yx = torch.stack([y, x], -1).expand(b, h, w, 2)[thing].double()
    sums = torch.zeros(len(unique), 2, dtype=torch.float64, device=instance.device).index_add_(0, compact, yx)
    counts = torch.bincount(compact, minlength=len(unique)).double()
    return index, unique // (instance.max() + 1), sums / counts[:, None]


def instance_centres(instance: Tensor, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """Panoptic-DeepLab's training targets from an instance map ``(B, H, W)`` (0: no instance):
    the centre heatmap ``(B, 1, H, W)`` (a Gaussian of ``sigma`` pixels with peak 1 at each
    instance's centroid; overlaps take the maximum), the offsets ``(B, 2, H, W)`` from each pixel to
    its instance's centroid as ``(dy / H, dx / W)`` (so they do not depend on the resolution), and
    the mask ``(B, 1, H, W)`` of pixels that belong to an instance.

    Example:
        >>> inst = torch.zeros(1, 5, 5, dtype=torch.long); inst[0, 1:4, 1:4] = 1
        >>> heat, offsets, mask = instance_centres(inst, sigma=1.0)
        >>> float(heat[0, 0, 2, 2]), float(offsets[0, 0, 1, 1] * 5), int(mask.sum())
        (1.0, 1.0, 9)
    """
    b, h, w = instance.shape
    index, image, centre = _centroids(instance)
    heat = torch.zeros(b, h, w, device=instance.device)
    r = math.ceil(3 * sigma)  # the Gaussian is drawn within 3 sigma of its centre: O(sigma^2) per instance
    for i, (cy, cx) in zip(image.tolist(), centre.tolist(), strict=True):  # one sync; tens of instances an image
        top, left = max(round(cy) - r, 0), max(round(cx) - r, 0)
        y = torch.arange(top, min(round(cy) + r + 1, h), device=heat.device).view(-1, 1)
        x = torch.arange(left, min(round(cx) + r + 1, w), device=heat.device).view(1, -1)
        g = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
        patch = heat[i, top:top + g.shape[0], left:left + g.shape[1]]  # a view: written in place
        torch.maximum(patch, g, out=patch)
    y, x = torch.meshgrid(torch.arange(h, device=heat.device), torch.arange(w, device=heat.device), indexing="ij")
    grid = torch.stack([y, x], -1).expand(b, h, w, 2)
    thing = index >= 0
    offsets = torch.zeros(b, h, w, 2, device=heat.device)
    offsets[thing] = ((centre[index[thing]] - grid[thing]) / centre.new_tensor([h, w])).float()
    return heat[:, None], offsets.permute(0, 3, 1, 2), thing[:, None]


def panoptic_map(semantic: Tensor, heat: Tensor, offsets: Tensor, things: Sequence[int], threshold: float = 0.1,
                 nms_kernel: int = 7, top_k: int = 200) -> Tensor:
    """Panoptic-DeepLab's grouping: centres are the heatmap's local maxima above ``threshold`` (at most
    ``top_k``), each thing pixel joins the centre nearest to where its offset points, and an
    instance's class is the majority of its pixels' classes. Stuff pixels get instance 0.

    Args:
        semantic: ``(B, H, W)`` class ids; heat: ``(B, 1, H, W)``; offsets: ``(B, 2, H, W)`` as
            :func:`instance_centres` gives them; things: the countable classes.

    Returns:
        ``(B, 2, H, W)`` int64: class and instance (1, 2, ... per image) of every pixel.
    """
    b, h, w = semantic.shape
    peaks = (heat == F.max_pool2d(heat, nms_kernel, stride=1, padding=nms_kernel // 2)) & (heat > threshold)
    thing = torch.isin(semantic, torch.as_tensor(list(things), device=semantic.device))
    y, x = torch.meshgrid(torch.arange(h, device=heat.device), torch.arange(w, device=heat.device), indexing="ij")
    votes = torch.stack([y + offsets[:, 0] * h, x + offsets[:, 1] * w], -1)  # (B, H, W, 2) in pixels
    instance = torch.zeros_like(semantic)
    classes = semantic.clone()
    for i in range(b):
        ys, xs = peaks[i, 0].nonzero(as_tuple=True)
        if len(ys) == 0 or not thing[i].any():
            continue
        order = heat[i, 0, ys, xs].argsort(descending=True)[:top_k]
        centres = torch.stack([ys[order], xs[order]], -1).to(votes.dtype)
        # nearest centre per thing pixel, in chunks: (pixels x centres) distances stay small
        nearest = torch.cat([torch.cdist(v, centres).argmin(1) for v in votes[i][thing[i]].split(65536)])
        ids = nearest + 1
        instance[i][thing[i]] = ids
        counts = torch.zeros(len(centres) + 1, int(semantic.max()) + 1, device=semantic.device)
        counts.index_put_((ids, semantic[i][thing[i]]), torch.ones_like(ids, dtype=torch.float), accumulate=True)
        classes[i][thing[i]] = counts.argmax(1)[ids]  # each instance takes its pixels' majority class
    return torch.stack([classes, instance], 1)


@register_task("panoptic")
class Panoptic(Task):
    """Panoptic segmentation, Panoptic-DeepLab style: ``num_classes + 3`` output channels: semantic
    logits, an instance-centre heatmap, and offsets ``(dy / H, dx / W)`` to the instance's centre.

    Loss: cross-entropy (``ignore_index`` left out) ``+ centre_weight *`` MSE of the heatmap ``+
    offset_weight *`` L1 of the offsets over thing pixels. Panoptic-DeepLab weighs them 1, 200 and
    0.01 per pixel (about 10 for offsets in fractions of a 1024-pixel side), but it gives the instance
    outputs a decoder of their own; through one shared head those weights starved the semantic
    output here (synthetic scenes: no thing pixel predicted after 8 epochs), so the defaults are 10
    and 1 (benchmarks/RESULTS.md). Batches hold
    ``semantic`` ``(B, H, W)`` and ``instance`` ``(B, H, W)`` (0 on stuff and unlabelled pixels; a
    positive id per thing instance, unique within its image).

    Metrics: ``PQ``, ``SQ``, ``RQ``, the same over things (``PQ_th``...) and stuff (``PQ_st``...) from
    :class:`~dejavu.tasks.metrics.PanopticMetrics` on :func:`panoptic_map`'s output, and the semantic
    ``mIoU``.

    DejaVu's condition: the softmax probabilities, the heatmap clipped to ``[0, 1]`` and the offsets,
    ``num_classes + 3`` channels: where the classes are, where instances are centred, and (in the
    offsets' jumps) where one instance ends and the next begins.

    Args:
        num_classes: semantic classes (things and stuff).
        things: the countable classes; the rest are stuff.
        ignore_index: the label of unlabelled pixels (void in PQ).
        sigma: the centre Gaussian's standard deviation in pixels of the target (Panoptic-DeepLab: 8
            at 1024x2048).
        threshold, nms_kernel, top_k: centre detection of :func:`panoptic_map`.

    Raises:
        ValueError: ``things`` empty or outside ``0..num_classes - 1``; a batch without ``instance``
            or with labels outside the classes.
        TypeError: labels that are not integers.

    Example:
        >>> task = Panoptic(num_classes=6, things=[3, 4, 5])
        >>> task.channels
        9
    """

    name, key, monitor = "panoptic", "semantic", ("PQ", "max")
    from_dataset = ("num_classes", "ignore_index", "class_names", "things")

    def __init__(self, num_classes: int, things: Sequence[int], ignore_index: int = 255,
                 class_names: list[str] | None = None, sigma: float = 8.0, centre_weight: float = 10.0,
                 offset_weight: float = 1.0, threshold: float = 0.1, nms_kernel: int = 7, top_k: int = 200) -> None:
        things = sorted({int(t) for t in things})
        # the semantic half is a segmentation: its checks (num_classes, class_names, labels) and its loss
        self.semantic = Segmentation(num_classes, ignore_index, class_names=class_names)
        if not things or things[0] < 0 or things[-1] >= num_classes:
            raise ValueError(f"Panoptic: things must be a non-empty list of classes in 0..{num_classes - 1}, "
                             f"got {things}")
        if sigma <= 0 or nms_kernel < 1 or nms_kernel % 2 == 0:
            raise ValueError(f"Panoptic: need sigma > 0 and an odd nms_kernel, got {sigma}, {nms_kernel}")
        self.num_classes, self.channels, self.things = num_classes, num_classes + 3, things
        self.stuff = [c for c in range(num_classes) if c not in things]
        self.ignore_index, self.class_names, self.sigma = ignore_index, class_names, sigma
        self.centre_weight, self.offset_weight = centre_weight, offset_weight
        self.threshold, self.nms_kernel, self.top_k = threshold, nms_kernel, top_k

    def _labels(self, target: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        if not isinstance(target, Mapping) or "instance" not in target or "semantic" not in target:
            have = sorted(target) if isinstance(target, Mapping) else type(target).__name__
            raise ValueError(f"Panoptic: the batch needs 'semantic' and 'instance' maps (has {have}); use a panoptic "
                             "dataset (synthetic, coco_panoptic, or yours with an 'instance' entry)")
        return self.semantic._target(target), target["instance"].long()

    def _parts(self, raw: Tensor, size: torch.Size) -> tuple[Tensor, Tensor, Tensor]:
        raw = self._resized(raw, size)
        c = self.num_classes
        return raw[:, :c], raw[:, c:c + 1], raw[:, c + 1:]

    def loss(self, raw: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        semantic, instance = self._labels(target)
        logits, heat, offsets = self._parts(raw, semantic.shape[-2:])
        true_heat, true_offsets, thing = instance_centres(instance, self.sigma)
        loss = self.semantic.loss(logits, semantic) + self.centre_weight * F.mse_loss(heat, true_heat)
        l1 = ((offsets - true_offsets).abs() * thing).sum() / (2 * thing.sum()).clamp_min(1)
        return loss + self.offset_weight * l1

    def decode(self, raw: Tensor) -> Tensor:
        """The panoptic map ``(B, 2, H, W)``: class and instance per pixel (:func:`panoptic_map`)."""
        logits, heat, offsets = self._parts(raw, raw.shape[-2:])
        return panoptic_map(logits.argmax(1), heat, offsets, self.things, self.threshold, self.nms_kernel, self.top_k)

    def condition(self, raw: Tensor) -> Tensor:
        c = self.num_classes
        return torch.cat([probabilities(raw[:, :c]), raw[:, c:c + 1].clamp(0, 1), raw[:, c + 1:]], 1)

    def target_condition(self, target: Mapping[str, Tensor]) -> Tensor:
        """One-hot labels (ignored pixels uniform), the true heatmap and offsets."""
        semantic, instance = self._labels(target)
        heat, offsets, _ = instance_centres(instance, self.sigma)
        return torch.cat([self.semantic.target_condition(semantic), heat, offsets], 1)

    def mirror(self, raw: Tensor) -> Tensor:
        """Mirrored back; the x offsets change sign."""
        sign = torch.ones(self.channels, device=raw.device, dtype=raw.dtype)
        sign[-1] = -1
        return raw.flip(-1) * sign.view(1, -1, 1, 1)

    def target_map(self, target: Mapping[str, Tensor]) -> Tensor:
        """The ground truth as ``(B, 2, H, W)`` class and instance, like :meth:`decode`'s output."""
        return torch.stack(self._labels(target), 1)

    def view(self, value: Tensor, palette: Palette = None) -> np.ndarray:
        classes, instance = value.numpy()
        return panoptic_colours(classes, instance, self.num_classes, self.things, palette)

    def prediction_files(self, stem: str, raw_ids: bool = False) -> list[str]:
        """``class x 1000 + instance`` RGB-encoded as COCO's panoptic PNGs."""
        return [f"{stem}_panoptic.png"]

    def predicted_files(self, value: Tensor, stem: str, palette: Palette = None, raw_ids: bool = False
                        ) -> dict[str, FileContent]:
        return {f"{stem}_panoptic.png": panoptic_png(*value.numpy())}

    def metrics(self) -> MetricCollection:
        return MetricCollection({
            "panoptic": PanopticMetrics(self.things, self.stuff),
            "mIoU": MulticlassJaccardIndex(self.num_classes, average="macro", ignore_index=self.ignore_index,
                                           validate_args=False)})

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Mapping[str, Tensor]) -> None:
        truth = self.target_map(target)
        pred = self.decode(self._resized(raw.detach().float(), truth.shape[-2:]))
        metrics["panoptic"].update(pred.permute(0, 2, 3, 1), truth.permute(0, 2, 3, 1))
        metrics["mIoU"].update(pred[:, 0], truth[:, 0])
