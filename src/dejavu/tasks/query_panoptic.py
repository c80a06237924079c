"""Panoptic segmentation by mask classification (Mask2Former, Cheng et al., CVPR 2022): the network
predicts, per query, a class and a mask (a :class:`~dejavu.models.QueryPrediction`), trained by
Hungarian matching to the ground truth's segments, and the panoptic map is assembled from the
confident queries.

DejaVu needs a per-pixel map to condition the CRM on; Mask2Former's own semantic inference renders
one, ``sum_q softmax(class_q) * sigmoid(mask_q)`` per class, which is differentiable in every query.
Beside it goes one channel of where segments meet (:func:`segment_edges`), the instance information
a class map lacks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassJaccardIndex

from ..models.mask2former import QueryPrediction
from .metrics import PanopticMetrics
from .panoptic import Panoptic
from .registry import register_task

__all__ = ["QueryPanoptic", "check_query_prediction", "mask2former_criterion", "render_semantic", "segment_edges"]


def render_semantic(pred: QueryPrediction) -> Tensor:
    """Mask2Former's semantic inference: ``(B, K, h, w)``, each class's probability summed over the
    queries, weighted by their masks: ``einsum("bqk,bqhw->bkhw", softmax(class)[..., :K], sigmoid(mask))``.

    Example:
        >>> pred = QueryPrediction(torch.randn(2, 5, 4), torch.randn(2, 5, 8, 8))
        >>> render_semantic(pred).shape
        torch.Size([2, 3, 8, 8])
    """
    return _semantic(pred.class_logits.float().softmax(-1), pred.mask_logits.float().sigmoid())


def _semantic(probs: Tensor, masks: Tensor) -> Tensor:
    return torch.einsum("bqk,bqhw->bkhw", probs[..., :-1], masks)


def segment_edges(assignment: Tensor) -> Tensor:
    """``(B, 1, h, w)``: the probability that a pixel and its right / lower neighbour belong to
    different segments, ``1 - sum_s a_s(p) a_s(p')`` averaged over the two neighbours, from soft
    assignments ``(B, S, h, w)`` of the pixels to segments (each pixel's summing to 1). With one-hot
    assignments it is 1 exactly where a segment ends: the boundaries between instances of one class
    that a class map cannot show.

    Example:
        >>> a = torch.zeros(1, 2, 4, 4); a[:, 0, :, :2] = 1; a[:, 1, :, 2:] = 1
        >>> segment_edges(a)[0, 0, 0].tolist()
        [0.0, 0.5, 0.0, 0.0]
    """
    padded = F.pad(assignment, (0, 1, 0, 1), mode="replicate")  # the last row and column have no new neighbour
    right = (assignment * padded[..., :-1, 1:]).sum(1, keepdim=True)
    down = (assignment * padded[..., 1:, :-1]).sum(1, keepdim=True)
    return 1 - (right + down) / 2


def mask2former_criterion(num_classes: int, weights: dict[str, float], settings: dict[str, float],
                          device: torch.device):
    """``transformers``' ``Mask2FormerLoss`` for ``num_classes`` with these loss ``weights`` and
    ``settings`` (no-object weight, sampled points...), on ``device``; one per setting, built once."""
    return _criterion(num_classes, tuple(sorted(weights.items())), tuple(sorted(settings.items()))).to(device)


@functools.cache
def _criterion(num_classes: int, weights: tuple, settings: tuple):
    try:
        from transformers import Mask2FormerConfig
        from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss
    except ImportError:
        raise ImportError("the query-based tasks need Hugging Face transformers: "
                          "pip install 'dejavu-dense[mask2former]'") from None
    return Mask2FormerLoss(Mask2FormerConfig(num_labels=num_classes, **dict(settings)), dict(weights))


def check_query_prediction(raw: object, num_classes: int, owner: str, task: str) -> None:
    """Raise a ``ValueError`` unless ``raw`` is a :class:`QueryPrediction` of ``num_classes`` + 1 ("no
    object") classes, naming the network a query-based ``task`` goes with."""
    if not isinstance(raw, QueryPrediction) or raw.class_logits.shape[-1] != num_classes + 1:
        got = (f"class logits of shape {tuple(raw.class_logits.shape)}" if isinstance(raw, QueryPrediction)
               else f"a {type(raw).__name__}")
        raise ValueError(f"{owner}: the prediction must be a QueryPrediction with {num_classes} + 1 classes, got "
                         f"{got}; the {task} task goes with a query-based network: --model.network "
                         "'{name: mask2former, ...}'")


@functools.cache
def _processor():
    from transformers import Mask2FormerImageProcessor

    return Mask2FormerImageProcessor()  # post-processing only: its resizing and normalisation are not used


@register_task("query_panoptic")
class QueryPanoptic(Panoptic):
    """Panoptic segmentation with a query-based network (``create_model("mask2former", num_classes)``).

    Loss: Mask2Former's own, from ``transformers`` (``Mask2FormerLoss``): Hungarian matching of the
    queries to the ground-truth segments, then ``class_weight`` x cross-entropy (the "no object"
    class down-weighted by ``no_object_weight``) + ``mask_weight`` x sigmoid cross-entropy +
    ``dice_weight`` x dice loss on ``train_num_points`` points sampled where the masks are uncertain.
    Each stuff class present in an image is one segment, each thing instance another; thing pixels
    without an instance, and ignored pixels, belong to none. The loss normalises by the segments of
    the batch on each process (``transformers`` averages them over processes only under accelerate).

    Inference: ``transformers``' ``post_process_panoptic_segmentation`` (queries scoring above
    ``threshold``, pixels above ``mask_threshold``, a segment kept when at least
    ``overlap_threshold`` of its pixels are its own; stuff segments of one class merged), scored by
    :class:`~dejavu.tasks.metrics.PanopticMetrics`; pixels no segment claims are void.

    DejaVu's condition (``num_classes + 1`` channels): :func:`render_semantic` and the
    :func:`segment_edges` of the queries' soft assignment of pixels (each query's mask weighted by its
    best class probability, normalised over the queries).

    Args:
        num_classes, things, ignore_index, class_names: as for :class:`~dejavu.tasks.Panoptic`.
        class_weight, mask_weight, dice_weight, no_object_weight, train_num_points, oversample_ratio,
            importance_sample_ratio: Mask2Former's loss (its defaults: 2, 5, 5, 0.1, 12544, 3, 0.75).
        threshold, mask_threshold, overlap_threshold: the panoptic inference (0.8, 0.5, 0.8).

    Example:
        >>> task = QueryPanoptic(num_classes=6, things=[3, 4, 5])
        >>> task.channels, task.condition_channels
        (6, 7)
    """

    name, key, monitor = "query_panoptic", "semantic", ("PQ", "max")
    query_based = True
    output_names = ("class_logits", "mask_logits")  # the fields of a QueryPrediction

    def __init__(self, num_classes: int, things: Sequence[int], ignore_index: int = 255,
                 class_names: list[str] | None = None, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, no_object_weight: float = 0.1, train_num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75, threshold: float = 0.8,
                 mask_threshold: float = 0.5, overlap_threshold: float = 0.8) -> None:
        super().__init__(num_classes, things, ignore_index, class_names)
        self.channels = num_classes  # the network's classes; it adds "no object" itself
        self.weights = {"loss_cross_entropy": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.loss_settings = {"no_object_weight": no_object_weight, "train_num_points": train_num_points,
                              "oversample_ratio": oversample_ratio, "importance_sample_ratio": importance_sample_ratio}
        self.threshold, self.mask_threshold, self.overlap_threshold = threshold, mask_threshold, overlap_threshold

    @property
    def condition_channels(self) -> int:
        return self.num_classes + 1  # the classes and the segments' edges

    def _check_raw(self, raw: object) -> None:
        check_query_prediction(raw, self.num_classes, type(self).__name__, self.name)

    def criterion(self, device: torch.device):
        """``transformers``' ``Mask2FormerLoss`` with this task's settings, on ``device``."""
        return mask2former_criterion(self.num_classes, self.weights, self.loss_settings, device)

    def segments(self, target: Mapping[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, the ground truth's segments as masks ``(S, H, W)`` (float) and their classes ``(S,)``."""
        semantic, instance = self._labels(target)
        keys, base = self._segment_keys(semantic, instance)
        masks, classes = [], []
        for k in keys:
            ids = torch.unique(k[k >= 0])
            masks.append((k[None] == ids[:, None, None]).float())
            classes.append(ids // base)
        return masks, classes

    def _segment_keys(self, semantic: Tensor, instance: Tensor) -> tuple[Tensor, int]:
        """Each pixel's segment as ``class * base + instance`` (instance 0 for stuff; -1: no segment), and ``base``."""
        base = int(instance.max()) + 1
        thing = torch.isin(semantic, torch.as_tensor(self.things, device=semantic.device))
        void = (semantic == self.ignore_index) | (semantic >= self.num_classes) | (thing & (instance <= 0))
        keys = semantic.long() * base + torch.where(thing, instance, torch.zeros_like(instance))
        return keys.masked_fill(void, -1), base

    def loss(self, raw: QueryPrediction, target: Mapping[str, Tensor]) -> Tensor:
        self._check_raw(raw)
        masks, classes = self.segments(target)
        parts = self.criterion(raw.mask_logits.device)(raw.mask_logits.float(), raw.class_logits.float(), masks,
                                                       classes)
        return sum(self.weights[k] * v for k, v in parts.items())

    def render(self, raw: QueryPrediction) -> Tensor:
        """The per-pixel map DejaVu conditions on, ``(B, num_classes + 1, h, w)``: :func:`render_semantic`
        and the :func:`segment_edges` of the queries."""
        self._check_raw(raw)
        probs, masks = raw.class_logits.float().softmax(-1), raw.mask_logits.float().sigmoid()
        score = probs[..., :-1].amax(-1)  # how sure the query is that it is an object, not "no object"
        weighted = score[..., None, None] * masks
        assignment = weighted / weighted.sum(1, keepdim=True).clamp_min(1e-6)
        return torch.cat([_semantic(probs, masks), segment_edges(assignment)], 1)

    def condition(self, rendered: Tensor) -> Tensor:
        """The rendered map itself (:meth:`render`): already probabilities and edges."""
        return rendered

    def target_condition(self, target: Mapping[str, Tensor]) -> Tensor:
        """One-hot labels (ignored pixels uniform) and the edges of the true segments."""
        semantic, instance = self._labels(target)
        keys, _ = self._segment_keys(semantic, instance)
        ids, index = torch.unique(keys, return_inverse=True)
        assignment = F.one_hot(index, len(ids)).permute(0, 3, 1, 2).float()
        return torch.cat([self.semantic.target_condition(semantic), segment_edges(assignment)], 1)

    def mirror(self, raw: QueryPrediction) -> QueryPrediction:
        return QueryPrediction(raw.class_logits, raw.mask_logits.flip(-1))

    def predicted_map(self, raw: QueryPrediction, size: Sequence[int] | None = None) -> Tensor:
        return self.decode(raw, size)

    def decode(self, raw: QueryPrediction, size: Sequence[int] | None = None) -> Tensor:
        """The panoptic map ``(B, 2, H, W)`` (class and instance; void pixels ``ignore_index`` and 0) at
        ``size`` (default: the masks' own), by ``transformers``' ``post_process_panoptic_segmentation``."""
        self._check_raw(raw)
        size = tuple(size or raw.mask_logits.shape[-2:])
        outputs = SimpleNamespace(class_queries_logits=raw.class_logits.float(),
                                  masks_queries_logits=raw.mask_logits.float())
        results = _processor().post_process_panoptic_segmentation(
            outputs, threshold=self.threshold, mask_threshold=self.mask_threshold,
            overlap_mask_area_threshold=self.overlap_threshold, label_ids_to_fuse=set(self.stuff),
            target_sizes=[size] * raw.class_logits.shape[0])
        device = raw.class_logits.device
        out = torch.zeros(len(results), 2, *size, dtype=torch.long, device=device)
        out[:, 0] = self.ignore_index
        for b, result in enumerate(results):
            segmentation, count = result["segmentation"].to(device), 0
            for info in result["segments_info"]:
                where = segmentation == info["id"]
                out[b, 0][where] = info["label_id"]
                if info["label_id"] in self.things:
                    count += 1
                    out[b, 1][where] = count
        return out

    def metrics(self) -> MetricCollection:
        return MetricCollection({
            # void pixels of the prediction (claimed by no segment) are void, as in panopticapi
            "panoptic": PanopticMetrics(self.things, self.stuff, allow_unknown_preds_category=True),
            "mIoU": MulticlassJaccardIndex(self.num_classes, average="macro", ignore_index=self.ignore_index,
                                           validate_args=False)})

    def update_metrics(self, metrics: MetricCollection, raw: QueryPrediction, target: Mapping[str, Tensor]) -> None:
        truth, raw = self.target_map(target), raw.apply(Tensor.detach)
        pred = self.decode(raw, truth.shape[-2:])
        metrics["panoptic"].update(pred.permute(0, 2, 3, 1), truth.permute(0, 2, 3, 1))
        semantic = render_semantic(raw.resized(truth.shape[-2:])).argmax(1)
        metrics["mIoU"].update(semantic, truth[:, 0])
