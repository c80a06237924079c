"""The DejaVu loss: ``gamma * (mse_weight * MSE(I_G, I) + lpips_weight * LPIPS(I_G, I))``.

:class:`DejaVuLoss` owns the redaction, the CRM and (optionally) LPIPS. Given an image and the
network's prediction it redacts the image, regenerates it from the redacted image and the
prediction's conditioning map, and returns the loss with everything a user may want to look at.
Gradients reach the prediction through the CRM; the image is data and receives none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import redaction as R
from .frozen import FrozenStateMixin
from .regeneration import build_crm

__all__ = ["DejaVuLoss", "DejaVuOutput", "LPIPS", "ADAPTERS", "PRESETS"]


# ------------------------------------------------------------------------- conditioning maps
def _depth_map(d: Tensor) -> Tensor:
    """Depth normalised per image to [0, 1], so the CRM sees shape, not scale."""
    lo = d.amin(dim=(1, 2, 3), keepdim=True)
    hi = d.amax(dim=(1, 2, 3), keepdim=True)
    return (d - lo) / (hi - lo).clamp_min(1e-6)


ADAPTERS: dict[str, Callable[[Tensor], Tensor]] = {
    "softmax": lambda x: x.softmax(dim=1),
    "sigmoid": torch.sigmoid,
    "depth": _depth_map,
    "normals": lambda x: F.normalize(x, dim=1),
    "identity": lambda x: x,
}


# ------------------------------------------------------------------------------------ LPIPS
class LPIPS(nn.Module):
    """LPIPS perceptual distance from the ``lpips`` package, with backbone weights from a local file.

    Nothing is downloaded. ``weights`` is the torchvision ImageNet state dict of the backbone
    (e.g. ``alexnet-owt-7be5be79.pth``); when ``None`` it is looked up in the torch hub cache
    (``torch.hub.get_dir()/checkpoints``). ``weights="random"`` gives a randomly initialised
    backbone, meant for tests and timing only. The linear calibration layers ship with ``lpips``.

    ``forward(x, y)`` takes images in ``[0, 1]``, shape ``(B, 3, H, W)``, and returns ``(B,)``.

    Raises:
        FileNotFoundError: no weights file given or cached; the message says how to provide one
            or how to switch LPIPS off.
    """

    def __init__(self, net: str = "alex", weights: str | Path | None = None) -> None:
        super().__init__()
        import lpips  # imported here: it pulls in torchvision, which `import dejavu` does not need

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # use_dropout must stay True: the shipped calibration weights are keyed for that layout
            # (with False they silently fail to load). Dropout is inert: this module is always in eval.
            self.model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
        if weights != "random":
            self._load_backbone(net, _find_backbone_weights(net, weights))
        self.model.requires_grad_(False)

    def _load_backbone(self, net: str, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        mine = self.model.net.state_dict()
        # lpips names layer i of torchvision's `features` as `sliceK.i`; match on that index.
        by_index = {k.split(".", 1)[1]: k for k in mine}
        mapped = {by_index[k[len("features."):]]: v for k, v in state.items()
                  if k.startswith("features.") and k[len("features."):] in by_index}
        if len(mapped) != len(mine):
            raise ValueError(f"LPIPS: {path} is not a torchvision {net} state dict "
                             f"(matched {len(mapped)} of {len(mine)} backbone tensors)")
        self.model.net.load_state_dict(mapped)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # a fixed metric: never in training mode

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.model(x, y, normalize=True).flatten()


_TV_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def _find_backbone_weights(net: str, weights: str | Path | None) -> Path:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS: weights file {path} does not exist")
        return path
    import torchvision.models as tvm

    url = getattr(tvm, _TV_WEIGHTS[net]).IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"LPIPS needs the ImageNet weights of its '{net}' backbone and this library never downloads them. "
        f"Either put the file at {cached} (download {url} on a machine with internet), pass its path "
        f"as lpips_weights=PATH, or switch LPIPS off with lpips_weight=0. "
        f"(lpips_weights='random' gives a random backbone, for tests and timing only.)"
    )


# ------------------------------------------------------------------------------------- loss
@dataclass
class DejaVuOutput:
    """What :class:`DejaVuLoss` returns. Images are in ``[0, 1]`` (the loss's canonical range)."""

    loss: Tensor
    redacted: Tensor
    regenerated: Tensor
    steps: list[Tensor]
    mse: Tensor
    lpips: Tensor


PRESETS: dict[str, dict[str, Any]] = {
    # PAPER_NOTES section 1.4 (supp. section C)
    "cityscapes": dict(redaction={"name": "random_blocks", "block_size": 32, "threshold": 0.4},
                       regenerator="recursive", regenerator_kwargs={"steps": 20},
                       gamma=1.0, mse_weight=1.0, lpips_weight=0.3, adapter="softmax"),
    "coco_panoptic": dict(redaction={"name": "checkerboard", "block_size": 8},
                          regenerator="forward", regenerator_kwargs={"stages": 2},
                          gamma=1.0, mse_weight=1.0, lpips_weight=0.1, adapter="softmax"),
    "kitti_depth": dict(redaction={"name": "bandstop", "block_size": 32},
                        regenerator="forward", regenerator_kwargs={"stages": 2},
                        gamma=1.0, mse_weight=0.3, lpips_weight=0.03, adapter="depth"),
    "nyud": dict(redaction={"name": "bandstop", "block_size": 32},
                 regenerator="recursive", regenerator_kwargs={"steps": 20},
                 gamma=1.0, mse_weight=1.0, lpips_weight=0.3, adapter="identity"),
}


def _check_weight(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"DejaVuLoss: {name} must be a number >= 0, got {value!r}")
    return float(value)


class DejaVuLoss(FrozenStateMixin):
    """DejaVu's regeneration loss, to add to any dense prediction network's task loss.

    Args:
        pred_channels: channels ``N`` of the conditioning map the adapter makes from the prediction.
        redaction: a redaction module, a registry name (``"random_blocks"``...) or a spec dict
            ``{"name": ..., **kwargs}`` (see :func:`dejavu.redaction.build`).
        regenerator: a CRM module, or ``"forward"`` / ``"recursive"`` built with ``regenerator_kwargs``.
        gamma, mse_weight, lpips_weight: ``gamma * (mse_weight * MSE + lpips_weight * LPIPS)``;
            ``lpips_weight=0`` switches LPIPS off (nothing is loaded).
        adapter: maps the raw prediction to the conditioning map: ``"softmax"`` (class logits,
            default), ``"sigmoid"``, ``"depth"`` (per-image min-max), ``"normals"`` (unit vectors),
            ``"identity"``, or any callable ``(B, C, h, w) -> (B, N, h, w)``.
        mean, std: per-channel normalisation of the image, if it was normalised: the image is first
            mapped back with ``x * std + mean``.
        value_range: the ``(lo, hi)`` range of the (un-normalised) image, mapped to ``[0, 1]``.
        lpips_net: ``"alex"``, ``"vgg"`` or ``"squeeze"``.
        lpips_weights: local path to the backbone's torchvision weights; ``None`` looks in the torch
            hub cache; ``"random"`` uses a random backbone (tests and timing only).
        check_finite: raise on a prediction with NaN/Inf (one device sync per call).
        scale: regenerate at this fraction of the image's resolution (the image is area-downsampled,
            the prediction resized to match): ``scale=0.5`` cuts the CRM's cost about 4x. 1.0 (the
            default) is the paper's method; other values change it (block sizes then count
            downsampled pixels). See ``benchmarks/RESULTS.md`` for what it costs in accuracy.
        lpips_steps: ``"all"`` applies LPIPS at every CRM-R step, as the paper applies the whole
            loss; ``"last"`` only at the last step (cheaper; MSE stays at every step).

    ``forward(image, prediction, generator=None)``: ``image`` ``(B, 3, H, W)``, ``prediction``
    ``(B, C, h, w)``, resized (bilinear) to ``H, W`` when smaller or larger. With a recursive CRM the
    loss is the mean over its steps. Returns a :class:`DejaVuOutput`.

    Raises:
        ValueError / TypeError: at construction for bad settings; at call for a wrong rank, a batch
        mismatch, a conditioning map with other than ``pred_channels`` channels, or a non-finite
        prediction. Each message names the argument and its value.

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
        check_finite: bool = True,
        scale: float = 1.0,
        lpips_steps: str = "all",
    ) -> None:
        super().__init__()
        if isinstance(pred_channels, bool) or not isinstance(pred_channels, int) or pred_channels < 1:
            raise ValueError(f"DejaVuLoss: pred_channels must be an int >= 1, got {pred_channels!r}")
        self.pred_channels = pred_channels
        self.gamma = _check_weight(gamma, "gamma")
        self.mse_weight = _check_weight(mse_weight, "mse_weight")
        self.lpips_weight = _check_weight(lpips_weight, "lpips_weight")
        self.redaction = R._as_module(redaction)
        if isinstance(regenerator, str):
            regenerator = build_crm(regenerator, pred_channels, **(regenerator_kwargs or {}))
        elif not isinstance(regenerator, nn.Module):
            raise TypeError(f"DejaVuLoss: regenerator must be an nn.Module or a name, got {type(regenerator).__name__}")
        self.regenerator = regenerator
        if isinstance(adapter, str):
            if adapter not in ADAPTERS:
                raise ValueError(
                    f"DejaVuLoss: unknown adapter {adapter!r}; choose from {sorted(ADAPTERS)} or pass a callable"
                )
            adapter = ADAPTERS[adapter]
        self.adapter = adapter
        self._set_normalisation(mean, std, value_range)
        self.check_finite = check_finite
        if not 0 < scale <= 1:
            raise ValueError(f"DejaVuLoss: scale must be in (0, 1], got {scale!r}")
        if lpips_steps not in ("all", "last"):
            raise ValueError(f"DejaVuLoss: lpips_steps must be 'all' or 'last', got {lpips_steps!r}")
        self.scale_factor, self.lpips_steps = scale, lpips_steps
        self.lpips = LPIPS(lpips_net, lpips_weights) if self.lpips_weight > 0 else None

    def _set_normalisation(self, mean: Sequence[float] | None, std: Sequence[float] | None,
                           value_range: tuple[float, float]) -> None:
        if (mean is None) != (std is None):
            raise ValueError(f"DejaVuLoss: give both mean and std or neither, got mean={mean!r}, std={std!r}")
        if mean is not None and (len(mean) != 3 or len(std) != 3 or min(std) <= 0):
            raise ValueError(f"DejaVuLoss: mean and std must be 3 numbers (std > 0), got mean={mean!r}, std={std!r}")
        lo, hi = value_range
        if not hi > lo:
            raise ValueError(f"DejaVuLoss: value_range must be (lo, hi) with hi > lo, got {value_range!r}")
        # image01 = (image * std + mean - lo) / (hi - lo) = image * unit_scale + unit_shift
        m = torch.tensor(mean if mean is not None else [0.0] * 3)
        s = torch.tensor(std if std is not None else [1.0] * 3)
        self.register_buffer("unit_scale", (s / (hi - lo)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("unit_shift", ((m - lo) / (hi - lo)).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_preset(cls, name: str, pred_channels: int, **overrides: Any) -> DejaVuLoss:
        """The paper's setting for ``cityscapes``, ``coco_panoptic``, ``kitti_depth`` or ``nyud``.

        Example:
            >>> loss_fn = DejaVuLoss.from_preset("cityscapes", pred_channels=19, lpips_weight=0)
        """
        if name not in PRESETS:
            raise ValueError(f"DejaVuLoss.from_preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(pred_channels=pred_channels, **{**PRESETS[name], **overrides})

    def to_unit_range(self, image: Tensor) -> Tensor:
        """Map the image from its own normalisation to ``[0, 1]``."""
        return image * self.unit_scale.to(image.dtype) + self.unit_shift.to(image.dtype)

    def from_unit_range(self, image01: Tensor) -> Tensor:
        """Inverse of :meth:`to_unit_range`: map a ``[0, 1]`` image (e.g. the regenerated one) to the
        network's input normalisation."""
        return (image01 - self.unit_shift.to(image01.dtype)) / self.unit_scale.to(image01.dtype)

    def _size(self, image: Tensor) -> tuple[int, int]:
        h, w = image.shape[-2:]
        return (h, w) if self.scale_factor == 1 else (max(1, round(h * self.scale_factor)),
                                                      max(1, round(w * self.scale_factor)))

    def condition(self, image: Tensor, prediction: Tensor) -> Tensor:
        """The conditioning map: the prediction resized to the regeneration size and passed through the adapter."""
        _check_pair(image, prediction)
        if self.check_finite and not torch.isfinite(prediction).all():
            raise ValueError("DejaVuLoss: prediction contains NaN or Inf values")
        size = self._size(image)
        if prediction.shape[-2:] != size:
            prediction = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False)
        cond = self.adapter(prediction)
        if cond.dim() != 4 or cond.shape[1] != self.pred_channels:
            raise ValueError(f"DejaVuLoss: conditioning map must have pred_channels={self.pred_channels} channels, "
                             f"got shape {tuple(cond.shape)} from prediction of shape {tuple(prediction.shape)}")
        return cond

    def forward(self, image: Tensor, prediction: Tensor, generator: torch.Generator | None = None) -> DejaVuOutput:
        cond = self.condition(image, prediction)
        target = self.to_unit_range(image.detach())
        if target.shape[-2:] != cond.shape[-2:]:
            target = F.interpolate(target, size=cond.shape[-2:], mode="area")
        with torch.no_grad():
            redacted = self.redaction(target, generator=generator)
        steps = self.regenerator(redacted.to(cond.dtype), cond)
        # every step is compared with the same target: stack them into one batch for one call
        regen = torch.cat(steps, dim=0) if len(steps) > 1 else steps[0]
        tgt = target.repeat(len(steps), 1, 1, 1) if len(steps) > 1 else target
        mse = F.mse_loss(regen.float(), tgt.float())
        if self.lpips is None:
            lp = mse.new_zeros(())
        elif self.lpips_steps == "last":
            lp = self.lpips(steps[-1], target).mean()
        else:
            lp = self.lpips(regen, tgt).mean()
        loss = self.gamma * (self.mse_weight * mse + self.lpips_weight * lp)
        return DejaVuOutput(loss, redacted, steps[-1], steps, mse.detach(), lp.detach())


def _check_pair(image: Tensor, prediction: Tensor) -> None:
    for name, t in (("image", image), ("prediction", prediction)):
        if not isinstance(t, Tensor):
            raise TypeError(f"DejaVuLoss: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"DejaVuLoss: {name} must have shape (B, C, H, W), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"DejaVuLoss: {name} must be floating point, got dtype {t.dtype}")
    if image.shape[1] != 3:
        raise ValueError(f"DejaVuLoss: image must have 3 channels, got shape {tuple(image.shape)}")
    if image.shape[0] != prediction.shape[0]:
        raise ValueError(
            f"DejaVuLoss: batch mismatch, image {tuple(image.shape)} vs prediction {tuple(prediction.shape)}"
        )
