"""Augmentation and resizing of dense items with torchvision's transforms v2, every target kept aligned
with the image: label maps as ``tv_tensors.Mask`` (nearest, padded with the ignore label), depth and
normals as masks too (nearest, so no value is made up; padded with 0, unknown), and a flip that also
negates the x component of normals.

Items are dicts: ``image`` ``(3, H, W)`` in ``[0, 1]``, and any of ``semantic`` ``(H, W)``, ``depth``
``(1, H, W)``, ``normals`` ``(3, H, W)``. Normalisation (mean / std) is not done here: it belongs to
the network (``create_model(..., normalize="imagenet")``), so :class:`dejavu.DejaVuLoss` always
regenerates the real image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["RandomFlip", "eval_transform", "train_transform"]

Item = dict[str, Tensor]


class Labels(tv_tensors.Mask):
    """A semantic label map: resized like any mask, padded with the ignore label instead of 0."""


def _dense(item: Item, key: str) -> bool:
    """Whether ``item[key]`` is a map over the image's pixels (other entries, such as camera intrinsics
    or the ``labelled`` flags, pass through the transforms untouched)."""
    value = item[key]
    return isinstance(value, Tensor) and value.dim() >= 2 and value.shape[-2:] == item["image"].shape[-2:]


def _wrap(item: Item) -> dict:
    wrapped = {}
    for key, value in item.items():
        kind = {"image": tv_tensors.Image, "semantic": Labels}.get(key, tv_tensors.Mask)
        wrapped[key] = value.as_subclass(kind) if _dense(item, key) else value
    return wrapped


def _unwrap(item: dict) -> Item:
    return {k: v.as_subclass(Tensor) if isinstance(v, Tensor) else v for k, v in item.items()}


class RandomFlip:
    """Flip the image and every target left-right with probability ``p``; normals' x component
    (camera frame: x right) changes sign, so they still point the way the flipped surface faces."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, item: Item) -> Item:
        if torch.rand(()) >= self.p:
            return item
        out = {k: v.flip(-1) if _dense(item, k) else v for k, v in item.items()}
        if "normals" in out:
            out["normals"] = out["normals"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        return out


def train_transform(size: Sequence[int] | None, scale: Sequence[float] = (0.5, 2.0), flip: bool = True,
                    jitter: float = 0.3, ignore_index: int = 255) -> Callable[[Item], Item]:
    """The usual training pipeline of dense prediction: random scale of the ``size`` (``scale``, e.g.
    0.5-2.0 as in the DejaVu and mmsegmentation recipes), a random ``size`` crop (padded where the
    scaled image is smaller: images with 0, labels with ``ignore_index``, depth and normals with 0),
    a horizontal flip, and photometric jitter (brightness, contrast and saturation by ``jitter``).

    Args:
        size: ``(H, W)`` of the crops; ``None`` keeps each item's size (flip and jitter only).
        scale: range of the random scale factor, applied to ``size``; ``(1, 1)`` for none.
        flip: random horizontal flips (normals-aware, see :class:`RandomFlip`).
        jitter: strength of the colour jitter; 0 for none.
        ignore_index: the label crops are padded with.

    Example:
        >>> t = train_transform((32, 32))
        >>> item = t({"image": torch.rand(3, 20, 30), "semantic": torch.zeros(20, 30, dtype=torch.long)})
        >>> item["image"].shape, item["semantic"].shape
        (torch.Size([3, 32, 32]), torch.Size([32, 32]))
    """
    steps: list[Callable] = []
    if size is not None:  # scaled to fit `size` (times the random scale), then cropped to it
        size = tuple(size)
        # ScaleJitter reads its target as (width, height)
        steps.append(v2.ScaleJitter(size[::-1], scale_range=tuple(scale), antialias=True))
        steps.append(v2.RandomCrop(size, pad_if_needed=True,
                                   fill={tv_tensors.Image: 0, tv_tensors.Mask: 0, Labels: ignore_index}))
    if jitter > 0:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    pipeline = v2.Compose(steps) if steps else None
    flipper = RandomFlip() if flip else None

    def transform(item: Item) -> Item:
        if pipeline is not None:
            item = _unwrap(pipeline(_wrap(item)))
        return flipper(item) if flipper is not None else item
    return transform


def eval_transform(size: Sequence[int] | None) -> Callable[[Item], Item]:
    """Evaluation: the image resized (bilinear, antialiased) to ``size`` for the network, the targets
    left at their native resolution, where the metrics are computed (the prediction is resized up
    to them, as papers report)."""
    if size is None:
        return lambda item: item
    resize = v2.Resize(tuple(size), antialias=True)

    def transform(item: Item) -> Item:
        return {**item, "image": resize(item["image"])}
    return transform
