"""Semantic segmentation with a query-based network (Mask2Former on ADE20K, the DejaVu paper's
"Mask2Former Swin-L" row): each class present in an image is one segment for Mask2Former's loss, and
the prediction is Mask2Former's semantic inference, each class's probability summed over the queries
weighted by their masks (:func:`~dejavu.tasks.query_panoptic.render_semantic`), scored by mIoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.mask2former import QueryPrediction
from .dense import Segmentation
from .query_panoptic import check_query_prediction, mask2former_criterion, render_semantic
from .registry import register_task

__all__ = ["QuerySemantic"]


@register_task("query_semantic")
class QuerySemantic(Segmentation):
    """Semantic segmentation with ``create_model("mask2former", num_classes)``: Mask2Former's loss
    (Hungarian matching of the queries to the image's class masks; class 2, mask 5 and dice 5 by
    default) and its semantic inference. DejaVu conditions on that inference normalised over the classes
    at each pixel: a class distribution, as a dense network's softmax is.

    Args:
        num_classes, ignore_index, class_names: as for :class:`~dejavu.tasks.Segmentation`.
        class_weight, mask_weight, dice_weight, no_object_weight, train_num_points: Mask2Former's loss
            settings (its paper's defaults).

    Example:
        >>> task = QuerySemantic(num_classes=6)
        >>> pred = QueryPrediction(torch.randn(2, 10, 7), torch.randn(2, 10, 8, 8))
        >>> task.predicted_map(pred, (16, 16)).shape
        torch.Size([2, 16, 16])
    """

    name, key, monitor = "query_semantic", "semantic", ("mIoU", "max")
    query_based = True
    output_names = ("class_logits", "mask_logits")  # the fields of a QueryPrediction

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: list[str] | None = None,
                 class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 no_object_weight: float = 0.1, train_num_points: int = 12544) -> None:
        super().__init__(num_classes, ignore_index, class_names=class_names)
        self.weights = {"loss_cross_entropy": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.loss_settings = {"no_object_weight": no_object_weight, "train_num_points": train_num_points}

    def _check_raw(self, raw: object) -> None:
        check_query_prediction(raw, self.num_classes, type(self).__name__, self.name)

    def segments(self, target: Tensor | Mapping[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, a mask ``(S, H, W)`` (float) per class present, and those classes ``(S,)``."""
        masks, classes = [], []
        for labels in self._target(target):
            present = torch.unique(labels[(labels >= 0) & (labels < self.num_classes)])
            masks.append((labels[None] == present[:, None, None]).float())
            classes.append(present.long())
        return masks, classes

    def loss(self, raw: QueryPrediction, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        self._check_raw(raw)
        masks, classes = self.segments(target)
        criterion = mask2former_criterion(self.num_classes, self.weights, self.loss_settings, raw.mask_logits.device)
        parts = criterion(raw.mask_logits.float(), raw.class_logits.float(), masks, classes)
        return sum(self.weights[k] * v for k, v in parts.items())

    def render(self, raw: QueryPrediction) -> Tensor:
        """Mask2Former's semantic inference ``(B, num_classes, h, w)`` at the masks' size."""
        self._check_raw(raw)
        return render_semantic(raw)

    def condition(self, rendered: Tensor) -> Tensor:
        """The rendered map normalised over the classes at each pixel."""
        return rendered / rendered.sum(1, keepdim=True).clamp_min(1e-6)

    def predicted_map(self, raw: QueryPrediction, size: Sequence[int] | None = None) -> Tensor:
        rendered = self.render(raw)
        if size is not None and tuple(rendered.shape[-2:]) != tuple(size):
            rendered = F.interpolate(rendered, size=tuple(size), mode="bilinear", align_corners=False)
        return rendered.argmax(1)

    def update_metrics(self, metrics, raw: QueryPrediction, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        rendered = F.interpolate(self.render(raw), size=tgt.shape[-2:], mode="bilinear", align_corners=False)
        metrics.update(rendered.detach(), tgt)

    def mirror(self, raw: QueryPrediction) -> QueryPrediction:
        return QueryPrediction(raw.class_logits, raw.mask_logits.flip(-1))
