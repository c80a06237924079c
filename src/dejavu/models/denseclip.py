"""DenseCLIP (Rao et al., CVPR 2022) on CLIP's ViT-B/16, the DejaVu paper's ADE20K row "DenseCLIP ViT-B"
(49.8 -> 50.3 mIoU), built on ``open_clip``'s CLIP.

CLIP's image encoder gives features after four of its blocks, turned into a pyramid (1/4 ... 1/32) as
DenseCLIP does, and dense pixel embeddings in CLIP's joint space (the last tokens through ``ln_post`` and
the projection). The class names, each behind a few learnt context tokens, go through CLIP's frozen text
encoder; a small transformer decoder lets the text attend to the image's embeddings (context-aware
prompting, added at a learnt scale that starts at 1e-4). The pixel-text score maps (cosine similarities)
join the features of their own size (1/16), and a semantic FPN (torchvision's FPN neck, DenseCLIP's FPN
head) classifies. The score maps over a temperature of 0.07 are also trained by the task's loss at weight
0.4 (its pixel-text loss).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hrnet import conv_bn_relu, padded_to_stride

__all__ = ["CLIP_CONFIGS", "TINY_CLIP", "ContextDecoder", "DenseCLIP", "FPNHead", "TextContextEncoder"]

CLIP_CONFIGS = Path(__file__).parent / "clip_configs"  # open_clip configs of our own (open_clip.add_model_config)
TINY_CLIP = "dejavu-tiny-clip"  # a small CLIP shape shipped for tests and timing (random weights only)


class TextContextEncoder(nn.Module):
    """CLIP's text encoder (frozen) on ``[SOT, contexts..., name tokens..., EOT]``: the learnt context
    tokens are inserted after the start token of each tokenised class name, and the text embedding is
    read at the end token, as CLIP does.

    Args:
        clip: an open_clip ``CLIP`` whose text tower is used (and frozen).
        tokens: the class names tokenised, ``(K, L)`` (``open_clip.tokenize(names, context_length=L)``).
        contexts: the number of learnt context tokens (DenseCLIP's ViT-B: 8).
    """

    def __init__(self, clip: nn.Module, tokens: Tensor, contexts: int = 8) -> None:
        super().__init__()
        length = tokens.shape[1] + contexts
        self.transformer, self.token_embedding, self.ln_final = clip.transformer, clip.token_embedding, clip.ln_final
        self.positional_embedding = nn.Parameter(clip.positional_embedding[:length].detach().clone())
        self.text_projection = nn.Parameter(clip.text_projection.detach().clone())
        self.requires_grad_(False)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("mask", torch.full((length, length), float("-inf")).triu(1), persistent=False)
        width = self.token_embedding.embedding_dim
        self.contexts = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, contexts, width)))

    def forward(self) -> Tensor:
        """The class embeddings ``(K, D)``."""
        names = self.token_embedding(self.tokens)
        k = names.shape[0]
        x = torch.cat([names[:, :1], self.contexts.expand(k, -1, -1), names[:, 1:]], 1) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.mask))
        end = self.tokens.argmax(-1) + self.contexts.shape[1]  # the end token has the largest id
        return x[torch.arange(k, device=x.device), end] @ self.text_projection


class ContextDecoder(nn.Module):
    """Text queries attending to the image's embeddings (pre-norm transformer decoder layers), projected
    back to the joint space: what DenseCLIP adds to each class embedding."""

    def __init__(self, dim: int, width: int = 256, heads: int = 4, layers: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.memory = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.LayerNorm(width))
        self.text = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.layers = nn.ModuleList(nn.TransformerDecoderLayer(width, heads, 4 * width, dropout, activation="gelu",
                                                               batch_first=True, norm_first=True)
                                    for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        memory, x = self.memory(visual), self.text(text)
        for layer in self.layers:
            x = layer(x, memory)
        return self.out(x)


class FPNHead(nn.Module):
    """The semantic FPN head (Kirillov et al. 2019, mmsegmentation's ``FPNHead``): each level through
    3x3 conv-BN-ReLU layers, upsampled by 2 after each, down to 1/4, summed and classified."""

    def __init__(self, channels: int, out_channels: int, strides: Sequence[int] = (4, 8, 16, 32),
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        for stride in strides:
            layers: list[nn.Module] = []
            for _ in range(max(1, round(math.log2(stride / strides[0])))):
                layers.append(conv_bn_relu(channels, channels, 3))
                if stride > strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.levels.append(nn.Sequential(*layers))
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, out_channels, 1))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        out = self.levels[0](features[0])
        for level, x in zip(self.levels[1:], features[1:], strict=True):
            out = out + F.interpolate(level(x), size=out.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(out)


def token_pyramid(width: int, patch: int) -> nn.ModuleList:
    """DenseCLIP's layers from a ViT's tokens (1/``patch`` of the image) to 1/4, 1/8, 1/16 and 1/32:
    transposed convolutions up, max pooling down, each after a group norm over all channels."""
    def up(times: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.ConvTranspose2d(width, width, 2, 2)]
        for _ in range(times - 1):
            layers += [nn.BatchNorm2d(width), nn.GELU(), nn.ConvTranspose2d(width, width, 2, 2)]
        return layers

    def level(stride: int) -> nn.Module:
        resize = up(int(math.log2(patch // stride))) if stride < patch else [nn.MaxPool2d(stride // patch)] \
            if stride > patch else []
        return nn.Sequential(nn.GroupNorm(1, width), *resize) if resize else nn.GroupNorm(1, width)

    return nn.ModuleList(level(stride) for stride in (4, 8, 16, 32))


class DenseCLIP(nn.Module):
    """DenseCLIP on an open_clip ViT.

    Args:
        clip: an open_clip ``CLIP`` with a ViT image tower of patch 16 (or 8); its image tower becomes
            ``encoder`` (trained), its text tower is frozen.
        tokens: the class names tokenised (``(K, L)``; DenseCLIP: ``L = 5``).
        layers: the image blocks whose tokens make the pyramid (DenseCLIP's ViT-B: ``(3, 5, 7, 11)``).
        contexts: learnt context tokens (8).
        decoder_width, decoder_heads, decoder_layers, dropout: the context decoder (256, 4, 3, 0.1).
        fpn_channels: the semantic FPN's width (256).
        tau: the temperature of the pixel-text loss (0.07); aux_weight: its weight (0.4).

    ``forward(x)`` returns the class logits ``(B, K, H, W)`` at the input's size (padded to 32, cropped
    back); ``forward(x, auxiliary=True)`` also ``[(aux_weight, score maps / tau)]``.

    Example:
        >>> import open_clip
        >>> open_clip.add_model_config(CLIP_CONFIGS)
        >>> clip = open_clip.create_model(TINY_CLIP)
        >>> net = DenseCLIP(clip, open_clip.tokenize(["sky", "road"], context_length=5), layers=(0, 0, 0, 0),
        ...                 contexts=3, decoder_width=16, fpn_channels=16)
        >>> net.eval()(torch.rand(1, 3, 40, 60)).shape
        torch.Size([1, 2, 40, 60])
    """

    def __init__(self, clip: nn.Module, tokens: Tensor, layers: Sequence[int] = (3, 5, 7, 11), contexts: int = 8,
                 decoder_width: int = 256, decoder_heads: int = 4, decoder_layers: int = 3, dropout: float = 0.1,
                 fpn_channels: int = 256, tau: float = 0.07, aux_weight: float = 0.4) -> None:
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        visual = clip.visual
        patch = visual.conv1.kernel_size[0]
        blocks = len(visual.transformer.resblocks)
        if patch not in (8, 16) or len(layers) != 4 or not all(0 <= i < blocks for i in layers):
            raise ValueError(f"DenseCLIP: needs a ViT of patch 16 (or 8) and 4 of its {blocks} blocks as layers; got "
                             f"patch {patch} and layers {list(layers)}")
        self.encoder, self.layers, self.tau, self.aux_weight = visual, list(layers), tau, aux_weight
        self.text = TextContextEncoder(clip, tokens, contexts)
        width, dim, classes = visual.conv1.out_channels, visual.proj.shape[1], tokens.shape[0]
        self.gamma = nn.Parameter(torch.full((dim,), 1e-4))
        self.context_decoder = ContextDecoder(dim, decoder_width, decoder_heads, decoder_layers, dropout)
        self.pyramid = token_pyramid(width, patch)
        self.score_level = (4, 8, 16, 32).index(patch)  # the score maps join the level of the tokens' own size
        channels = [width] * 4
        channels[self.score_level] += classes
        self.neck = FeaturePyramidNetwork(channels, fpn_channels)
        self.head = FPNHead(fpn_channels, classes, dropout=dropout)

    def image_features(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """The four block outputs ``(B, W, h, w)``, and the global ``(B, D)`` and dense ``(B, D, h, w)``
        embeddings in CLIP's joint space, CLIP's position embedding resized to the image's grid."""
        v = self.encoder
        x = v.conv1(x)
        b, c, h, w = x.shape
        pos = v.positional_embedding.to(x.dtype)
        side = int((pos.shape[0] - 1) ** 0.5)
        grid = F.interpolate(pos[1:].reshape(1, side, side, c).permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                             align_corners=False).flatten(2).transpose(1, 2)
        tokens = torch.cat([v.class_embedding.to(x.dtype).expand(b, 1, c), x.flatten(2).transpose(1, 2)], 1)
        x = v.ln_pre(tokens + torch.cat([pos[:1, None].expand(1, 1, c), grid], 1))
        features = []
        for i, block in enumerate(v.transformer.resblocks):
            x = block(x)
            features += [x[:, 1:].transpose(1, 2).reshape(b, c, h, w)] * self.layers.count(i)
        x = v.ln_post(x) @ v.proj
        return features, x[:, 0], x[:, 1:].transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, x: Tensor, auxiliary: bool = False) -> Tensor | tuple[Tensor, list[tuple[float, Tensor]]]:
        h, w = x.shape[-2:]
        padded = padded_to_stride(x, 32)
        features, global_embedding, dense = self.image_features(padded)
        b = dense.shape[0]
        text = self.text().unsqueeze(0).expand(b, -1, -1)
        visual_context = torch.cat([global_embedding[:, None], dense.flatten(2).transpose(1, 2)], 1)
        text = text + self.gamma * self.context_decoder(text, visual_context)
        scores = torch.einsum("bchw,bkc->bkhw", F.normalize(dense, dim=1), F.normalize(text, dim=2))
        levels = [layer(f) for layer, f in zip(self.pyramid, features, strict=True)]
        levels[self.score_level] = torch.cat([levels[self.score_level], scores], 1)
        pyramid = self.neck(OrderedDict((str(i), f) for i, f in enumerate(levels)))
        logits = _to_input(self.head(list(pyramid.values())), padded, h, w)
        if not auxiliary:
            return logits
        return logits, [(self.aux_weight, _to_input(scores / self.tau, padded, h, w))]


def _to_input(logits: Tensor, padded: Tensor, h: int, w: int) -> Tensor:
    return F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
