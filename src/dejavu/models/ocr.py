"""OCR: object-contextual representations (Yuan, Chen & Wang, ECCV 2020), the head of HRNet-OCR.

Each pixel is described by the classes' "object regions" it relates to: a first head predicts soft
object regions (coarse class maps, trained by the task's loss at weight 0.4), each region's
representation is the average of the pixel features under its spatial softmax, and every pixel
attends over the regions (the pixel-region relation) to gather an object-contextual representation,
which is fused with its own feature before the classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hrnet import conv_bn_relu, hrnet_representation, padded_to_stride

__all__ = ["OCR", "ObjectContext", "object_regions"]


def object_regions(features: Tensor, soft_regions: Tensor) -> Tensor:
    """Each class region's representation ``(B, K, C)``: the features ``(B, C, h, w)`` averaged under
    the spatial softmax of the region's logits ``(B, K, h, w)``.

    Example:
        >>> object_regions(torch.rand(2, 8, 5, 6), torch.randn(2, 3, 5, 6)).shape
        torch.Size([2, 3, 8])
    """
    weights = soft_regions.flatten(2).float().softmax(-1).to(features.dtype)  # (B, K, hw), each row sums to 1
    return weights @ features.flatten(2).transpose(1, 2)


class ObjectContext(nn.Module):
    """The pixel-region relation and the object-contextual representation, fused with the pixel's
    own feature: ``g([x_i; rho(sum_k softmax_k(phi(x_i) . psi(f_k) / sqrt(d)) delta(f_k))])``."""

    def __init__(self, channels: int, key_channels: int, dropout: float = 0.05) -> None:
        super().__init__()
        self.query = nn.Sequential(conv_bn_relu(channels, key_channels), conv_bn_relu(key_channels, key_channels))
        self.key = nn.Sequential(conv_bn_relu(channels, key_channels), conv_bn_relu(key_channels, key_channels))
        self.value = conv_bn_relu(channels, key_channels)
        self.out = conv_bn_relu(key_channels, channels)
        self.fuse = nn.Sequential(conv_bn_relu(2 * channels, channels), nn.Dropout2d(dropout))
        self.scale = key_channels**-0.5

    def forward(self, pixels: Tensor, regions: Tensor) -> Tensor:
        b, _, h, w = pixels.shape
        region_map = regions.transpose(1, 2).unsqueeze(-1)  # (B, C, K, 1): the 1x1 convolutions apply to it
        query = self.query(pixels).flatten(2).transpose(1, 2)  # (B, hw, d)
        key = self.key(region_map).flatten(2)  # (B, d, K)
        value = self.value(region_map).flatten(2).transpose(1, 2)  # (B, K, d)
        relation = (query @ key * self.scale).softmax(-1)  # (B, hw, K)
        context = (relation @ value).transpose(1, 2).reshape(b, -1, h, w)
        return self.fuse(torch.cat([self.out(context), pixels], 1))


class OCR(nn.Module):
    """An encoder's multi-scale features (the last four, upsampled to the finest and concatenated,
    HRNetV2's representation) through the OCR head.

    Args:
        encoder: a segmentation_models_pytorch encoder (its ``out_channels``, ``output_stride`` and a
            forward that returns a list of feature maps), e.g. timm's HRNet through ``tu-hrnet_w18``.
        out_channels: classes.
        mid_channels, key_channels: the widths of the pixel representation and of the relation (the
            paper: 512 and 256).
        aux_weight: the weight of the soft object regions' loss (the paper: 0.4).
        dropout: before the classifier (the paper: 0.05).

    ``forward(x)`` returns the class logits ``(B, K, H, W)`` at the input's size (any size: the input
    is padded to the encoder's stride); ``forward(x, auxiliary=True)`` also returns
    ``[(aux_weight, soft_region_logits)]`` for the training loss.

    Example:
        >>> import segmentation_models_pytorch as smp
        >>> ocr = OCR(smp.encoders.get_encoder("resnet18"), 5, mid_channels=16, key_channels=8).eval()
        >>> ocr(torch.rand(1, 3, 40, 50)).shape
        torch.Size([1, 5, 40, 50])
    """

    def __init__(self, encoder: nn.Module, out_channels: int, mid_channels: int = 512, key_channels: int = 256,
                 aux_weight: float = 0.4, dropout: float = 0.05) -> None:
        super().__init__()
        self.encoder = encoder
        channels = sum(encoder.out_channels[-4:])
        self.soft_regions = nn.Sequential(conv_bn_relu(channels, channels), nn.Conv2d(channels, out_channels, 1))
        self.pixels = conv_bn_relu(channels, mid_channels, 3)
        self.context = ObjectContext(mid_channels, key_channels, dropout)
        self.head = nn.Conv2d(mid_channels, out_channels, 1)
        self.aux_weight = aux_weight

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The class logits, the soft regions' logits and the object-contextual features (``mid_channels``)
        at the encoder's finest resolution, for an input padded to the encoder's stride."""
        features = hrnet_representation(self.encoder(x))
        regions = self.soft_regions(features)
        pixels = self.pixels(features)
        contextual = self.context(pixels, object_regions(pixels, regions))
        return self.head(contextual), regions, contextual

    def forward(self, x: Tensor, auxiliary: bool = False) -> Tensor | tuple[Tensor, list[tuple[float, Tensor]]]:
        h, w = x.shape[-2:]
        x = padded_to_stride(x, self.encoder.output_stride)
        logits, regions, _ = self.parts(x)
        logits = _upsampled(logits, x.shape[-2:])[..., :h, :w]
        if not auxiliary:
            return logits
        return logits, [(self.aux_weight, _upsampled(regions, x.shape[-2:])[..., :h, :w])]


def _upsampled(x: Tensor, size: torch.Size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
