"""HMS: hierarchical multi-scale attention (Tao, Sapra & Catanzaro 2020), the network of the DejaVu
paper's best Cityscapes row, HRNet-OCR-HMS (86.7 -> 87.1 mIoU).

One network runs at several scales of the image. Besides its class logits, at each scale it predicts a
per-pixel attention ``a`` in ``[0, 1]`` (a small head on OCR's object-contextual features) that says how
much to trust this scale against the larger ones: scales are combined from the largest down,
``pred = a_s * logits_s + (1 - a_s) * pred``, each at the larger one's resolution. Training uses two
scales (0.5, 1), so the attention learns a relative weighting; evaluation chains any number of them
(the paper: 0.5, 1, 2) with the same rule. The soft object regions of OCR are combined the same way
and trained at OCR's auxiliary weight. DejaVu conditions on the combined prediction, the network's output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .hrnet import conv_bn_relu, padded_to_stride
from .ocr import OCR

__all__ = ["HMS", "attention_head", "combine_scales"]


def attention_head(channels: int, hidden: int = 256) -> nn.Sequential:
    """HMS's scale attention: 3x3 conv-BN-ReLU twice, a 1x1 convolution to one channel, a sigmoid."""
    return nn.Sequential(conv_bn_relu(channels, hidden, 3), conv_bn_relu(hidden, hidden, 3),
                         nn.Conv2d(hidden, 1, 1, bias=False), nn.Sigmoid())


def combine_scales(outputs: Sequence[tuple[float, Tensor, Tensor]]) -> Tensor:
    """Combine ``(scale, prediction (B, K, h_s, w_s), attention (B, 1, h_s, w_s))`` from several scales,
    largest first as the paper does: above 1 the running prediction is brought down to the scale's
    size; below 1 the scale's weighted prediction is brought up to the running one's. The result has
    the size of the scale 1 prediction (or the smallest scale above it).

    Example:
        >>> import torch
        >>> lo = (0.5, torch.ones(1, 2, 4, 4), torch.full((1, 1, 4, 4), 0.25))
        >>> hi = (1.0, torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 8, 8))
        >>> combine_scales([lo, hi]).unique().tolist()  # a quarter of the half scale's ones
        [0.25]
    """
    ordered = sorted(outputs, key=lambda output: -output[0])
    prediction = ordered[0][1]
    for scale, logits, attention in ordered[1:]:
        if scale >= 1:
            prediction = _resized(prediction, logits.shape[-2:])
            prediction = attention * logits + (1 - attention) * prediction
        else:
            size = prediction.shape[-2:]
            prediction = _resized(attention * logits, size) + (1 - _resized(attention, size)) * prediction
    return prediction


class HMS(nn.Module):
    """HRNet-OCR (any :class:`~dejavu.models.ocr.OCR`) with hierarchical multi-scale attention.

    Args:
        ocr: the network run at each scale; the attention head reads its object-contextual features.
        train_scales: the scales of a training forward (the paper: 0.5 and 1).
        eval_scales: the scales of an evaluation forward (the paper: 0.5, 1 and 2).
        attention_channels: the attention head's width (the paper: 256).

    ``forward(x)`` returns the combined class logits ``(B, K, H, W)`` at the input's size;
    ``forward(x, auxiliary=True)`` also ``[(ocr.aux_weight, combined soft regions)]``.

    Raises:
        ValueError: scales that are not positive, or a list without the scale 1.

    Example:
        >>> import segmentation_models_pytorch as smp, torch
        >>> ocr = OCR(smp.encoders.get_encoder("resnet18", depth=4), 5, mid_channels=16, key_channels=8)
        >>> HMS(ocr, attention_channels=8).eval()(torch.rand(1, 3, 40, 48)).shape
        torch.Size([1, 5, 40, 48])
    """

    def __init__(self, ocr: OCR, train_scales: Sequence[float] = (0.5, 1.0),
                 eval_scales: Sequence[float] = (0.5, 1.0, 2.0), attention_channels: int = 256) -> None:
        super().__init__()
        for name, scales in (("train_scales", train_scales), ("eval_scales", eval_scales)):
            if not scales or min(scales) <= 0 or 1 not in scales:
                raise ValueError(f"HMS: {name} must be positive scales that include 1, got {list(scales)}")
        self.ocr = ocr
        self.attention = attention_head(ocr.head.in_channels, attention_channels)
        self.train_scales, self.eval_scales = tuple(train_scales), tuple(eval_scales)

    def _at_scale(self, x: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        """Logits, soft regions and attention for ``x`` resized by ``scale``, at that resized size."""
        if scale != 1:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=True)
        h, w = x.shape[-2:]
        padded = padded_to_stride(x, self.ocr.encoder.output_stride)
        logits, regions, features = self.ocr.parts(padded)
        attention = self.attention(features)
        return tuple(_resized(t, padded.shape[-2:])[..., :h, :w] for t in (logits, regions, attention))

    def forward(self, x: Tensor, auxiliary: bool = False) -> Tensor | tuple[Tensor, list[tuple[float, Tensor]]]:
        outputs = [(s, *self._at_scale(x, s)) for s in (self.train_scales if self.training else self.eval_scales)]
        logits = _resized(combine_scales([(s, lg, a) for s, lg, _, a in outputs]), x.shape[-2:])
        if not auxiliary:
            return logits
        regions = _resized(combine_scales([(s, r, a) for s, _, r, a in outputs]), x.shape[-2:])
        return logits, [(self.ocr.aux_weight, regions)]


def _resized(x: Tensor, size: Sequence[int]) -> Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=tuple(size), mode="bilinear",
                                                                       align_corners=False)
