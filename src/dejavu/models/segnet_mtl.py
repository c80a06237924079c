"""SegNet-style multi-task network: shared encoder-decoder, one head per task (the NYUD-v2 MTL baseline).

At MTPSL's size (``widths=[64, 128, 256, 512, 512], convs=[2, 2, 3, 3, 3]``: VGG-16's thirteen
convolutions and their mirror, 25.0 M parameters) it is the SegNet of the DejaVu paper's NYUD-v2 rows; the
default (width 16, four levels of two convolutions, 0.5 M) is sized for CPU tests and studies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SegNetMTL", "conv_stack"]


def conv_stack(cin: int, cout: int, count: int) -> nn.Sequential:
    """``count`` 3x3 conv-BN-ReLU layers, the first from ``cin`` to ``cout`` channels."""
    layers = []
    for i in range(count):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegNetMTL(nn.Module):
    """SegNet (Badrinarayanan et al., 2017) trunk with max-unpooling, and a small head per task.

    The outputs of the heads are concatenated along channels, so the network returns one tensor
    ``(B, sum(heads), H, W)``; :class:`dejavu.tasks.MultiTask` splits it again. ``shared`` (an identity
    on the encoder's pooled output) marks the representation every task shares, which objectives such
    as cross-task consistency (:mod:`dejavu.extensions.xtc`) read.

    Args:
        heads: output channels of each task head, e.g. ``[13, 1, 3]`` for segmentation, depth, normals.
        width: channels of the first level, doubling each level up to 8x (when ``widths`` is not given).
        depth: number of pooling levels (when ``widths`` is not given); input sides must be multiples
            of ``2**depth``.
        widths: the channels of each level, e.g. MTPSL's ``[64, 128, 256, 512, 512]``.
        convs: the convolutions of each level (default 2 each); the decoder mirrors them, its first
            layer of a level going down to the next level's width.

    Raises:
        ValueError: no heads, or ``convs`` of another length than the levels or below 1.

    Example:
        >>> SegNetMTL([6, 1, 3], width=8)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10, 32, 32])
    """

    def __init__(self, heads: list[int], width: int = 16, depth: int = 4, in_channels: int = 3,
                 widths: Sequence[int] | None = None, convs: Sequence[int] | None = None) -> None:
        super().__init__()
        if not heads or min(heads) < 1:
            raise ValueError(f"SegNetMTL: heads must be a non-empty list of channel counts >= 1, got {heads!r}")
        widths = list(widths) if widths is not None else [width * 2 ** min(i, 3) for i in range(depth)]
        convs = list(convs) if convs is not None else [2] * len(widths)
        if len(convs) != len(widths) or min(convs) < 1:
            raise ValueError(f"SegNetMTL: convs must give 1 or more convolutions for each of the {len(widths)} "
                             f"levels, got {convs}")
        self.enc = nn.ModuleList(conv_stack(a, b, n) for a, b, n in zip([in_channels, *widths[:-1]], widths, convs,
                                                                        strict=True))
        self.dec = nn.ModuleList(conv_stack(b, a, n) for a, b, n in zip([widths[0], *widths[:-1]], widths, convs,
                                                                        strict=True))
        self.shared = nn.Identity()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(widths[0], c, 1))
            for c in heads
        )
        self.depth = len(widths)

    def forward(self, x: Tensor) -> Tensor:
        side = 2**self.depth
        if x.shape[-2] % side or x.shape[-1] % side:
            raise ValueError(f"SegNetMTL: input sides must be multiples of {side}, got {tuple(x.shape[-2:])}")
        indices = []
        for block in self.enc:
            x, idx = F.max_pool2d(block(x), 2, return_indices=True)
            indices.append(idx)
        x = self.shared(x)
        for block, idx in zip(reversed(self.dec), reversed(indices), strict=True):
            x = block(F.max_unpool2d(x, idx, 2))
        return torch.cat([head(x) for head in self.heads], dim=1)
