"""Dataset-level metrics (torchmetrics, synced under DDP): depth errors, normal angles, and the
boundary IoU of a segmentation, panoptic quality split into things and stuff."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.detection import PanopticQuality

__all__ = ["AngleMetrics", "BoundaryIoU", "DepthMetrics", "PanopticMetrics", "boundary_band"]


class DepthMetrics(Metric):
    """Depth errors pooled over all valid pixels (target > 0) of all images seen.

    ``abs_rel = mean(|p - t| / t)``, ``sq_rel = mean((p - t)^2 / t)``, ``rmse = sqrt(mean((p - t)^2))``,
    ``rmse_log = sqrt(mean((log p - log t)^2))``, ``delta1..3 = share of max(p/t, t/p) < 1.25^k``,
    ``abs_err = mean(|p - t|)``.

    Raises:
        ValueError: on ``compute`` when no valid pixel was seen.
    """

    full_state_update = False
    _SUMS = ("n", "abs_rel", "sq_rel", "sq", "sq_log", "delta1", "delta2", "delta3", "abs_err")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in self._SUMS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = (target > 0) & torch.isfinite(target)
        p, t = pred[valid].double().clamp_min(1e-6), target[valid].double()
        ratio = torch.maximum(p / t, t / p)
        diff = p - t
        self.n += valid.sum()
        self.abs_rel += (diff.abs() / t).sum()
        self.sq_rel += (diff**2 / t).sum()
        self.sq += (diff**2).sum()
        self.sq_log += ((p.log() - t.log()) ** 2).sum()
        for k in (1, 2, 3):
            setattr(self, f"delta{k}", getattr(self, f"delta{k}") + (ratio < 1.25**k).sum())
        self.abs_err += diff.abs().sum()

    def compute(self) -> dict[str, Tensor]:
        if self.n == 0:  # every error would read 0: a perfect score for nothing measured
            raise ValueError("DepthMetrics: no valid target pixel in the images seen (valid: finite and > 0, after "
                             "the task's max_depth); check the depth files' scale and units")
        n = self.n
        return {"abs_rel": self.abs_rel / n, "sq_rel": self.sq_rel / n, "rmse": (self.sq / n).sqrt(),
                "rmse_log": (self.sq_log / n).sqrt(), "delta1": self.delta1 / n, "delta2": self.delta2 / n,
                "delta3": self.delta3 / n, "abs_err": self.abs_err / n}


class AngleMetrics(Metric):
    """Angular error of unit normals over valid pixels (target of non-zero length), in degrees:
    mean, median (from a 0.01-degree histogram) and the share within 11.25, 22.5 and 30 degrees.
    ``compute`` raises ``ValueError`` when no valid pixel was seen."""

    full_state_update = False
    BINS = 18000

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("hist", default=torch.zeros(self.BINS, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for t in ("within_11", "within_22", "within_30"):
            self.add_state(t, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target.norm(dim=1) > 0.5
        cos = (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)[valid].clamp(-1, 1)
        deg = torch.rad2deg(torch.acos(cos.double()))
        self.hist += torch.histc(deg, bins=self.BINS, min=0, max=180)
        self.total += deg.sum()
        self.within_11 += (deg < 11.25).sum()
        self.within_22 += (deg < 22.5).sum()
        self.within_30 += (deg < 30).sum()

    def compute(self) -> dict[str, Tensor]:
        n = self.hist.sum()
        if n == 0:  # the errors would read 0 and the median 180 degrees
            raise ValueError("AngleMetrics: no valid target normal in the images seen (valid: length > 0.5); "
                             "targets must be unit vectors, (0, 0, 0) where unknown")
        median_bin = torch.searchsorted(self.hist.cumsum(0), n / 2)
        return {"mean_angle": self.total / n, "median_angle": (median_bin + 0.5) * 180 / self.BINS,
                "within_11.25": self.within_11 / n, "within_22.5": self.within_22 / n, "within_30": self.within_30 / n}


def boundary_band(masks: Tensor, width: int) -> Tensor:
    """The pixels of each mask within ``width`` pixels of its contour (the image border counts as
    contour, as in Cheng et al.): ``mask AND NOT erode(mask, (2 width + 1)^2 square)``.

    ``masks``: ``(B, C, H, W)`` bool; returns the same shape.

    Example:
        >>> m = torch.zeros(1, 1, 8, 8, dtype=torch.bool); m[..., 2:6, 2:6] = True
        >>> int(boundary_band(m, 1).sum())  # a 4x4 square's outer ring
        12
    """
    outside = F.pad((~masks).float(), (width,) * 4, value=1.0)
    touches_outside = F.max_pool2d(outside, 2 * width + 1, stride=1) > 0
    return masks & touches_outside


class BoundaryIoU(Metric):
    """Boundary IoU (Cheng et al., CVPR 2021) of a semantic segmentation, accumulated over a dataset.

    For each class, the IoU of the prediction's and the ground truth's boundary bands (pixels within
    ``d`` of the class mask's contour, ``d = max(1, round(dilation_ratio * image diagonal))``),
    intersections and unions summed over all images; the result is the mean over classes whose
    bands are not both empty. Unlike mIoU, which large interiors dominate, it moves when edges move:
    the part of a prediction that regeneration should sharpen first. Ignored pixels are left out.

    ``update(pred, target)``: ``pred`` logits ``(B, C, H, W)`` or labels ``(B, H, W)``; ``target``
    labels ``(B, H, W)``.

    Example:
        >>> m = BoundaryIoU(num_classes=2)
        >>> t = torch.zeros(1, 16, 16, dtype=torch.long); t[:, 4:12, 4:12] = 1
        >>> m.update(t, t); float(m.compute())
        1.0
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int | None = None, dilation_ratio: float = 0.02,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < dilation_ratio <= 1:
            raise ValueError(f"BoundaryIoU: dilation_ratio must be in (0, 1], got {dilation_ratio!r}")
        self.num_classes, self.ignore_index, self.dilation_ratio = num_classes, ignore_index, dilation_ratio
        for name in ("intersection", "union"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        labels = pred.argmax(dim=1) if pred.dim() == 4 else pred
        if labels.shape != target.shape:
            raise ValueError(f"BoundaryIoU: prediction {tuple(labels.shape)} and target {tuple(target.shape)} "
                             "differ in shape")
        h, w = target.shape[-2:]
        width = max(1, round(self.dilation_ratio * (h * h + w * w) ** 0.5))
        valid = (target != self.ignore_index)[:, None] if self.ignore_index is not None else True
        classes = torch.arange(self.num_classes, device=target.device)[None, :, None, None]
        bands = [boundary_band(x[:, None] == classes, width) & valid for x in (labels, target)]
        self.intersection += (bands[0] & bands[1]).sum(dim=(0, 2, 3)).double()
        self.union += (bands[0] | bands[1]).sum(dim=(0, 2, 3)).double()

    def compute(self) -> Tensor:
        seen = self.union > 0
        return (self.intersection[seen] / self.union[seen]).mean() if seen.any() else self.union.new_zeros(())


class PanopticMetrics(PanopticQuality):
    """Panoptic quality (Kirillov et al., CVPR 2019) over a dataset, from torchmetrics'
    :class:`~torchmetrics.detection.PanopticQuality` (its matching at IoU > 0.5 and its summed
    states, so it syncs under DDP), reported as ``PQ``, ``SQ``, ``RQ`` over all classes and
    ``PQ_th``... over things, ``PQ_st``... over stuff: each the mean over the classes that occur in
    the prediction or the ground truth.

    ``update(pred, target)``: ``(B, H, W, 2)`` integer ``(class, instance)`` pairs; a target class
    that is neither thing nor stuff (e.g. the ignore label) is void: left out, as in panopticapi.
    Without thing (or stuff) classes there is no ``_th`` (``_st``) group to report.

    Example:
        >>> t = torch.zeros(1, 4, 4, 2, dtype=torch.long); t[:, :2, :2] = torch.tensor([1, 1])
        >>> m = PanopticMetrics(things=[1], stuffs=[0]); m.update(t, t)
        >>> {k: float(v) for k, v in m.compute().items()}["PQ"]
        1.0
    """

    def __init__(self, things: list[int], stuffs: list[int], **kwargs) -> None:
        super().__init__(things, stuffs, return_sq_and_rq=True, return_per_class=True, **kwargs)
        # the states are ordered things first, then stuff, each sorted (torchmetrics' convention)
        self.register_buffer("is_thing", torch.arange(len(things) + len(stuffs)) < len(things), persistent=False)

    def compute(self) -> dict[str, Tensor]:
        tp, fp, fn = (x.double() for x in (self.true_positives, self.false_positives, self.false_negatives))
        sq = torch.where(tp > 0, self.iou_sum / tp.clamp_min(1), 0.0)
        rq = tp / (tp + 0.5 * fp + 0.5 * fn).clamp_min(1e-12)
        seen = (tp + fp + fn) > 0
        out = {}
        groups = {"": seen, "_th": seen & self.is_thing, "_st": seen & ~self.is_thing}
        for suffix, members in (("_th", self.is_thing), ("_st", ~self.is_thing)):
            if not members.any():  # a mean over no class would read 0
                del groups[suffix]
        for suffix, keep in groups.items():
            for name, value in (("PQ", sq * rq), ("SQ", sq), ("RQ", rq)):
                out[name + suffix] = value[keep].mean() if keep.any() else value.new_zeros(())
        return out
