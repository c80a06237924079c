"""Conditional Regeneration Modules (CRM): regenerate the image from the redacted image and the
prediction (the DejaVu paper, section 3).

Both take ``forward(redacted, condition)`` with ``redacted`` ``(B, 3, H, W)`` and ``condition`` the
prediction's conditioning map ``(B, N, H, W)``, and return the list of regenerated images: one for
:class:`ForwardCRM`, ``steps`` for :class:`RecursiveCRM`. Conditioning ``"concat"`` stacks the two
along channels (``3 + N`` in); ``"multiply"`` multiplies the channel-mean of the image with each
prediction channel (``N`` in).

Both CRMs predict a correction that is added to the image they refine, and their last layer starts
at zero (``init_scale=0``): a fresh CRM returns the redacted image exactly, so the regeneration loss
starts at the redaction's error and any learning takes it below. A CRM that starts from a random
projection instead regenerates noise, and its gradient trains the network on that noise (a 20-step
CRM-R drifted to 1,000x the redaction's error); a small random start (RMS 0.02) was as large as the
whole error of a band-stop redaction on smooth images, which the CRM then first had to unlearn.

CRM-R takes Euler steps of size ``1 / steps``: ``I[k+1] = I[k] + f(I[k], condition) / steps``. The
same function class as ``I[k] + f`` (the factor folds into the projection), but the projection's
gradient is the mean over the steps rather than their sum, so its curvature does not grow with
``steps**2``. With the plain sum, SGD at 0.01 with momentum 0.9 (the paper's Cityscapes optimiser)
diverged in three steps (regeneration MSE 0.08, 19.5, 5.7e3, ...); see ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["ForwardCRM", "RecursiveCRM", "combine", "build_crm", "default_width"]

CONDITIONINGS = ("concat", "multiply")


def default_width(pred_channels: int, recursive: bool = False) -> int:
    """Hidden width of a CRM when none is given: twice the condition's channels for CRM-F, the
    condition's channels for CRM-R (which applies its block ``steps`` times), within [8, 64].

    The CRM only has to relate the condition to the missing image content, so its width follows the
    condition rather than the network; a wider CRM costs more and can regenerate without the
    prediction (supp. B.3). ``benchmarks/RESULTS.md`` has what the widths cost.

    Example:
        >>> default_width(6), default_width(19), default_width(150), default_width(19, recursive=True)
        (12, 38, 64, 19)
    """
    return max(8, min(64, pred_channels if recursive else 2 * pred_channels))


def combine(image: Tensor, condition: Tensor, conditioning: str) -> Tensor:
    """Join the (redacted or partly regenerated) image with the condition, as the CRM's input."""
    if conditioning == "concat":
        return torch.cat((image, condition), dim=1)
    return image.mean(dim=1, keepdim=True) * condition


def batch_norm(channels: int) -> nn.BatchNorm2d:
    # The CRM exists only in training, and CRM-R shares one BN across steps whose statistics differ:
    # running averages would make eval-mode regeneration (figures) a different, broken function.
    # Batch statistics in both modes keep it the same function.
    return nn.BatchNorm2d(channels, track_running_stats=False)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), batch_norm(cout), nn.ReLU(inplace=True))


def small_init_(head: nn.Conv2d, rms: float) -> None:
    """Initialise the projection so that its output has RMS about ``rms`` on BN-ReLU features, and
    mean about 0.

    BN-ReLU features have mean ``1/sqrt(2 pi)`` and variance ``1/2 - 1/(2 pi)`` (about 0.34): each
    output channel's weights are centred (summing to 0, so the features' common mean cancels instead
    of shifting the image's colour) and scaled to give an output of variance ``rms**2``.
    """
    fan_in = head.in_channels * head.kernel_size[0] * head.kernel_size[1]
    with torch.no_grad():
        w = torch.randn_like(head.weight)
        w -= w.mean(dim=(1, 2, 3), keepdim=True)
        head.weight.copy_(w * rms / math.sqrt(fan_in * (0.5 - 0.5 / math.pi)))
        head.bias.zero_()


def _check_args(cls: str, pred_channels: int, width: int, conditioning: str, init_scale: float,
                **counts: int) -> None:
    for name, value in {"pred_channels": pred_channels, "width": width, **counts}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{cls}: {name} must be an int >= 1, got {value!r}")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"{cls}: conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or init_scale < 0:
        raise ValueError(f"{cls}: init_scale must be a number >= 0, got {init_scale!r}")


def _check_inputs(cls: str, redacted: Tensor, condition: Tensor, pred_channels: int) -> None:
    if redacted.dim() != 4 or redacted.shape[1] != 3:
        raise ValueError(f"{cls}: redacted must have shape (B, 3, H, W), got {tuple(redacted.shape)}")
    if condition.dim() != 4 or condition.shape[1] != pred_channels:
        raise ValueError(
            f"{cls}: condition must have shape (B, {pred_channels}, H, W), got {tuple(condition.shape)}"
        )
    if condition.shape[0] != redacted.shape[0] or condition.shape[-2:] != redacted.shape[-2:]:
        raise ValueError(
            f"{cls}: condition {tuple(condition.shape)} and redacted {tuple(redacted.shape)} differ in batch or size"
        )
    if redacted.shape[0] * redacted.shape[2] * redacted.shape[3] < 2:  # batch norm needs two values per channel
        raise ValueError(f"{cls}: a batch of {tuple(redacted.shape)} is a single pixel, and the CRM normalises with "
                         f"batch statistics; give a larger batch or image (or a larger DejaVuLoss scale)")


class ForwardCRM(nn.Module):
    """CRM-F: ``stages`` stages of two 3x3 Conv-BN-ReLU, then a 1x1 projection to 3 channels that
    is added to the redacted image: ``I_G = I_R + head(body(combine(I_R, condition)))``.

    Args:
        pred_channels: channels ``N`` of the conditioning map.
        stages: number of stages (paper's best: 2, supp. Table B.3).
        width: channels of every hidden layer; ``None`` gives :func:`default_width` of ``N``.
        conditioning: ``"concat"`` or ``"multiply"``.
        init_scale: RMS of the correction at initialisation; 0 (default) starts at the redacted image
            (see the module's docstring).

    Raises:
        ValueError: a count below 1, a negative ``init_scale``, or unknown ``conditioning``.

    Example:
        >>> crm = ForwardCRM(pred_channels=5)
        >>> [y.shape for y in crm(torch.rand(2, 3, 32, 32), torch.rand(2, 5, 32, 32))]
        [torch.Size([2, 3, 32, 32])]
    """

    def __init__(self, pred_channels: int, stages: int = 2, width: int | None = None, conditioning: str = "concat",
                 init_scale: float = 0.0) -> None:
        super().__init__()
        width = default_width(pred_channels) if width is None else width
        _check_args("ForwardCRM", pred_channels, width, conditioning, init_scale, stages=stages)
        self.pred_channels, self.conditioning = pred_channels, conditioning
        cin = pred_channels + 3 if conditioning == "concat" else pred_channels
        self.body = nn.Sequential(*[conv_bn_relu(cin if i == 0 else width, width) for i in range(2 * stages)])
        self.head = nn.Conv2d(width, 3, 1)
        small_init_(self.head, init_scale)

    def forward(self, redacted: Tensor, condition: Tensor) -> list[Tensor]:
        _check_inputs("ForwardCRM", redacted, condition, self.pred_channels)
        return [redacted + self.head(self.body(combine(redacted, condition, self.conditioning)))]


class RecursiveCRM(nn.Module):
    """CRM-R: one Conv-BN-ReLU block (and a 3x3 projection to 3 channels) applied ``steps`` times,
    each step refining the last image: ``I[k+1] = I[k] + f(combine(I[k], condition)) / steps``, ``I[0]``
    the redacted image (Euler steps: the gradient does not grow with ``steps``, see the module's docstring).

    With ``"concat"`` the first convolution is split into its image part and its condition part;
    the condition part does not change between steps, so it is computed once. This is the same
    function as convolving the concatenation at every step, at a fraction of the cost.

    Args:
        pred_channels, conditioning: as for :class:`ForwardCRM`.
        width: hidden channels; ``None`` gives :func:`default_width` of ``N`` for CRM-R.
        steps: refinement steps ``T`` (paper: 20).
        init_scale: RMS of each step's projection at initialisation, before the ``1 / steps`` factor;
            0 (default) starts at the redacted image.
        checkpoint: recompute each step's activations in the backward pass instead of keeping them
            (``torch.utils.checkpoint``): the same gradients, the memory of ``T`` steps cut to what
            the steps' inputs take, for about one more forward pass of the CRM.

    Example:
        >>> crm = RecursiveCRM(pred_channels=5, steps=4)
        >>> len(crm(torch.rand(2, 3, 32, 32), torch.rand(2, 5, 32, 32)))
        4
    """

    def __init__(self, pred_channels: int, steps: int = 20, width: int | None = None, conditioning: str = "concat",
                 init_scale: float = 0.0, checkpoint: bool = True) -> None:
        super().__init__()
        width = default_width(pred_channels, recursive=True) if width is None else width
        _check_args("RecursiveCRM", pred_channels, width, conditioning, init_scale, steps=steps)
        self.pred_channels, self.steps, self.conditioning = pred_channels, steps, conditioning
        self.checkpoint = checkpoint
        if conditioning == "concat":
            self.image_conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
            self.condition_conv = nn.Conv2d(pred_channels, width, 3, padding=1, bias=False)
        else:
            self.image_conv = nn.Conv2d(pred_channels, width, 3, padding=1, bias=False)
        self.norm = batch_norm(width)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(width, 3, 3, padding=1)
        small_init_(self.head, init_scale)

    def step(self, image: Tensor, condition: Tensor, fixed: Tensor | None) -> Tensor:
        """One refinement ``I[k] -> I[k+1]``; ``fixed`` is the condition's part of the first conv."""
        if fixed is not None:
            h = self.image_conv(image) + fixed
        else:
            h = self.image_conv(combine(image, condition, "multiply"))
        return torch.add(image, self.head(self.act(self.norm(h))), alpha=1 / self.steps)

    def forward(self, redacted: Tensor, condition: Tensor) -> list[Tensor]:
        _check_inputs("RecursiveCRM", redacted, condition, self.pred_channels)
        image, outputs = redacted, []
        fixed = self.condition_conv(condition) if self.conditioning == "concat" else None
        use_checkpoint = self.checkpoint and torch.is_grad_enabled()
        for _ in range(self.steps):
            if use_checkpoint:
                image = checkpoint(self.step, image, condition, fixed, use_reentrant=False)
            else:
                image = self.step(image, condition, fixed)
            outputs.append(image)
        return outputs


CRMS: dict[str, type[nn.Module]] = {"forward": ForwardCRM, "crm_f": ForwardCRM, "recursive": RecursiveCRM,
                                    "crm_r": RecursiveCRM}


def build_crm(name: str, pred_channels: int, **kwargs) -> nn.Module:
    """Make a CRM by name: ``"forward"``/``"crm_f"`` or ``"recursive"``/``"crm_r"``."""
    if name not in CRMS:
        raise ValueError(f"build_crm: unknown CRM {name!r}; choose from {sorted(CRMS)}")
    return CRMS[name](pred_channels, **kwargs)
