"""The DejaVu loss: ``gamma * (mse_weight * MSE(I_G, I) + lpips_weight * LPIPS(I_G, I))``.

:class:`DejaVuLoss` owns the redaction (:mod:`dejavu.redaction`), the CRM
(:mod:`dejavu.regeneration`) and optionally LPIPS (:mod:`dejavu.perceptual`); the condition maps are in
:mod:`dejavu.conditioning`. Given an image and the
network's prediction it redacts the image, regenerates it from the redacted image and the
prediction's conditioning map, and returns the loss with everything a user may want to look at.
Gradients reach the prediction through the CRM; the image is data and receives none.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import redaction as R
from .arguments import matches
from .checks import AsyncCheck
from .conditioning import ADAPTERS, blank_condition
from .perceptual import LPIPS, structural_similarity
from .regeneration import build_crm, load_crm_weights
from .weights import FrozenStateMixin

__all__ = ["PRESETS", "DejaVuLoss", "DejaVuOutput", "NonFiniteError", "smallest_scale"]


class NonFiniteError(ValueError):
    """An image or prediction with NaN or Inf values (``check_finite``): a training loop can tell a
    diverged network from a bad argument by this type."""


@dataclass
class DejaVuOutput:
    """What :class:`DejaVuLoss` returns. Images are in ``[0, 1]`` (the loss's canonical range)."""

    loss: Tensor
    redacted: Tensor
    regenerated: Tensor
    steps: Tensor  # (T, B, 3, h, w): CRM-R's T steps, T = 1 for CRM-F
    mse: Tensor
    lpips: Tensor
    ssim: Tensor = field(default_factory=lambda: torch.ones(()))  # 1 when the SSIM term is off


PRESETS: dict[str, dict[str, Any]] = {
    # the DejaVu supplementary, section C
    "cityscapes": dict(redaction={"name": "random_blocks", "block_size": 32, "threshold": 0.4},
                       regenerator="recursive", regenerator_kwargs={"steps": 20},
                       gamma=1.0, mse_weight=1.0, lpips_weight=0.3, adapter="softmax"),
    "coco_panoptic": dict(redaction={"name": "checkerboard", "block_size": 8},
                          regenerator="forward", regenerator_kwargs={"stages": 2},
                          gamma=1.0, mse_weight=1.0, lpips_weight=0.1, adapter="softmax"),
    # spectral presets regenerate at half resolution: at a quarter the band-stop band would vanish
    "kitti_depth": dict(redaction={"name": "bandstop", "block_size": 32}, scale=0.5,
                        regenerator="forward", regenerator_kwargs={"stages": 2},
                        gamma=1.0, mse_weight=0.3, lpips_weight=0.03, adapter="depth"),
    "nyud": dict(redaction={"name": "bandstop", "block_size": 32}, scale=0.5,
                 regenerator="recursive", regenerator_kwargs={"steps": 20},
                 gamma=1.0, mse_weight=1.0, lpips_weight=0.3),  # no adapter: it depends on the task(s)
}


def smallest_scale(redaction: nn.Module) -> float | None:
    """The smallest ``scale`` at which the coarsest structure a block low-pass or band-stop
    redaction removes is still resolved after downsampling (``None`` for other redactions).

    DCT coefficient ``u`` of a ``b``-pixel block has a period of ``2b / u`` pixels; the coarsest one
    removed has ``u = lo * sqrt(2) * (b - 1)`` (see :func:`dejavu.dct.block_frequency`), and
    downsampling by ``1 / scale`` erases periods under ``2 / scale`` pixels.

    Example:
        >>> round(smallest_scale(R.BandStop(32, (0.25, 0.5))), 2)
        0.34
    """
    if isinstance(redaction, R.BandStop):
        lo = redaction.band[0]
    elif isinstance(redaction, R.LowPass):
        lo = redaction.cutoff
    else:
        return None
    b = redaction.block_size
    if b is None or b < 2 or lo <= 0:
        return None
    return lo * math.sqrt(2) * (b - 1) / b


def _check_weight(value: Any, name: str) -> float:
    if not matches(value, float) or not 0 <= value < math.inf:
        raise ValueError(f"DejaVuLoss: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class DejaVuLoss(FrozenStateMixin):
    """DejaVu's regeneration loss, to add to any dense prediction network's task loss.

    Args:
        pred_channels: channels ``N`` of the conditioning map the adapter makes from the prediction.
        redaction: a redaction module, a registry name (``"random_blocks"``...) or a spec dict
            ``{"name": ..., **kwargs}`` (see :func:`dejavu.redaction.build`).
        regenerator: a CRM module, or ``"forward"`` / ``"recursive"`` built with ``regenerator_kwargs``.
        gamma, mse_weight, lpips_weight, ssim_weight:
            ``gamma * (mse_weight * MSE + lpips_weight * LPIPS + ssim_weight * (1 - SSIM))``;
            ``lpips_weight=0`` switches LPIPS off (nothing is loaded). SSIM is the structural term
            that needs no downloaded weights (torchmetrics' SSIM, 7x7 Gaussian window with sigma 1:
            the usual 11x11 would leave only the centre of a 16x16 regeneration); like LPIPS it
            applies to CRM-R's last step. Default 0 (off).
        adapter: maps the raw prediction to the conditioning map: ``"softmax"`` (class logits,
            default), ``"sigmoid"``, ``"depth"`` (per-image min-max), ``"normals"`` (unit vectors),
            ``"identity"``, or any callable ``(B, C, h, w) -> (B, N, h, w)``.
        mean, std: per-channel normalisation of the image, if it was normalised: the image is first
            mapped back with ``x * std + mean``.
        value_range: the ``(lo, hi)`` range of the (un-normalised) image, mapped to ``[0, 1]``.
        lpips_net: ``"alex"``, ``"vgg"`` or ``"squeeze"``.
        lpips_weights: local path to the backbone's torchvision weights, which wins; ``None`` takes
            torchvision's ImageNet weights (downloaded into the torch hub cache on first use);
            ``"random"`` uses a random backbone (tests and timing only). See :class:`LPIPS`.
        offline: forbid downloading LPIPS's weights (``None``: the ``DEJAVU_OFFLINE`` variable).
        check_finite: raise on an image or prediction with NaN/Inf, and on an image outside
            ``value_range``. ``True`` (default) checks without a device sync (:class:`dejavu.checks.AsyncCheck`):
            on a CPU at the call itself, on a GPU at a later call, usually the next, and the message names
            the call that had the bad input; ``"sync"`` checks at the call on every device (two device
            syncs a call, so a bad input raises before its backward); ``False`` does not check.
        scale: regenerate at this fraction of the image's resolution: the image is redacted at its
            own resolution (block sizes count image pixels at every scale), then the target and the
            redacted image are area-downsampled and the prediction resized to match. The default,
            0.25, is the output stride of most segmentation heads (HRNet, OCR, SegFormer,
            Mask2Former), whose predictions then enter the CRM at their own resolution, and costs
            1/16 of a full-resolution CRM. 1.0 is the paper's method; ``benchmarks/RESULTS.md`` has
            what each value costs in time and accuracy.
        lpips_steps: ``"last"`` (default) applies LPIPS to CRM-R's last step only, MSE staying at
            every step: 1 LPIPS pass instead of ``steps``; ``"all"`` at every step, as the paper
            applies the whole loss.
        regenerator_weights: a ``.safetensors`` file of CRM weights to start from (the paper's
            "stored weights", supp. C.1), e.g. ``crm.safetensors`` of a CRM-pretraining run
            (``model.crm_pretraining``) or of any DejaVu run with the same CRM.

    ``forward(image, prediction, generator=None)``: ``image`` ``(B, 3, H, W)``, ``prediction``
    ``(B, C, h, w)``, resized (bilinear) to ``H, W`` when smaller or larger. With a recursive CRM the
    loss is the mean over its steps. Returns a :class:`DejaVuOutput`.

    Raises:
        ValueError / TypeError: at construction for bad settings; at call for a wrong rank, a batch
        mismatch, an empty batch, a conditioning map with other than ``pred_channels`` channels, a
        non-finite image or prediction, or an image far outside ``value_range`` (a ``[0, 255]`` image
        under the default ``(0, 1)``). Each message names the argument and its value.

    Example:
        >>> loss_fn = DejaVuLoss(5, "random_blocks", "forward", lpips_weight=0)
        >>> out = loss_fn(torch.rand(2, 3, 64, 64), torch.randn(2, 5, 64, 64, requires_grad=True))
        >>> out.loss.backward()
    """

    frozen_children = ("lpips",)  # a fixed metric: kept out of checkpoints

    def __init__(
        self,
        pred_channels: int,
        redaction: nn.Module | str | dict = "random_blocks",
        regenerator: nn.Module | str = "forward",
        gamma: float = 1.0,
        mse_weight: float = 1.0,
        lpips_weight: float = 0.3,
        adapter: str | Callable[[Tensor], Tensor] = "softmax",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        regenerator_kwargs: dict[str, Any] | None = None,
        lpips_net: str = "alex",
        lpips_weights: str | Path | None = None,
        check_finite: bool | str = True,
        scale: float = 0.25,
        lpips_steps: str = "last",
        ssim_weight: float = 0.0,
        regenerator_weights: str | Path | None = None,
        offline: bool | None = None,
    ) -> None:
        super().__init__()
        if not matches(pred_channels, int) or pred_channels < 1:
            raise ValueError(f"DejaVuLoss: pred_channels must be an int >= 1, got {pred_channels!r}")
        self.pred_channels = pred_channels
        self.gamma = _check_weight(gamma, "gamma")
        self.mse_weight = _check_weight(mse_weight, "mse_weight")
        self.lpips_weight = _check_weight(lpips_weight, "lpips_weight")
        self.ssim_weight = _check_weight(ssim_weight, "ssim_weight")
        self.redaction = R.as_redaction(redaction)
        if isinstance(regenerator, str):
            regenerator = build_crm(regenerator, pred_channels, **(regenerator_kwargs or {}))
        elif not isinstance(regenerator, nn.Module):
            raise TypeError(f"DejaVuLoss: regenerator must be an nn.Module or a name, got {type(regenerator).__name__}")
        self.regenerator = regenerator
        if regenerator_weights is not None:
            load_crm_weights(regenerator, regenerator_weights)
        if isinstance(adapter, str):
            if adapter not in ADAPTERS:
                raise ValueError(
                    f"DejaVuLoss: unknown adapter {adapter!r}; choose from {sorted(ADAPTERS)} or pass a callable"
                )
            adapter = ADAPTERS[adapter]
        self.adapter = adapter
        self._set_normalisation(mean, std, value_range)
        if check_finite not in (True, False, "sync"):
            raise ValueError(f"DejaVuLoss: check_finite must be True, False or 'sync', got {check_finite!r}")
        self.check_finite = check_finite
        self.checks = AsyncCheck(self._report)
        self.calls = 0
        if not 0 < scale <= 1:
            raise ValueError(f"DejaVuLoss: scale must be in (0, 1], got {scale!r}")
        if lpips_steps not in ("all", "last"):
            raise ValueError(f"DejaVuLoss: lpips_steps must be 'all' or 'last', got {lpips_steps!r}")
        self.scale_factor, self.lpips_steps = scale, lpips_steps
        smallest = smallest_scale(self.redaction)
        if smallest is not None and scale < smallest:
            warnings.warn(f"DejaVuLoss: the {type(self.redaction).__name__} redaction removes structure finer than "
                          f"the CRM can see at scale={scale}: averaging the image to that size erases the band "
                          f"before regeneration, so the loss carries little. Use scale >= {smallest:.2f} "
                          "(e.g. 0.5 or 1.0) or a larger block_size.", stacklevel=2)
        self.lpips = LPIPS(lpips_net, lpips_weights, offline) if self.lpips_weight > 0 else None

    def _set_normalisation(self, mean: Sequence[float] | None, std: Sequence[float] | None,
                           value_range: tuple[float, float]) -> None:
        if (mean is None) != (std is None):
            raise ValueError(f"DejaVuLoss: give both mean and std or neither, got mean={mean!r}, std={std!r}")
        if mean is not None and (len(mean) != 3 or len(std) != 3 or min(std) <= 0):
            raise ValueError(f"DejaVuLoss: mean and std must be 3 numbers (std > 0), got mean={mean!r}, std={std!r}")
        lo, hi = value_range
        if not hi > lo:
            raise ValueError(f"DejaVuLoss: value_range must be (lo, hi) with hi > lo, got {value_range!r}")
        self.unit_identity = mean is None and (lo, hi) == (0, 1)  # no kernel to map the image
        # image01 = (image * std + mean - lo) / (hi - lo) = image * unit_scale + unit_shift
        m = torch.tensor(mean if mean is not None else [0.0] * 3)
        s = torch.tensor(std if std is not None else [1.0] * 3)
        self.register_buffer("unit_scale", (s / (hi - lo)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("unit_shift", ((m - lo) / (hi - lo)).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_preset(cls, name: str, pred_channels: int, **overrides: Any) -> DejaVuLoss:
        """The paper's setting for ``cityscapes``, ``coco_panoptic``, ``kitti_depth`` or ``nyud``, with
        ``overrides`` replacing its keys. Another ``regenerator`` drops the preset's
        ``regenerator_kwargs`` (CRM-R's ``steps`` mean nothing to CRM-F) unless they are given too.

        ``nyud`` (NYUD-v2, single- and multi-task) needs ``adapter=``: the task's ``condition``.

        Example:
            >>> loss_fn = DejaVuLoss.from_preset("cityscapes", pred_channels=19, lpips_weight=0)
            >>> crm_f = DejaVuLoss.from_preset("cityscapes", 19, regenerator="forward", lpips_weight=0)
            >>> type(crm_f.regenerator).__name__
            'ForwardCRM'
        """
        if name not in PRESETS:
            raise ValueError(f"DejaVuLoss.from_preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")
        if "adapter" not in PRESETS[name] and "adapter" not in overrides:
            raise ValueError(f"DejaVuLoss.from_preset: the {name!r} setting serves segmentation, depth, normals and "
                             "multi-task networks, so it needs the map of your prediction: pass adapter=task.condition "
                             "(e.g. dejavu.tasks.MultiTask([...]).condition) or an adapter name such as 'softmax'")
        preset = dict(PRESETS[name])
        if overrides.get("regenerator", preset["regenerator"]) != preset["regenerator"]:
            preset.pop("regenerator_kwargs")
        return cls(pred_channels=pred_channels, **{**preset, **overrides})

    def regenerator_optimizer(self, lr: float = 1e-3, **kwargs: Any) -> torch.optim.Adam:
        """Adam over the regenerator's trainable parameters: the optimiser the CRM trains with,
        whatever trains the network.

        The regeneration error of a spectral redaction is small (a band-stop's MSE is about 1e-3 on
        smooth images), and under SGD the CRM's feature learning slows with the square of the error:
        at the network's SGD 0.01 a ``kitti_depth`` CRM did not move in 200 steps, where Adam, which
        is invariant to the loss's scale, learns it. Step it after the network's optimiser; in
        ``dejavu fit`` the module does (``model.crm_lr``). Putting :meth:`parameters` in the
        network's optimiser also trains stably, only slowly for spectral redactions.

        Example:
            >>> loss_fn = DejaVuLoss(5, "checkerboard", "forward", lpips_weight=0)
            >>> loss_fn.regenerator_optimizer().param_groups[0]["lr"]
            0.001
        """
        params = [p for p in self.regenerator.parameters() if p.requires_grad]
        if not params:
            raise ValueError("DejaVuLoss.regenerator_optimizer: the regenerator has no trainable parameters")
        # fused: one kernel for all the CRM's tensors, and no read-back of the step counts (the
        # single-tensor Adam reads each parameter's step from its tensor: a host sync each)
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=lr, **{"fused": fused, **kwargs})

    def to_unit_range(self, image: Tensor) -> Tensor:
        """Map the image from its own normalisation to ``[0, 1]``."""
        if self.unit_identity:
            return image
        return torch.addcmul(self.unit_shift.to(image.dtype), image, self.unit_scale.to(image.dtype))

    def from_unit_range(self, image01: Tensor) -> Tensor:
        """Inverse of :meth:`to_unit_range`: map a ``[0, 1]`` image (e.g. the regenerated one) to the
        network's input normalisation."""
        return (image01 - self.unit_shift.to(image01.dtype)) / self.unit_scale.to(image01.dtype)

    def _submit_check(self, what: str, x: Tensor) -> None:
        """Queue the range of ``x`` (``"image"``, mapped to [0, 1], or ``"prediction"``) for :meth:`_report`.
        ``aminmax`` propagates NaN, so a NaN or Inf anywhere shows in the two values."""
        self.checks.submit(torch.stack(torch.aminmax(x.detach())), what, self.calls, sync=self.check_finite == "sync")

    def _report(self, values: list[float], what: str, call: int) -> None:
        lo, hi = values
        ago = self.calls - call
        late = (f" (at call {call} of this loss, {ago} call{'s' * (ago > 1)} ago: the check runs without a device "
                "sync; check_finite='sync' raises at the call itself)") if ago else ""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise NonFiniteError(f"DejaVuLoss: {what} contains NaN or Inf values{late}")
        # 8-bit values under the default (0, 1) range would give a 1e4-sized loss without a word; a
        # quarter of the range of slack lets colour jitter and rounding through
        if what == "image" and (lo < -0.25 or hi > 1.25):
            raise ValueError(f"DejaVuLoss: the image spans [{lo:.4g}, {hi:.4g}] once mapped to [0, 1] by value_range "
                             f"and mean/std; pass value_range=(0, 255) for 8-bit values, or the mean/std the image "
                             f"was normalised with{late}")

    def _size(self, image: Tensor) -> tuple[int, int]:
        h, w = image.shape[-2:]
        return (h, w) if self.scale_factor == 1 else (max(1, round(h * self.scale_factor)),
                                                      max(1, round(w * self.scale_factor)))

    def condition(self, image: Tensor, prediction: Tensor) -> Tensor:
        """The conditioning map: the prediction resized to the regeneration size and passed through the adapter."""
        _check_pair(image, prediction)
        size = self._size(image)
        if prediction.shape[-2:] != size:
            # area when shrinking: averaging, where bilinear would sample a few pixels and alias
            prediction = _resize(prediction, size)
        if self.check_finite:
            self._submit_check("prediction", prediction)  # averaging keeps every NaN and Inf
        cond = self.adapter(prediction)
        if cond.dim() != 4 or cond.shape[1] != self.pred_channels:
            raise ValueError(f"DejaVuLoss: conditioning map must have pred_channels={self.pred_channels} channels, "
                             f"got shape {tuple(cond.shape)} from prediction of shape {tuple(prediction.shape)}")
        return cond

    def regenerate(self, image: Tensor, condition: Tensor, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """Redact ``image`` and regenerate it from ``condition`` (a conditioning map at the
        regeneration size, e.g. from :meth:`condition`): returns the target, the redacted image and
        the CRM's steps ``(T, B, 3, h, w)``, all in ``[0, 1]`` at the regeneration size.

        Redaction happens at the image's own resolution, so block sizes and bands mean the same at
        every ``scale``; the target and the redacted image are then area-downsampled.
        """
        target = self.to_unit_range(image.detach())
        with torch.no_grad():
            redacted = self.redaction(target, generator=generator)
        size = condition.shape[-2:]
        if target.shape[-2:] != size:
            target, redacted = _resize(target, size), _resize(redacted, size)
        # a network cast to half or bfloat16 meets a float32 CRM: run the CRM in its own dtype
        # (under autocast, autocast still picks each kernel's precision)
        dtype = next((p.dtype for p in self.regenerator.parameters() if p.is_floating_point()), condition.dtype)
        # the CRM's small tensors run fastest in the default layout (batch norm and pooling on CPU
        # take about twice as long in channels-last), whatever layout the network uses
        steps = self.regenerator(redacted.to(dtype), condition.to(dtype))
        if not isinstance(steps, Tensor):  # a regenerator of one's own may return its steps as a list
            steps = torch.stack(list(steps))
        return target, redacted, steps

    def forward(self, image: Tensor, prediction: Tensor, generator: torch.Generator | None = None) -> DejaVuOutput:
        self.calls += 1
        return self._loss(image, self.condition(image, prediction), generator)

    def from_condition(self, image: Tensor, condition: Tensor, generator: torch.Generator | None = None
                       ) -> DejaVuOutput:
        """The loss of regenerating ``image`` from a conditioning map ``(B, N, h, w)``: the
        prediction's (:meth:`condition`; ``forward`` does this) or the ground truth's (a task's
        ``target_condition``: how a CRM is pretrained). It is resized to the regeneration size."""
        self.calls += 1
        return self._loss(image, condition, generator)

    def _loss(self, image: Tensor, condition: Tensor, generator: torch.Generator | None) -> DejaVuOutput:
        R.check_image(image, "DejaVuLoss", "image")
        if self.check_finite:
            self._submit_check("image", self.to_unit_range(image))
        size = self._size(image)
        if condition.shape[-2:] != size:
            condition = _resize(condition, size)
        target, redacted, steps = self.regenerate(image, condition, generator)
        # every step is compared with the same target, broadcast without a copy
        mse = F.mse_loss(steps.float(), target.float().expand_as(steps))
        loss = _weighted(mse, self.gamma * self.mse_weight)
        lp = ssim = None
        if self.lpips is not None:
            every = self.lpips_steps == "all" and len(steps) > 1
            lp = (self.lpips.loss(steps.flatten(0, 1), target.expand_as(steps).flatten(0, 1)) if every
                  else self.lpips.loss(steps[-1], target))
            loss = loss + _weighted(lp, self.gamma * self.lpips_weight)
        if self.ssim_weight > 0:
            ssim = structural_similarity(steps[-1], target)
            loss = loss + _weighted(1 - ssim, self.gamma * self.ssim_weight)
        # the terms that are off are reported as their values at a perfect regeneration: LPIPS 0, SSIM 1
        return DejaVuOutput(loss, redacted, steps[-1], steps, mse.detach(),
                            lp.detach() if lp is not None else torch.zeros((), device=mse.device),
                            ssim.detach() if ssim is not None else torch.ones((), device=mse.device))

    @torch.no_grad()
    def reliance(self, image: Tensor, prediction: Tensor, target_condition: Tensor | None = None,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """How much the CRM needs the prediction: the last step's regeneration MSE from the
        prediction's condition, from a blank one (:func:`blank_condition`), and (if given) from the
        ground truth's.

        Every variant sees the same redaction. ``reliance = 1 - regen_mse / regen_mse_blank``: 0
        means the CRM regenerates as well without the prediction (the DejaVu loss then tells the
        network nothing), and it rises towards 1 as the regeneration depends on the prediction;
        below 0, the prediction misleads the CRM. To accumulate over a dataset, average each MSE
        over the batches and form the ratio at the end.

        Args:
            image, prediction: as for ``forward``.
            target_condition: the conditioning map of the ground truth, ``(B, N, H', W')`` (e.g.
                :meth:`dejavu.tasks.Task.target_condition`), resized to the regeneration size.

        Returns:
            scalar tensors ``regen_mse``, ``regen_mse_blank``, ``reliance`` and, with
            ``target_condition``, ``regen_mse_gt``.

        Raises:
            ValueError: ``target_condition`` of another batch size or channel count than the
                prediction's condition.

        Example:
            >>> loss_fn = DejaVuLoss(5, "checkerboard", "forward", lpips_weight=0)
            >>> sorted(loss_fn.reliance(torch.rand(2, 3, 32, 32), torch.randn(2, 5, 32, 32)))
            ['regen_mse', 'regen_mse_blank', 'reliance']
        """
        cond = self.condition(image, prediction)
        conditions = {"regen_mse": cond, "regen_mse_blank": blank_condition(cond)}
        if target_condition is not None:
            if target_condition.dim() != 4 or target_condition.shape[:2] != cond.shape[:2]:
                raise ValueError(f"DejaVuLoss.reliance: target_condition must have shape {tuple(cond.shape[:2])} "
                                 f"+ (H, W), got {tuple(target_condition.shape)}")
            gt = target_condition.to(cond.dtype)
            if gt.shape[-2:] != cond.shape[-2:]:
                gt = F.interpolate(gt, size=cond.shape[-2:], mode="bilinear", align_corners=False)
            conditions["regen_mse_gt"] = gt
        seed = int(torch.randint(2**62, (), generator=generator, device=generator.device if generator else "cpu"))
        out = {}
        for name, c in conditions.items():
            g = torch.Generator(image.device).manual_seed(seed)  # the same mask for every condition
            target, _, steps = self.regenerate(image, c, g)
            out[name] = F.mse_loss(steps[-1].float(), target.float())
        out["reliance"] = 1 - out["regen_mse"] / out["regen_mse_blank"].clamp_min(1e-12)
        return out


def _weighted(x: Tensor, weight: float) -> Tensor:
    return x if weight == 1 else x * weight


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Average when shrinking (bilinear would sample a few pixels and alias), bilinear when growing."""
    h, w = x.shape[-2:]
    if h % size[0] == 0 and w % size[1] == 0 and h // size[0] == w // size[1]:
        return _cell_mean(x, h // size[0])
    if h >= size[0] and w >= size[1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _cell_mean(x: Tensor, k: int) -> Tensor:
    """The mean over ``k x k`` cells: the numbers of ``avg_pool2d(x, k)`` and of ``mode="area"``, as a
    reshape and a mean, whose backward is one elementwise kernel (``avg_pool2d``'s backward ran at a
    tenth of the memory's speed on a GPU). A channels-last ``x`` is averaged in its own layout."""
    h, w = x.shape[-2] // k, x.shape[-1] // k
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)
        return nhwc.reshape(x.shape[0], h, k, w, k, x.shape[1]).mean((2, 4)).permute(0, 3, 1, 2)
    return x.reshape(*x.shape[:-2], h, k, w, k).mean((-3, -1))


def _check_pair(image: Tensor, prediction: Tensor) -> None:
    R.check_image(image, "DejaVuLoss", "image")
    R.check_image(prediction, "DejaVuLoss", "prediction")
    if image.shape[1] != 3:
        raise ValueError(f"DejaVuLoss: image must have 3 channels, got shape {tuple(image.shape)}")
    if image.shape[0] == 0:
        raise ValueError(f"DejaVuLoss: empty batch, image of shape {tuple(image.shape)}")
    if image.shape[0] != prediction.shape[0]:
        raise ValueError(
            f"DejaVuLoss: batch mismatch, image {tuple(image.shape)} vs prediction {tuple(prediction.shape)}"
        )
