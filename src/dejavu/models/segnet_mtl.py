"""SegNet-style multi-task network: shared encoder-decoder, one head per task (the NYUD-v2 MTL baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .unet import double_conv


class SegNetMTL(nn.Module):
    """SegNet (Badrinarayanan et al., 2017) trunk with max-unpooling, and a small head per task.

    The outputs of the heads are concatenated along channels, so the network returns one tensor
    ``(B, sum(heads), H, W)``; :class:`dejavu.tasks.MultiTask` splits it again.

    Args:
        heads: output channels of each task head, e.g. ``[13, 1, 3]`` for segmentation, depth, normals.
        width: channels of the first level (doubling each level).
        depth: number of pooling levels; input sides must be multiples of ``2**depth``.

    Example:
        >>> SegNetMTL([6, 1, 3], width=8)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10, 32, 32])
    """

    def __init__(self, heads: list[int], width: int = 16, depth: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        if not heads or min(heads) < 1:
            raise ValueError(f"SegNetMTL: heads must be a non-empty list of channel counts >= 1, got {heads!r}")
        widths = [width * 2 ** min(i, 3) for i in range(depth)]
        self.enc = nn.ModuleList(double_conv(a, b) for a, b in zip([in_channels, *widths[:-1]], widths, strict=True))
        self.dec = nn.ModuleList(double_conv(b, a) for a, b in zip([widths[0], *widths[:-1]], widths, strict=True))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(widths[0], c, 1))
            for c in heads
        )
        self.depth = depth

    def forward(self, x: Tensor) -> Tensor:
        side = 2**self.depth
        if x.shape[-2] % side or x.shape[-1] % side:
            raise ValueError(f"SegNetMTL: input sides must be multiples of {side}, got {tuple(x.shape[-2:])}")
        indices = []
        for block in self.enc:
            x, idx = F.max_pool2d(block(x), 2, return_indices=True)
            indices.append(idx)
        for block, idx in zip(reversed(self.dec), reversed(indices), strict=True):
            x = block(F.max_unpool2d(x, idx, 2))
        return torch.cat([head(x) for head in self.heads], dim=1)
