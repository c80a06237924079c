"""A small U-Net (Ronneberger et al., 2015) sized for CPU training."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of ``depth`` levels (width doubling each level), bilinear upsampling and skip connections.

    Args:
        out_channels: output channels.
        width: channels of the first level.
        depth: number of downsamplings; input sides need not be multiples of ``2**depth``.
        in_channels: input channels.

    Example:
        >>> UNet(5, width=8)(torch.rand(2, 3, 36, 50)).shape
        torch.Size([2, 5, 36, 50])
    """

    def __init__(self, out_channels: int, width: int = 16, depth: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0])]
                                  + [double_conv(a, b) for a, b in itertools.pairwise(widths)])
        self.up = nn.ModuleList([double_conv(b + a, a) for a, b in itertools.pairwise(widths)])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        for block, skip in zip(reversed(self.up), reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)
