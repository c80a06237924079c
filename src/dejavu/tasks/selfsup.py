"""Self-supervised monocular depth (monodepth2, Godard et al., ICCV 2019): the network learns depth
from video alone, by warping the neighbouring frames into the target view (:mod:`.reprojection`).
DejaVu's condition is the predicted depth, as for the supervised depth task."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ..conditioning import depth_map
from .base import Task
from .dense import Depth
from .metrics import DepthMetrics
from .registry import register_task
from .reprojection import auto_mask, median_scaled, photometric_error, smoothness, warp

__all__ = ["PoseNet", "SelfSupervisedDepth", "pose_matrix"]


def pose_matrix(axis_angle: Tensor, translation: Tensor) -> Tensor:
    """``(B, 4, 4)`` rigid transforms from axis-angle rotations ``(B, 3)`` and translations ``(B, 3)``
    (Rodrigues' formula)."""
    angle = axis_angle.norm(dim=1, keepdim=True).clamp_min(1e-8)
    x, y, z = (axis_angle / angle).unbind(1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).view(-1, 3, 3)
    s, c = angle.sin()[..., None], angle.cos()[..., None]
    rotation = torch.eye(3, device=axis_angle.device, dtype=axis_angle.dtype) + s * cross + (1 - c) * cross @ cross
    top = torch.cat([rotation, translation[..., None]], dim=2)
    bottom = top.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(top.shape[0], 1, 4)
    return torch.cat([top, bottom], dim=1)


class PoseNet(nn.Module):
    """monodepth2's pose network, small: a strided convolution stack over the target and a source
    frame side by side, averaged to 6 numbers (axis-angle and translation, scaled by 0.01 so that it
    starts near the identity), as the target-to-source transform."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers, cin = [], 6
        for cout in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        self.body, self.head = nn.Sequential(*layers), nn.Conv2d(cin, 6, 1)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        out = 0.01 * self.head(self.body(torch.cat([target, source], 1))).mean((2, 3))
        return pose_matrix(out[:, :3], out[:, 3:])


@register_task("selfsup_depth")
class SelfSupervisedDepth(Task):
    """Depth learnt from video: one channel of raw output, decoded as monodepth2 does into depth in
    ``[min_depth, max_depth]`` (a sigmoid disparity); loss = per-pixel minimum over source frames of
    ``0.85 (1 - SSIM) / 2 + 0.15 L1`` between the target and each warped source, auto-masked, plus
    ``smoothness_weight`` times the edge-aware smoothness of the mean-normalised disparity, at 4
    scales (the prediction average-pooled by 1, 2, 4, 8 and upsampled back, monodepth2's
    full-resolution multi-scale loss).

    Args:
        pose: ``"network"`` (a :class:`PoseNet` trained with the depth network: the method) or
            ``"known"`` (the batch's ``source_poses``, e.g. the synthetic video's true ones).
        min_depth, max_depth: the depth range of the decoded output (monodepth2: 0.1 and 100).
        smoothness_weight: weight of the smoothness term (monodepth2: 0.001).
        eval_max_depth: evaluation leaves out targets beyond it (80 for KITTI).
        eval_crop: evaluate inside the Garg (``"garg"``) or Eigen crop only, as for KITTI (see
            :class:`dejavu.tasks.Depth`).

    Batches hold ``image`` (the target frame), ``sources`` ``(B, S, 3, H, W)``, ``intrinsics``
    ``(B, 3, 3)``, with ``pose="known"`` ``source_poses`` ``(B, S, 4, 4)``, and ``depth`` for the
    metrics: depth errors after per-image median scaling (a monocular network cannot know the
    scale), as the self-supervised literature reports them.
    """

    name, key, channels, monitor = "selfsup_depth", "depth", 1, ("abs_rel", "min")
    # drawn and saved as depth is: its decoded output is metres too
    view, prediction_files, predicted_files = Depth.view, Depth.prediction_files, Depth.predicted_files

    def __init__(self, pose: str = "network", min_depth: float = 0.1, max_depth: float = 100.0,
                 smoothness_weight: float = 1e-3, eval_max_depth: float | None = None,
                 eval_crop: str | None = None) -> None:
        if pose not in ("network", "known"):
            raise ValueError(f"SelfSupervisedDepth: pose must be 'network' or 'known', got {pose!r}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"SelfSupervisedDepth: need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.pose, self.min_depth, self.max_depth = pose, min_depth, max_depth
        self.smoothness_weight = smoothness_weight
        self.pose_net = PoseNet() if pose == "network" else None
        self.evaluation = Depth(max_depth=eval_max_depth, eval_crop=eval_crop)  # its validity rules and crop

    def modules(self) -> dict[str, nn.Module]:
        """The task's own trainable parts (the pose network), trained with the depth network."""
        return {"pose": self.pose_net} if self.pose_net is not None else {}

    def disparity(self, raw: Tensor) -> Tensor:
        lo, hi = 1 / self.max_depth, 1 / self.min_depth
        return lo + (hi - lo) * torch.sigmoid(raw)

    def decode(self, raw: Tensor) -> Tensor:
        return 1 / self.disparity(raw)

    def condition(self, raw: Tensor) -> Tensor:
        return depth_map(self.decode(raw))

    def _poses(self, batch: Mapping[str, Tensor]) -> Tensor:
        for key in ("sources", "intrinsics") + (("source_poses",) if self.pose == "known" else ()):
            if key not in batch:
                raise KeyError(f"SelfSupervisedDepth: the batch has no {key!r} entry (has {sorted(batch)}); train on "
                               "video (e.g. data.dataset: synthetic_video)")
        if self.pose == "known":
            return batch["source_poses"]
        sources = batch["sources"]
        return torch.stack([self.pose_net(batch["image"], sources[:, i]) for i in range(sources.shape[1])], 1)

    def loss(self, raw: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        self._check_raw(raw)
        poses = self._poses(target)
        image, sources, k = target["image"], target["sources"], target["intrinsics"]
        size = image.shape[-2:]
        identity = torch.cat([photometric_error(sources[:, i], image) for i in range(sources.shape[1])], 1)
        total = raw.new_zeros(())
        for scale in (1, 2, 4, 8):
            disparity = self.disparity(F.interpolate(raw, size=size, mode="bilinear", align_corners=False))
            if scale > 1:
                pooled = F.avg_pool2d(disparity, scale, ceil_mode=True)
                disparity = F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)
            depth = 1 / disparity
            errors = torch.cat([photometric_error(warp(sources[:, i], depth, poses[:, i], k)[0], image)
                                for i in range(sources.shape[1])], 1)
            best, mask = auto_mask(errors, identity)
            total = total + (best * mask).sum() / mask.sum().clamp_min(1)
            total = total + self.smoothness_weight * smoothness(disparity, image) / scale
        return total / 4

    def metrics(self) -> MetricCollection:
        return MetricCollection({"depth": DepthMetrics()})

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Mapping[str, Tensor]) -> None:
        tgt = self.evaluation.evaluated(self._target(target).float())
        pred = self.decode(self._resized(raw.detach().float(), tgt.shape[-2:]))
        metrics.update(median_scaled(pred, tgt), tgt)
