"""Evaluation-time inference as papers report it: sliding windows over images too large for one pass,
and flip / multi-scale test-time augmentation. Every view's raw prediction is resized to the image
and the views are averaged."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from ..tasks import Task

__all__ = ["INFERENCE_KEYS", "check_inference", "predict", "sliding_window"]

INFERENCE_KEYS = ("scales", "flip", "window", "stride")
Forward = Callable[[Tensor], Tensor]


def _resized(raw: Tensor, size: Sequence[int]) -> Tensor:
    return raw if raw.shape[-2:] == tuple(size) else F.interpolate(raw, size=tuple(size), mode="bilinear",
                                                                   align_corners=False)


def _starts(length: int, window: int, stride: int) -> list[int]:
    last = max(length - window, 0)
    return sorted(set(range(0, last + 1, stride)) | {last})  # the last window ends at the border


def sliding_window(forward: Forward, image: Tensor, window: Sequence[int], stride: Sequence[int]) -> Tensor:
    """The prediction of ``image`` ``(B, 3, H, W)`` from overlapping ``window`` crops every ``stride``
    pixels, averaged where they overlap; at the image's size.

    Example:
        >>> import torch
        >>> sliding_window(lambda x: x[:, :1], torch.rand(1, 3, 40, 70), (32, 32), (16, 16)).shape
        torch.Size([1, 1, 40, 70])
    """
    (h, w), (wh, ww) = image.shape[-2:], (min(window[0], image.shape[-2]), min(window[1], image.shape[-1]))
    total, count = None, image.new_zeros(1, 1, h, w)
    for top in _starts(h, wh, stride[0]):
        for left in _starts(w, ww, stride[1]):
            raw = _resized(forward(image[..., top:top + wh, left:left + ww]), (wh, ww))
            if total is None:
                total = raw.new_zeros(raw.shape[0], raw.shape[1], h, w)
            total[..., top:top + wh, left:left + ww] += raw
            count[..., top:top + wh, left:left + ww] += 1
    return total / count


def predict(forward: Forward, image: Tensor, task: Task, scales: Sequence[float] = (1.0,), flip: bool = False,
            window: Sequence[int] | None = None, stride: Sequence[int] | None = None) -> Tensor:
    """The raw prediction of ``image`` averaged over ``scales`` (the image resized by each), and its
    mirror image when ``flip`` (mirrored back with :meth:`dejavu.tasks.Task.mirror`, so normals keep
    their direction), each view predicted whole or by :func:`sliding_window` when ``window`` is given
    (``stride`` defaults to two thirds of it). Returned at the image's size.

    Raises:
        ValueError: no scale, or a scale or window size that is not positive.
    """
    if not scales or min(scales) <= 0:
        raise ValueError(f"inference: scales must be positive numbers, got {scales!r}")
    if window is not None and (len(window) != 2 or min(window) < 1):
        raise ValueError(f"inference: window must be (height, width) >= 1, got {window!r}")
    stride = stride or ([max(1, 2 * s // 3) for s in window] if window else None)
    size, total, views = image.shape[-2:], 0, 0
    for scale in scales:
        x = image if scale == 1 else F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            view = x.flip(-1) if mirrored else x
            raw = sliding_window(forward, view, window, stride) if window else forward(view)
            total = total + _resized(task.mirror(raw) if mirrored else raw, size)
            views += 1
    return total / views


def check_inference(spec: dict | None) -> None:
    """Refuse unknown keys of ``model.inference`` at construction rather than at the first validation."""
    unknown = set(spec or {}) - set(INFERENCE_KEYS)
    if unknown:
        raise ValueError(f"model.inference: unknown keys {sorted(unknown)}; use {list(INFERENCE_KEYS)}")
