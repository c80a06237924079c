"""Mask2Former (Cheng et al., CVPR 2022), the DejaVu paper's COCO network, from Hugging Face
``transformers``: not re-implemented here, only given images in and a :class:`QueryPrediction` out.

A query-based segmenter predicts, per learned query, a class (or "no object") and a mask; its
per-pixel maps are rendered from them (:class:`dejavu.tasks.QueryPanoptic`), which is what DejaVu
conditions on. ``pip install 'dejavu-dense[mask2former]'`` installs ``transformers``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import from_hub, mismatch

__all__ = ["SWIN", "Mask2Former", "QueryPrediction", "build_mask2former"]

# Swin Transformer sizes (Liu et al., ICCV 2021), as Mask2Former's COCO models use them
SWIN = {
    "swin_tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin_small": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin_base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12},
    "swin_large": {"embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48], "window_size": 12},
}

# their ImageNet weights on the Hugging Face Hub: 1k at 224 for T and S, 22k at 384 for B and L (as Mask2Former's)
SWIN_IMAGENET = {"swin_tiny": "microsoft/swin-tiny-patch4-window7-224",
                 "swin_small": "microsoft/swin-small-patch4-window7-224",
                 "swin_base": "microsoft/swin-base-patch4-window12-384-in22k",
                 "swin_large": "microsoft/swin-large-patch4-window12-384-in22k"}


class QueryPrediction(NamedTuple):
    """A query-based segmenter's output for a batch: per query, a class and a mask.

    Attributes:
        class_logits: ``(B, Q, K + 1)``; the last class is "no object".
        mask_logits: ``(B, Q, h, w)``, Mask2Former's at a quarter of the input's size.

    A named tuple: ``torch.export``, ONNX and ``torch.compile`` take it as two outputs.
    """

    class_logits: Tensor
    mask_logits: Tensor

    @property
    def device(self) -> torch.device:
        return self.class_logits.device

    def apply(self, fn: Callable[[Tensor], Tensor]) -> QueryPrediction:
        """``fn`` applied to both tensors, e.g. ``pred.apply(lambda t: t.float().cpu())``."""
        return QueryPrediction(fn(self.class_logits), fn(self.mask_logits))

    def images(self) -> list[QueryPrediction]:
        """One prediction per image, each a batch of one."""
        return [QueryPrediction(c, m) for c, m in zip(self.class_logits.split(1), self.mask_logits.split(1),
                                                        strict=True)]

    def resized(self, size: Sequence[int]) -> QueryPrediction:
        """The masks' logits resized (bilinear) to ``size``, as Mask2Former's inference does."""
        if tuple(self.mask_logits.shape[-2:]) == tuple(size):
            return self
        masks = F.interpolate(self.mask_logits, size=tuple(size), mode="bilinear", align_corners=False)
        return QueryPrediction(self.class_logits, masks)


class Mask2Former(nn.Module):
    """A ``transformers`` ``Mask2FormerForUniversalSegmentation`` that takes images ``(B, 3, H, W)``
    (normalised as its backbone expects) and returns a :class:`QueryPrediction` of its last decoder
    layer; ``forward(x, auxiliary=True)`` also returns ``[(1.0, prediction), ...]`` of the other
    layers, which Mask2Former supervises with the same loss (deep supervision).

    Its ``encoder`` is the backbone (for ``head_lr_mult``: Mask2Former trains it at a tenth of the
    learning rate).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def encoder(self) -> nn.Module:
        return self.model.model.pixel_level_module.encoder

    def forward(self, x: Tensor, auxiliary: bool = False
                ) -> QueryPrediction | tuple[QueryPrediction, list[tuple[float, QueryPrediction]]]:
        out = self.model(pixel_values=x, output_auxiliary_logits=auxiliary)
        prediction = QueryPrediction(out.class_queries_logits, out.masks_queries_logits)
        if not auxiliary:
            return prediction
        return prediction, [(1.0, QueryPrediction(a["class_queries_logits"], a["masks_queries_logits"]))
                            for a in out.auxiliary_logits]


def build_mask2former(num_classes: int, backbone: str = "swin_tiny", pretrained: str | Path | None = None,
                      encoder_weights: str | None = None, offline: bool | None = None, **config: Any) -> Mask2Former:
    """A Mask2Former for ``num_classes`` classes.

    Args:
        backbone: ``"swin_tiny"``, ``"swin_small"``, ``"swin_base"``, ``"swin_large"`` (Hugging Face's
            Swin, as in the paper), or any timm model name with feature maps (``"resnet50"``...).
        pretrained: a Hub model id such as ``"facebook/mask2former-swin-tiny-coco-panoptic"`` (fetched
            once into the Hugging Face cache) or a local folder written by ``save_pretrained``; its class
            predictor is replaced when ``num_classes`` differs. ``None``: random weights.
        encoder_weights: ``"imagenet"``: the backbone's ImageNet weights, Swin's from the Hub
            (:data:`SWIN_IMAGENET`), a timm backbone's through timm (its default pretrained tag); fetched
            once into the cache.
        **config: ``Mask2FormerConfig`` settings: ``num_queries`` (100), ``hidden_dim`` (256),
            ``decoder_layers`` (10: nine supervised layers and the query initialisation),
            ``encoder_layers`` (6) and the rest.

    Raises:
        ImportError: ``transformers`` not installed (naming the extra).
        ValueError: an unknown config setting, or ``encoder_weights`` other than ``"imagenet"``.
        FileNotFoundError: weights neither cached nor downloadable (offline), naming them and the ways out.
    """
    try:
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig, TimmBackboneConfig
    except ImportError:
        raise ImportError("create_model('mask2former') needs Hugging Face transformers: "
                          "pip install 'dejavu-dense[mask2former]'") from None
    labels = {"num_labels": num_classes, "id2label": {i: str(i) for i in range(num_classes)}}
    if pretrained is not None:
        def load() -> nn.Module:
            return Mask2FormerForUniversalSegmentation.from_pretrained(
                str(pretrained), ignore_mismatched_sizes=True, **labels, **config)
        if Path(str(pretrained)).expanduser().is_dir():
            return Mask2Former(load())
        return Mask2Former(from_hub(load, f"create_model('mask2former', pretrained={str(pretrained)!r})",
                                    str(pretrained), ("pretrained=FOLDER (a save_pretrained copy)",
                                                      "train from scratch with pretrained=None"), offline))
    stages = ["stage1", "stage2", "stage3", "stage4"]
    if encoder_weights not in (None, "imagenet"):
        source = SWIN_IMAGENET[backbone] if backbone in SWIN else "timm's default pretrained tag"
        raise ValueError(f"create_model('mask2former'): a backbone's encoder_weights is 'imagenet' (from {source}) "
                         f"or None, got {encoder_weights!r}; for a whole COCO model give "
                         "pretrained='facebook/mask2former-swin-tiny-coco-panoptic' or a local folder")
    if backbone in SWIN:
        backbone_config = SwinConfig(**SWIN[backbone], out_features=stages)
    else:  # random here: transformers 5 builds a timm backbone without its weights whatever this config says
        backbone_config = TimmBackboneConfig(backbone=backbone, out_indices=(1, 2, 3, 4),
                                             use_pretrained_backbone=False)
    known = set(inspect.signature(Mask2FormerConfig.__init__).parameters) - {"self", "backbone_config", "num_labels"}
    unknown = sorted(set(config) - known)
    if unknown:  # the config would keep them as attributes and use none
        raise ValueError(f"create_model('mask2former'): unknown setting(s) {unknown}; Mask2FormerConfig takes "
                         f"{sorted(k for k in known if not k.startswith(('transformers_', 'architectures')))}")
    with _quiet_about_backbones():
        settings = Mask2FormerConfig(backbone_config=backbone_config, **labels, **config)

    def build() -> nn.Module:
        with _quiet_about_backbones():
            return Mask2FormerForUniversalSegmentation(settings)

    if encoder_weights is None:
        return Mask2Former(build())
    if backbone in SWIN:  # Hugging Face's ImageNet Swin, loaded into the backbone of a fresh model
        from transformers import SwinBackbone

        repo = SWIN_IMAGENET[backbone]
        swin = from_hub(lambda: SwinBackbone.from_pretrained(repo, out_features=stages),
                        f"create_model('mask2former', backbone={backbone!r}, encoder_weights='imagenet')", repo,
                        ("pretrained=FOLDER (a save_pretrained copy of a whole Mask2Former)",
                         "train the backbone from scratch with encoder_weights=None"),
                        offline)
        model = Mask2Former(build())
        model.encoder.load_state_dict(swin.state_dict())
        return model
    import timm

    features = from_hub(lambda: timm.create_model(backbone, pretrained=True, features_only=True,
                                                  out_indices=(1, 2, 3, 4)),
                        f"create_model('mask2former', backbone={backbone!r})",
                        f"timm's {encoder_weights!r} weights of {backbone!r}",
                        ("pretrained=FOLDER (a save_pretrained copy of a whole Mask2Former)",
                         "train the backbone from scratch with encoder_weights=None"),
                        offline)
    model = Mask2Former(build())
    _load_by_suffix(model.encoder, features.state_dict(), f"timm's {backbone!r}")
    return model


def _load_by_suffix(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load ``state`` into ``module``, whose keys are the same names under one prefix (transformers'
    ``TimmBackbone`` holds the timm model one level down); the names must match one for one."""
    own = module.state_dict()
    first_own, first = next(iter(own)), next(iter(state))
    prefix = first_own[: len(first_own) - len(first)] if first_own.endswith(first) else ""
    renamed = {prefix + key: value for key, value in state.items()}
    diff = mismatch(own, renamed)
    if diff:
        raise ValueError(f"create_model('mask2former'): {source} weights do not fit the backbone: {diff}")
    module.load_state_dict(renamed)


@contextmanager
def _quiet_about_backbones() -> Iterator[None]:
    """Without transformers' note that a timm backbone "may not be compatible with Mask2Former": it
    is (tests/models/test_networks.py trains and exports one)."""
    log = logging.getLogger("transformers.models.mask2former.configuration_mask2former")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
