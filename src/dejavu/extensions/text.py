"""DejaVu-TS: text supervision. CLIP features of the regenerated image should match those of the real
image (MSE), weight 0.3 in the paper (the DejaVu paper, section 3.4).

With class names (segmentation), the features compared are the image's CLIP similarities to a text
prompt per class, so the regenerated image must carry the same class evidence; without them, the
unit image embeddings themselves (our reading; the paper gives no formula). CLIP comes from
``open_clip_torch`` and is frozen; its weights are a local checkpoint, or an open_clip pretrained tag
that open_clip fetches (Hugging Face Hub cache, downloaded on first use; see :mod:`dejavu.weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.denseclip import CLIP_CONFIGS, TINY_CLIP
from ..weights import FrozenStateMixin, from_hub
from .base import AuxiliaryLoss, TrainingStep, register_auxiliary

if TYPE_CHECKING:
    from ..tasks import Task

__all__ = ["TINY_CLIP", "TextSupervision"]



@register_auxiliary("text")
class TextSupervision(FrozenStateMixin, AuxiliaryLoss):
    """``weight * MSE(f(I_G), f(I))`` with ``f`` the frozen CLIP features described above.

    Args:
        model: an open_clip model name, e.g. ``"ViT-B-32"``, or :data:`TINY_CLIP`.
        checkpoint: local path to that model's open_clip weights; wins over ``pretrained``.
        pretrained: an open_clip pretrained tag for ``model`` (``"openai"``: the original CLIP
            weights; ``open_clip.list_pretrained()`` lists the others), fetched by open_clip into the
            Hugging Face Hub cache on first use unless ``offline``.
        class_names: class names for the text prompts (segmentation); ``None`` compares embeddings.
        weight: the loss weight (paper: 0.3).
        prompt: text template, ``{}`` is the class name.
        random_init: use random CLIP weights: for tests and timing only, never for results.
        offline: forbid downloading (``None``: the ``DEJAVU_OFFLINE`` variable).

    ``distance(regenerated, image)`` takes both in ``[0, 1]``, ``(B, 3, H, W)``; they are resized to
    CLIP's input size and normalised with CLIP's mean and std. As an auxiliary objective,
    ``forward(step)`` gives ``{"text_loss": distance(regenerated, image)}``.

    Raises:
        FileNotFoundError: a missing checkpoint file, or pretrained weights neither cached nor
            downloadable (the message names them, the cache and the ways out).
        ValueError: :data:`TINY_CLIP` without ``random_init`` (it has no weights).
    """

    def __init__(self, model: str = "ViT-B-32", checkpoint: str | Path | None = None, pretrained: str = "openai",
                 class_names: Sequence[str] | None = None, weight: float = 0.3,
                 prompt: str = "a photo of a {}.", random_init: bool = False, offline: bool | None = None) -> None:
        super().__init__()
        self.frozen_children = ("clip",)
        import open_clip  # optional heavy dependency, imported only when text supervision is used

        open_clip.add_model_config(CLIP_CONFIGS)
        if random_init:
            self.clip = open_clip.create_model(model, pretrained=None)
        elif checkpoint is not None:
            if not Path(checkpoint).expanduser().is_file():
                raise FileNotFoundError(f"TextSupervision: CLIP checkpoint {checkpoint} does not exist")
            self.clip = open_clip.create_model(model, pretrained=str(Path(checkpoint).expanduser()))
        elif model == TINY_CLIP:
            raise ValueError(f"TextSupervision: {TINY_CLIP!r} is a shape for tests and timing, with no weights: "
                             "pass random_init=True, or a real open_clip model such as 'ViT-B-32'")
        else:
            ways_out = ("checkpoint=PATH (an open_clip checkpoint file)",
                        "switch text supervision off (leave it out of model.auxiliaries)")
            self.clip = from_hub(lambda: open_clip.create_model(model, pretrained=pretrained),
                                 f"TextSupervision (CLIP {model!r})", f"the {pretrained!r} weights of {model!r}",
                                 ways_out, offline)
        self.clip.eval().requires_grad_(False)
        self.weight = weight
        size = self.clip.visual.image_size
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.register_buffer("mean", torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1), persistent=False)
        text = None
        if class_names:
            tokens = open_clip.get_tokenizer(model)([prompt.format(c) for c in class_names])
            with torch.no_grad():
                text = F.normalize(self.clip.encode_text(tokens).float(), dim=-1)
        self.register_buffer("text", text, persistent=False)

    extends_dejavu = True

    @classmethod
    def for_task(cls, task: Task, **kwargs: Any) -> TextSupervision:
        """Prompts for the task's classes where it names them, unless ``class_names`` is given."""
        return cls(**{"class_names": getattr(task, "class_names", None), **kwargs})

    def train(self, mode: bool = True) -> TextSupervision:
        return super().train(False)  # frozen feature extractor

    def features(self, x: Tensor) -> Tensor:
        x = F.interpolate(x.float(), size=self.size, mode="bilinear", align_corners=False)
        e = F.normalize(self.clip.encode_image((x - self.mean) / self.std).float(), dim=-1)
        return e @ self.text.T if self.text is not None else e

    def distance(self, regenerated: Tensor, image: Tensor) -> Tensor:
        """``weight * MSE`` between the CLIP features of the two images."""
        with torch.no_grad():
            target = self.features(image)
        return self.weight * F.mse_loss(self.features(regenerated), target)

    def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        return {"text_loss": self.distance(step.regenerated01(), step.image01())}
