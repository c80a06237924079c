"""UperNet on a plain ViT (mmsegmentation's ``upernet_vit-b16_mln``), the DejaVu paper's ADE20K row
"UperNet ViT-B" (47.4 -> 48.2 mIoU).

A plain ViT has one scale (1/16); UperNet wants four. Features are taken after four of its blocks
(ViT-B: the 3rd, 6th, 9th and 12th), and a multi-level neck (mmsegmentation's ``MultiLevelNeck``) turns
them into a pyramid: a 1x1 convolution each, resized by 4, 2, 1 and 0.5 (1/4 ... 1/32 of the image), then
a 3x3 convolution each. UperNet's head is segmentation_models_pytorch's ``UPerNetDecoder`` (pyramid
pooling on the coarsest map, FPN, fusion); an FCN head on the third level is trained at weight 0.4, as
mmsegmentation's auxiliary head. The backbone is timm's ViT at any input size (its position embedding
interpolated).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .hrnet import conv_bn_relu, padded_to_stride

__all__ = ["MultiLevelNeck", "ViTUperNet"]


class MultiLevelNeck(nn.Module):
    """One scale of features to several: per input, a 1x1 convolution, a bilinear resize by its scale and
    a 3x3 convolution (no normalisation, as mmsegmentation's ``MultiLevelNeck`` for ViT).

    Example:
        >>> import torch
        >>> neck = MultiLevelNeck([8, 8], 4, scales=(2, 0.5))
        >>> [tuple(f.shape) for f in neck([torch.rand(1, 8, 4, 4)] * 2)]
        [(1, 4, 8, 8), (1, 4, 2, 2)]
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, scales: Sequence[float] = (4, 2, 1, 0.5)) -> None:
        super().__init__()
        if len(scales) != len(in_channels):
            raise ValueError(f"MultiLevelNeck: one scale per input, got {len(scales)} for {len(in_channels)}")
        self.scales = tuple(scales)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        out = []
        for x, lateral, conv, scale in zip(features, self.lateral, self.convs, self.scales, strict=True):
            x = lateral(x)
            if scale != 1:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            out.append(conv(x))
        return out


class ViTUperNet(nn.Module):
    """UperNet on a plain ViT through a multi-level neck.

    Args:
        encoder: a timm VisionTransformer (``dynamic_img_size=True``), e.g. ``vit_base_patch16_224``.
        out_channels: classes.
        layers: the blocks whose outputs feed the neck (ViT-B: ``(2, 5, 8, 11)``).
        neck_channels: the neck's width (mmsegmentation: 768).
        scales: the neck's resize factors (``(4, 2, 1, 0.5)``: 1/4 to 1/32 for a 16-pixel patch).
        decoder_channels: UperNet's width (mmsegmentation: 512).
        aux_channels, aux_weight: the auxiliary FCN head's width and loss weight (256, 0.4).
        dropout: before the classifiers (0.1).

    ``forward(x)`` returns the class logits ``(B, K, H, W)`` at the input's size (any size: padded to 32
    and cropped back); ``forward(x, auxiliary=True)`` also ``[(aux_weight, auxiliary logits)]``.

    Example:
        >>> import timm, torch
        >>> vit = timm.create_model("vit_tiny_patch16_224", depth=4, dynamic_img_size=True, num_classes=0)
        >>> net = ViTUperNet(vit, 5, layers=(0, 1, 2, 3), neck_channels=16, decoder_channels=16, aux_channels=8)
        >>> net.eval()(torch.rand(1, 3, 40, 70)).shape
        torch.Size([1, 5, 40, 70])
    """

    def __init__(self, encoder: nn.Module, out_channels: int, layers: Sequence[int] = (2, 5, 8, 11),
                 neck_channels: int = 768, scales: Sequence[float] = (4, 2, 1, 0.5), decoder_channels: int = 512,
                 aux_channels: int = 256, aux_weight: float = 0.4, dropout: float = 0.1) -> None:
        super().__init__()
        from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder

        blocks = len(getattr(encoder, "blocks", ()))
        if len(layers) != 4 or not all(0 <= i < blocks for i in layers):
            raise ValueError(f"ViTUperNet: layers must be 4 block indices of the encoder's {blocks} blocks, got "
                             f"{list(layers)}")
        self.encoder, self.layers, self.aux_weight = encoder, list(layers), aux_weight
        self.neck = MultiLevelNeck([encoder.embed_dim] * 4, neck_channels, scales)
        # smp's decoder reads the features from the 4th on: [image, 1/2, 1/4, 1/8, 1/16, 1/32]
        self.decoder = UPerNetDecoder([3, 0, *[neck_channels] * 4], encoder_depth=5, decoder_channels=decoder_channels)
        self.head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(decoder_channels, out_channels, 1))
        self.aux_head = nn.Sequential(conv_bn_relu(neck_channels, aux_channels, 3), nn.Dropout2d(dropout),
                                      nn.Conv2d(aux_channels, out_channels, 1))

    def forward(self, x: Tensor, auxiliary: bool = False) -> Tensor | tuple[Tensor, list[tuple[float, Tensor]]]:
        h, w = x.shape[-2:]
        padded = padded_to_stride(x, 32)
        features = self.encoder.forward_intermediates(padded, indices=self.layers, norm=False, output_fmt="NCHW",
                                                      intermediates_only=True)
        pyramid = self.neck(features)
        logits = _to_input(self.head(self.decoder([padded, padded, *pyramid])), padded, h, w)
        if not auxiliary:
            return logits
        return logits, [(self.aux_weight, _to_input(self.aux_head(pyramid[2]), padded, h, w))]


def _to_input(logits: Tensor, padded: Tensor, h: int, w: int) -> Tensor:
    return F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]


def vit_encoder(name: str, **kwargs) -> Callable[[str | None], nn.Module]:
    """A builder of timm's ViT ``name`` at any input size, with timm's pretrained weights when given a tag."""
    import timm

    def build(weights: str | None) -> nn.Module:
        return timm.create_model(name, pretrained=weights is not None, dynamic_img_size=True, num_classes=0, **kwargs)
    return build
