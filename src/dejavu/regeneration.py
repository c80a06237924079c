"""Conditional Regeneration Modules (CRM): regenerate the image from the redacted image and the
prediction (the DejaVu paper, section 3).

Both take ``forward(redacted, condition)`` with ``redacted`` ``(B, 3, H, W)`` and ``condition`` the
prediction's conditioning map ``(B, N, H, W)``, and return the regenerated images stacked,
``(T, B, 3, H, W)``: ``T = 1`` for :class:`ForwardCRM`, ``steps`` for :class:`RecursiveCRM` (iterate
it for the steps; ``[-1]`` is the last). Conditioning ``"concat"`` stacks the two
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
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .arguments import matches
from .weights import mismatch, read_tensors

__all__ = ["EulerSteps", "ForwardCRM", "RecursiveCRM", "build_crm", "combine", "default_width", "euler_steps",
           "load_crm_weights"]

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
        if not matches(value, int) or value < 1:
            raise ValueError(f"{cls}: {name} must be an int >= 1, got {value!r}")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"{cls}: conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    if not matches(init_scale, float) or init_scale < 0:
        raise ValueError(f"{cls}: init_scale must be a number >= 0, got {init_scale!r}")


def _check_inputs(cls: str, redacted: Tensor, condition: Tensor, pred_channels: int, batch_norm: bool = True) -> None:
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
    if batch_norm and redacted.shape[0] * redacted.shape[2] * redacted.shape[3] < 2:  # two values per channel
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
        >>> crm(torch.rand(2, 3, 32, 32), torch.rand(2, 5, 32, 32)).shape
        torch.Size([1, 2, 3, 32, 32])
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

    def forward(self, redacted: Tensor, condition: Tensor) -> Tensor:
        _check_inputs("ForwardCRM", redacted, condition, self.pred_channels)
        return (redacted + self.head(self.body(combine(redacted, condition, self.conditioning)))).unsqueeze(0)


class RecursiveCRM(nn.Module):
    """CRM-R: one Conv(-BN)-ReLU block (and a 3x3 projection to 3 channels) applied ``steps`` times,
    each step refining the last image: ``I[k+1] = I[k] + f(combine(I[k], condition)) / steps``, ``I[0]``
    the redacted image (Euler steps: the gradient does not grow with ``steps``, see the module's docstring).

    With ``"concat"`` the first convolution is split into its image part and its condition part;
    the condition part does not change between steps, so it is computed once. This is the same
    function as convolving the concatenation at every step, at a fraction of the cost.

    The block is norm-free by default (``norm=False``): ``f = head(ReLU(conv(I[k]) + conv(condition)))``.
    The paper's block has batch norm, which costs two kernels a step forward and backward and keeps the
    steps apart; without it, and with ``"concat"``, the ``steps`` steps run as one autograd node
    (:class:`EulerSteps`) whose backward computes the weights' gradients once over all steps: about 10
    kernel launches a step, forward and backward, against 23 for the batch-norm block with
    checkpointing. On synthetic segmentation and multi-task data (3 seeds each) it trained to the same
    task metrics and regeneration error as the paper's block (``benchmarks/RESULTS.md`` has the
    counts, the times and the comparison).

    Args:
        pred_channels, conditioning: as for :class:`ForwardCRM`.
        steps: refinement steps ``T`` (paper: 20).
        width: hidden channels; ``None`` gives :func:`default_width` of ``N`` for CRM-R.
        init_scale: RMS of each step's projection at initialisation, before the ``1 / steps`` factor;
            0 (default) starts at the redacted image.
        norm: the paper's Conv-BN-ReLU block (batch statistics, see :func:`batch_norm`) instead of
            the norm-free one.
        checkpoint: with ``norm=True`` or ``"multiply"``, recompute each step's activations in the
            backward pass instead of keeping them (``torch.utils.checkpoint``): the same gradients, the
            memory of ``T`` steps cut to what the steps' inputs take, for one more forward pass of the
            CRM. The fused norm-free steps keep their activations: ``T * (width + 3)`` channels at the
            regeneration size (232 MB for 19 classes, a batch of 8 at 512x512 regenerated at 128x128,
            float32).

    Returns:
        ``forward(redacted, condition)``: the ``T`` steps stacked, ``(T, B, 3, H, W)``; iterate it, or
        take ``[-1]`` for the last image.

    Example:
        >>> crm = RecursiveCRM(pred_channels=5, steps=4)
        >>> crm(torch.rand(2, 3, 32, 32), torch.rand(2, 5, 32, 32)).shape
        torch.Size([4, 2, 3, 32, 32])
    """

    def __init__(self, pred_channels: int, steps: int = 20, width: int | None = None, conditioning: str = "concat",
                 init_scale: float = 0.0, norm: bool = False, checkpoint: bool = True) -> None:
        super().__init__()
        width = default_width(pred_channels, recursive=True) if width is None else width
        _check_args("RecursiveCRM", pred_channels, width, conditioning, init_scale, steps=steps)
        if not isinstance(norm, bool):
            raise ValueError(f"RecursiveCRM: norm must be True (the paper's batch norm at every step) or False, "
                             f"got {norm!r}")
        self.pred_channels, self.steps, self.conditioning = pred_channels, steps, conditioning
        self.checkpoint = checkpoint
        if conditioning == "concat":
            self.image_conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
            self.condition_conv = nn.Conv2d(pred_channels, width, 3, padding=1, bias=False)
        else:
            self.image_conv = nn.Conv2d(pred_channels, width, 3, padding=1, bias=False)
        self.norm = batch_norm(width) if norm else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(width, 3, 3, padding=1)
        small_init_(self.head, init_scale)

    @property
    def fused(self) -> bool:
        """Whether the steps run as one :class:`EulerSteps` node (norm-free, ``"concat"``)."""
        return self.conditioning == "concat" and isinstance(self.norm, nn.Identity)

    def step(self, image: Tensor, condition: Tensor, fixed: Tensor | None) -> Tensor:
        """One refinement ``I[k] -> I[k+1]``; ``fixed`` is the condition's part of the first conv."""
        if fixed is not None:
            h = self.image_conv(image) + fixed
        else:
            h = self.image_conv(combine(image, condition, "multiply"))
        return torch.add(image, self.head(self.act(self.norm(h))), alpha=1 / self.steps)

    def forward(self, redacted: Tensor, condition: Tensor) -> Tensor:
        _check_inputs("RecursiveCRM", redacted, condition, self.pred_channels, isinstance(self.norm, nn.BatchNorm2d))
        fixed = self.condition_conv(condition) if self.conditioning == "concat" else None
        if self.fused:
            return euler_steps(redacted, fixed, self.image_conv.weight, self.head.weight, self.head.bias, self.steps)
        image, outputs = redacted, []
        use_checkpoint = self.checkpoint and torch.is_grad_enabled()
        for _ in range(self.steps):
            if use_checkpoint:
                image = checkpoint(self.step, image, condition, fixed, use_reentrant=False)
            else:
                image = self.step(image, condition, fixed)
            outputs.append(image)
        return torch.stack(outputs)


def euler_steps(redacted: Tensor, fixed: Tensor, w1: Tensor, w2: Tensor, b2: Tensor, steps: int) -> Tensor:
    """The norm-free CRM-R's ``steps`` steps, ``I[k+1] = I[k] + conv(ReLU(conv(I[k], w1) + fixed), w2, b2) / steps``
    (3x3 convolutions, padding 1), as one autograd node; returns ``I[1..T]`` stacked, ``(T, B, 3, H, W)``.

    Under autocast the steps run in the autocast dtype (bfloat16 or float16), as the convolutions
    would one by one; gradients come back in the inputs' dtypes.
    """
    device = redacted.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        redacted, fixed, w1, w2, b2 = (t.to(dtype) for t in (redacted, fixed, w1, w2, b2))
    with torch.autocast(device, enabled=False):
        return EulerSteps.apply(redacted, fixed, w1, w2, b2, steps)


def _conv_grads(grad: Tensor, x: Tensor, weight: Tensor, mask: tuple[bool, bool, bool]) -> tuple:
    """``aten.convolution_backward`` of a 3x3, stride-1, padding-1 convolution: only the gradients
    ``mask`` asks for (input, weight, bias)."""
    bias = [weight.shape[0]] if mask[2] else None
    return torch.ops.aten.convolution_backward(grad, x, weight, bias, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                               list(mask))


class EulerSteps(torch.autograd.Function):
    """:func:`euler_steps` with a hand-written backward, so a step costs 5 kernels forward and 5 backward.

    Autograd would take about 15 kernels a step: besides the step's own, it adds into each weight's
    gradient once per step and keeps a separate gradient for each use of ``fixed``. Here the backward
    runs the steps in reverse for the images' and hidden states' gradients only, then forms each
    weight's gradient in one convolution-backward over all ``T`` steps stacked along the batch.
    ``tests/test_regeneration.py`` checks it against autograd through :meth:`RecursiveCRM.step`.
    """

    @staticmethod
    def forward(ctx, redacted: Tensor, fixed: Tensor, w1: Tensor, w2: Tensor, b2: Tensor, steps: int) -> Tensor:
        images = redacted.new_empty(steps + 1, *redacted.shape)  # I[0..T]
        hidden = fixed.new_empty(steps, *fixed.shape)  # ReLU(conv(I[k], w1) + fixed)
        images[0] = redacted
        for k in range(steps):
            torch.add(F.conv2d(images[k], w1, padding=1), fixed, out=hidden[k]).relu_()
            torch.add(images[k], F.conv2d(hidden[k], w2, b2, padding=1), alpha=1 / steps, out=images[k + 1])
        ctx.save_for_backward(images, hidden, w1, w2)
        ctx.steps = steps
        return images[1:]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        images, hidden, w1, w2 = ctx.saved_tensors
        steps, need = ctx.steps, ctx.needs_input_grad
        w2_step = w2 / steps
        # total[k]: the whole gradient of I[k+1], through every later step; d_hidden[k]: of hidden[k]'s input
        total, d_hidden = torch.empty_like(grad), torch.empty_like(hidden)
        total[-1] = grad[-1]
        d_redacted = None
        for k in reversed(range(steps)):
            d_h = _conv_grads(total[k], hidden[k], w2_step, (True, False, False))[0]
            torch.ops.aten.threshold_backward.grad_input(d_h, hidden[k], 0, grad_input=d_hidden[k])
            if k == 0 and not need[0]:
                break
            d_image = _conv_grads(d_hidden[k], images[k], w1, (True, False, False))[0]
            if k == 0:
                d_redacted = total[0] + d_image
            else:
                torch.add(total[k], d_image, out=total[k - 1]).add_(grad[k - 1])
        d_w1 = d_w2 = d_b2 = None
        if need[2]:
            d_w1 = _conv_grads(d_hidden.flatten(0, 1), images[:-1].flatten(0, 1), w1, (False, True, False))[1]
        if need[3] or need[4]:
            _, d_w2, d_b2 = _conv_grads(total.flatten(0, 1), hidden.flatten(0, 1), w2, (False, need[3], need[4]))
            d_w2 = d_w2 / steps if d_w2 is not None else None
            d_b2 = d_b2 / steps if d_b2 is not None else None
        d_fixed = d_hidden.sum(0) if need[1] else None
        return d_redacted, d_fixed, d_w1, d_w2, d_b2, None


CRMS: dict[str, type[nn.Module]] = {"forward": ForwardCRM, "crm_f": ForwardCRM, "recursive": RecursiveCRM,
                                    "crm_r": RecursiveCRM}


def build_crm(name: str, pred_channels: int, **kwargs) -> nn.Module:
    """Make a CRM by name: ``"forward"``/``"crm_f"`` or ``"recursive"``/``"crm_r"``."""
    if name not in CRMS:
        raise ValueError(f"build_crm: unknown CRM {name!r}; choose from {sorted(CRMS)}")
    return CRMS[name](pred_channels, **kwargs)


def load_crm_weights(crm: nn.Module, path: str | Path) -> None:
    """Load a CRM's weights from a ``.safetensors`` file (e.g. a run's ``crm.safetensors``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file's tensors do not fit ``crm`` (names or shapes); the message lists the
            first mismatches and what to check.
    """
    state = read_tensors(path, "DejaVuLoss: regenerator_weights")
    diff = mismatch(crm.state_dict(), state)
    if diff:
        raise ValueError(f"DejaVuLoss: regenerator_weights {path} do not fit this {type(crm).__name__}: {diff}. "
                         "Pretrain with the same regenerator, regenerator_kwargs, conditioning and pred_channels "
                         "as this run.")
    crm.load_state_dict(state)
