"""Dataset-level metrics of dense regression (torchmetrics, synced under DDP): depth errors and
normal angles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

__all__ = ["AngleMetrics", "DepthMetrics"]


class DepthMetrics(Metric):
    """Depth errors pooled over all valid pixels (target > 0) of all images seen.

    ``abs_rel = mean(|p - t| / t)``, ``sq_rel = mean((p - t)^2 / t)``, ``rmse = sqrt(mean((p - t)^2))``,
    ``rmse_log = sqrt(mean((log p - log t)^2))``, ``delta1..3 = share of max(p/t, t/p) < 1.25^k``,
    ``abs_err = mean(|p - t|)``.
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
        n = self.n.clamp_min(1)
        return {"abs_rel": self.abs_rel / n, "sq_rel": self.sq_rel / n, "rmse": (self.sq / n).sqrt(),
                "rmse_log": (self.sq_log / n).sqrt(), "delta1": self.delta1 / n, "delta2": self.delta2 / n,
                "delta3": self.delta3 / n, "abs_err": self.abs_err / n}


class AngleMetrics(Metric):
    """Angular error of unit normals over valid pixels (target of non-zero length), in degrees:
    mean, median (from a 0.01-degree histogram) and the share within 11.25, 22.5 and 30 degrees."""

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
        n = self.hist.sum().clamp_min(1)
        median_bin = torch.searchsorted(self.hist.cumsum(0), n / 2)
        return {"mean_angle": self.total / n, "median_angle": (median_bin + 0.5) * 180 / self.BINS,
                "within_11.25": self.within_11 / n, "within_22.5": self.within_22 / n, "within_30": self.within_30 / n}
