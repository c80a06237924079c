"""HRNetV2 (Wang et al., TPAMI 2020), the network of the DejaVu paper's Cityscapes rows "HRNet18/48":
the backbone's four branches, kept at their own widths, upsampled to the finest and concatenated (HRNetV2's
representation), then classified by a 1x1 conv-BN-ReLU and a 1x1 convolution, as HRNet-Semantic-
Segmentation's head does. The backbone is timm's HRNet through segmentation_models_pytorch's ``tu-``
encoders; OCR (:mod:`dejavu.models.ocr`) reads the same representation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HRNetV2", "conv_bn_relu", "hrnet_representation", "padded_to_stride"]


def conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def hrnet_representation(maps: Sequence[Tensor]) -> Tensor:
    """HRNetV2's representation: the last four feature maps upsampled (bilinear) to the size of the first
    of them and concatenated along channels.

    Example:
        >>> maps = [torch.rand(1, 2, 16, 16), torch.rand(1, 4, 8, 8), torch.rand(1, 8, 4, 4), torch.rand(1, 16, 2, 2)]
        >>> hrnet_representation(maps).shape
        torch.Size([1, 30, 16, 16])
    """
    maps = list(maps)[-4:]
    size = maps[0].shape[-2:]
    return torch.cat([maps[0], *(F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                 for m in maps[1:])], 1)


def padded_to_stride(x: Tensor, stride: int) -> Tensor:
    """``x`` padded at the bottom and right (edge pixels repeated) to sides divisible by ``stride``: HRNet's
    branches fuse only at such sides."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % stride, 0, -h % stride), mode="replicate")


class HRNetV2(nn.Module):
    """HRNetV2 for semantic segmentation: an encoder's last four feature maps through HRNetV2's head.

    Args:
        encoder: a segmentation_models_pytorch encoder (``out_channels``, ``output_stride``, a forward that
            returns its feature maps), e.g. timm's HRNet with its raw branches (``create_model("hrnetv2",
            K, encoder="tu-hrnet_w48")`` builds that).
        out_channels: classes.

    ``forward(x)`` returns the class logits ``(B, K, H, W)`` at the input's size (any size: the input is
    padded to the encoder's stride and the output cropped back).

    Example:
        >>> import segmentation_models_pytorch as smp
        >>> net = HRNetV2(smp.encoders.get_encoder("resnet18"), 5).eval()
        >>> net(torch.rand(1, 3, 40, 50)).shape
        torch.Size([1, 5, 40, 50])
    """

    def __init__(self, encoder: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.encoder = encoder
        channels = sum(encoder.out_channels[-4:])
        self.head = nn.Sequential(conv_bn_relu(channels, channels), nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        padded = padded_to_stride(x, self.encoder.output_stride)
        logits = self.head(hrnet_representation(self.encoder(padded)))
        return F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
