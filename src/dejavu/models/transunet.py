"""TransUNet (Chen et al., 2021), the DDeP paper's network: a hybrid ViT encoder (a ResNet-50 whose 1/16
map is the ViT's patch grid, "R50+ViT-B/16", supervised on ImageNet-21k) and a cascaded upsampler (CUP)
that climbs back to the input's size through the ResNet's 1/8, 1/4 and 1/2 maps, as a U-Net does.

The encoder is timm's own hybrid ViT (``vit_base_r50_s16_224``, weights ``orig_in21k``), kept whole, so
its checkpoint loads by timm's names and ``frozen: [encoder]`` freezes both its halves. The decoder is
the part DDeP pretrains by denoising; its width (``decoder_channels``) is one of the paper's ablations.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hrnet import conv_bn_relu, padded_to_stride

__all__ = ["CascadedUpsampler", "TransUNet", "fixed_same_padding", "hybrid_features"]


def fixed_same_padding(cnn: nn.Module) -> None:
    """Make timm's TF-style "same" padding of strided layers a constant pad, for inputs whose sides the
    strides divide (TransUNet pads its input to 16). There "same" pads ``kernel - stride`` pixels in all,
    the odd one at the bottom and right, at any size; timm computes it from each input's size, which
    ``torch.export`` turns into nested symbolic expressions that take it many minutes to reason about.
    The outputs are unchanged on such inputs, and so is the state dict (forward pre-hooks; the pooling,
    without parameters, is replaced).
    """
    from timm.layers.pool2d_same import MaxPool2dSame

    for parent in list(cnn.modules()):
        for name, m in parent.named_children():
            if isinstance(m, MaxPool2dSame):
                pool = nn.MaxPool2d(m.kernel_size, m.stride)
                setattr(parent, name, nn.Sequential(nn.ConstantPad2d(_same_pad(m), float("-inf")), pool))
            elif getattr(m, "same_pad", False):
                m.same_pad = False
                m.register_forward_pre_hook(partial(_pad, pad=_same_pad(m)))


def _same_pad(layer: nn.Module) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) of "same" padding on sides the stride divides."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    h, w = max(kh - sh, 0), max(kw - sw, 0)
    return w // 2, w - w // 2, h // 2, h - h // 2


def _pad(module: nn.Module, args: tuple[Tensor, ...], pad: tuple[int, ...]) -> tuple[Tensor, ...]:
    return (F.pad(args[0], pad), *args[1:])


def hybrid_features(vit: nn.Module, x: Tensor) -> list[Tensor]:
    """A timm hybrid ViT's maps for a U-Net: the ResNet's at 1/2 (its stem before pooling), 1/4 and 1/8,
    and the ViT's tokens as a ``(B, embed_dim, H/16, W/16)`` map (after its final norm).

    ``x``: ``(B, 3, H, W)`` with ``H`` and ``W`` divisible by 16. The ViT runs as timm's ``forward_features``
    does, its position embedding resampled to the grid, but from the ResNet's map already computed.
    """
    from timm.layers import resample_abs_pos_embed

    cnn = vit.patch_embed.backbone
    half = cnn.stem.norm(cnn.stem.conv(x))
    quarter = cnn.stages[0](cnn.stem.pool(half))
    eighth = cnn.stages[1](quarter)
    grid = vit.patch_embed.proj(cnn.norm(cnn.stages[2](eighth)))
    h, w = grid.shape[-2:]
    pos = resample_abs_pos_embed(vit.pos_embed, [h, w], num_prefix_tokens=vit.num_prefix_tokens)
    tokens = torch.cat([vit.cls_token.expand(len(x), -1, -1), grid.flatten(2).transpose(1, 2)], 1) + pos
    tokens = vit.norm(vit.blocks(vit.norm_pre(vit.pos_drop(tokens))))
    return [half, quarter, eighth, tokens[:, vit.num_prefix_tokens:].transpose(1, 2).unflatten(2, (h, w))]


class CascadedUpsampler(nn.Module):
    """TransUNet's decoder: a 3x3 convolution on the coarsest map, then per level a bilinear x2
    upsampling, the skip concatenated (none at the last level) and two 3x3 conv-BN-ReLU.

    Args:
        in_channels: the coarsest map's channels (ViT-B: 768).
        skip_channels: the skips' channels, coarse to fine (R50: ``(512, 256, 64)``); fewer than
            ``decoder_channels``: the last levels upsample without a skip.
        decoder_channels: each level's width (TransUNet: ``(256, 128, 64, 16)``).
        head_channels: the first convolution's width (512).

    Example:
        >>> import torch
        >>> cup = CascadedUpsampler(8, (6, 4), (8, 4, 2), head_channels=8)
        >>> cup(torch.rand(1, 8, 2, 2), [torch.rand(1, 6, 4, 4), torch.rand(1, 4, 8, 8)]).shape
        torch.Size([1, 2, 16, 16])
    """

    def __init__(self, in_channels: int, skip_channels: Sequence[int],
                 decoder_channels: Sequence[int] = (256, 128, 64, 16), head_channels: int = 512) -> None:
        super().__init__()
        if len(skip_channels) > len(decoder_channels):
            raise ValueError(f"CascadedUpsampler: {len(skip_channels)} skips for {len(decoder_channels)} levels; "
                             "give at least one level per skip")
        skips = [*skip_channels, *[0] * (len(decoder_channels) - len(skip_channels))]
        self.head = conv_bn_relu(in_channels, head_channels, 3)
        widths = [head_channels, *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(nn.Sequential(conv_bn_relu(cin + skip, cout, 3), conv_bn_relu(cout, cout, 3))
                                    for cin, skip, cout in zip(widths, skips, decoder_channels, strict=True))
        self.skips = len(skip_channels)

    def forward(self, x: Tensor, skips: Sequence[Tensor]) -> Tensor:
        if len(skips) != self.skips:
            raise ValueError(f"CascadedUpsampler: expected {self.skips} skips, got {len(skips)}")
        x = self.head(x)
        for i, block in enumerate(self.blocks):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips[i]], 1) if i < len(skips) else x)
        return x


class TransUNet(nn.Module):
    """TransUNet: a timm hybrid ViT encoder and TransUNet's cascaded upsampler.

    Args:
        encoder: timm's hybrid ViT on a three-stage ResNet-V2, a 1/16 grid (``vit_base_r50_s16_224``:
            R50+ViT-B/16; built with ``dynamic_img_size=True``).
        out_channels: classes (or channels of the prediction).
        decoder_channels: the upsampler's widths, coarse to fine (``(256, 128, 64, 16)``); the paper's
            decoder-width ablation scales them.
        head_channels: the upsampler's first convolution (512).

    ``forward(x)``: ``(B, 3, H, W)`` to ``(B, out_channels, H, W)`` at any size (padded to 16, cropped back).

    Raises:
        ValueError: an encoder that is not a hybrid ViT on a 1/16 ResNet-V2 grid with a class token.

    Example:
        >>> import timm, torch
        >>> vit = timm.create_model("vit_base_r50_s16_224", embed_dim=32, depth=1, num_heads=2, num_classes=0,
        ...                         dynamic_img_size=True)
        >>> net = TransUNet(vit, 5, decoder_channels=(16, 8, 8, 4), head_channels=16)
        >>> net.eval()(torch.rand(1, 3, 40, 70)).shape
        torch.Size([1, 5, 40, 70])
    """

    def __init__(self, encoder: nn.Module, out_channels: int, decoder_channels: Sequence[int] = (256, 128, 64, 16),
                 head_channels: int = 512) -> None:
        super().__init__()
        cnn = getattr(getattr(encoder, "patch_embed", None), "backbone", None)
        stages = getattr(cnn, "stages", ())
        if cnn is None or len(stages) != 3 or getattr(encoder, "cls_token", None) is None:
            raise ValueError("TransUNet: the encoder must be timm's hybrid ViT on a three-stage ResNet-V2 with a "
                             f"class token (e.g. 'vit_base_r50_s16_224'), got {type(encoder).__name__}")
        skip_channels = [stages[1].blocks[-1].conv3.out_channels, stages[0].blocks[-1].conv3.out_channels,
                         cnn.stem.conv.out_channels]
        fixed_same_padding(cnn)
        self.encoder = encoder
        self.decoder = CascadedUpsampler(encoder.embed_dim, skip_channels, decoder_channels, head_channels)
        self.head = nn.Conv2d(decoder_channels[-1], out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        half, quarter, eighth, grid = hybrid_features(self.encoder, padded_to_stride(x, 16))
        return self.head(self.decoder(grid, [eighth, quarter, half]))[..., :h, :w]
