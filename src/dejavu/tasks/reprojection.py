"""View synthesis and the photometric losses of self-supervised monocular depth (monodepth2, Godard et
al., ICCV 2019): warp a source frame into the target view with the predicted depth and the relative
pose, compare with SSIM + L1, take the per-pixel minimum over source frames, mask pixels that a static
camera would explain as well (auto-masking), and smooth the disparity where the image is smooth.

Conventions: camera frame x right, y down, z forward; depth is z; pixel ``(u, v)`` has its centre at
``(u + 0.5, v + 0.5)`` in the coordinates the intrinsics ``K`` map to (the synthetic scenes' convention;
for a matrix whose pixel centres are at integers, as KITTI's, add 0.5 to ``cx`` and ``cy``). A pose
``(B, 4, 4)`` maps target-camera points to source-camera points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["auto_mask", "median_scaled", "photometric_error", "smoothness", "warp"]


def _pixels(h: int, w: int, like: Tensor) -> Tensor:
    v, u = torch.meshgrid(torch.arange(h, device=like.device, dtype=like.dtype) + 0.5,
                          torch.arange(w, device=like.device, dtype=like.dtype) + 0.5, indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)  # (3, H*W)


def warp(source: Tensor, depth: Tensor, pose: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """The source image seen from the target camera: each target pixel is lifted to 3-D with its
    ``depth``, moved by ``pose`` into the source camera, projected, and the source sampled there
    (bilinear).

    Args:
        source: ``(B, C, H, W)`` source frame.
        depth: ``(B, 1, H, W)`` target depth (> 0).
        pose: ``(B, 4, 4)`` target-to-source rigid transform.
        intrinsics: ``(B, 3, 3)`` (or ``(3, 3)``) camera matrix, the same for both frames.

    Returns:
        the warped source ``(B, C, H, W)`` and a ``(B, 1, H, W)`` mask of the pixels that land inside
        the source frame in front of its camera.
    """
    b, _, h, w = depth.shape
    k = intrinsics.expand(b, 3, 3) if intrinsics.dim() == 2 else intrinsics
    points = torch.linalg.solve(k, _pixels(h, w, depth).expand(b, 3, h * w)) * depth.reshape(b, 1, -1)
    moved = pose[:, :3, :3] @ points + pose[:, :3, 3:]
    projected = k @ moved
    z = projected[:, 2:].clamp_min(1e-6)
    uv = projected[:, :2] / z
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], dim=-1).reshape(b, h, w, 2)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = (grid.abs() <= 1).all(-1) & (moved[:, 2] > 1e-3).reshape(b, h, w)
    return warped, inside[:, None]


def photometric_error(a: Tensor, b: Tensor, alpha: float = 0.85) -> Tensor:
    """``alpha * (1 - SSIM) / 2 + (1 - alpha) * L1`` per pixel, ``(B, 1, H, W)``, monodepth2's
    reprojection error, with torchmetrics' SSIM map (3x3 uniform window, as monodepth2)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, ssim = structural_similarity_index_measure(a.float(), b.float(), data_range=1.0, kernel_size=3,
                                                  gaussian_kernel=False, reduction="none", return_full_image=True)
    l1 = (a - b).abs().mean(1, keepdim=True)
    return alpha * ((1 - ssim.mean(1, keepdim=True)) / 2).clamp(0, 1) + (1 - alpha) * l1


def auto_mask(reprojected: Tensor, identity: Tensor) -> tuple[Tensor, Tensor]:
    """monodepth2's per-pixel minimum reprojection with auto-masking.

    Args:
        reprojected: ``(B, S, H, W)`` photometric errors of the ``S`` warped source frames.
        identity: ``(B, S, H, W)`` errors of the unwarped source frames (what a static camera, or an
            object moving with it, would give).

    Returns:
        the per-pixel minimum over sources ``(B, 1, H, W)`` and the mask ``(B, 1, H, W)`` of pixels
        where warping beats every unwarped frame (the others are left out of the loss).
    """
    best = reprojected.min(1, keepdim=True).values
    return best, best < identity.min(1, keepdim=True).values  # a tie (nothing moved) is left out


def smoothness(disparity: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness of the mean-normalised disparity: its gradients, weighted by
    ``exp(-|image gradient|)``, so depth may jump where the image has edges."""
    d = disparity / disparity.mean((2, 3), keepdim=True).clamp_min(1e-7)
    dx, dy = (d[..., :, 1:] - d[..., :, :-1]).abs(), (d[..., 1:, :] - d[..., :-1, :]).abs()
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


def median_scaled(prediction: Tensor, target: Tensor) -> Tensor:
    """Each image's prediction times ``median(target) / median(prediction)`` over its valid pixels
    (target > 0): the scale a monocular network cannot know, as self-supervised depth is evaluated."""
    out = prediction.clone()
    for i in range(prediction.shape[0]):
        valid = target[i] > 0
        if valid.any():
            out[i] = prediction[i] * target[i][valid].median() / prediction[i][valid].median().clamp_min(1e-6)
    return out
