"""Conditional Regeneration Modules (CRM): regenerate the image from the redacted image and the
prediction (PAPER_NOTES section 1.2).

Both take ``forward(redacted, condition)`` with ``redacted`` ``(B, 3, H, W)`` and ``condition`` the
prediction's conditioning map ``(B, N, H, W)``, and return the list of regenerated images: one for
:class:`ForwardCRM`, ``steps`` for :class:`RecursiveCRM`. Conditioning ``"concat"`` stacks the two
along channels (``3 + N`` in); ``"multiply"`` multiplies the channel-mean of the image with each
prediction channel (``N`` in).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ForwardCRM", "RecursiveCRM", "combine", "build_crm"]

CONDITIONINGS = ("concat", "multiply")


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


def _check_args(cls: str, pred_channels: int, width: int, conditioning: str, **counts: int) -> None:
    for name, value in {"pred_channels": pred_channels, "width": width, **counts}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{cls}: {name} must be an int >= 1, got {value!r}")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"{cls}: conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")


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


class ForwardCRM(nn.Module):
    """CRM-F: ``stages`` stages of two 3x3 Conv-BN-ReLU, then a 1x1 projection to 3 channels.

    Args:
        pred_channels: channels ``N`` of the conditioning map.
        stages: number of stages (paper's best: 2, supp. Table B.3).
        width: channels of every hidden layer.
        conditioning: ``"concat"`` or ``"multiply"``.

    Raises:
        ValueError: a count below 1, or unknown ``conditioning``.

    Example:
        >>> crm = ForwardCRM(pred_channels=5)
        >>> [y.shape for y in crm(torch.rand(2, 3, 32, 32), torch.rand(2, 5, 32, 32))]
        [torch.Size([2, 3, 32, 32])]
    """

    def __init__(self, pred_channels: int, stages: int = 2, width: int = 64, conditioning: str = "concat") -> None:
        super().__init__()
        _check_args("ForwardCRM", pred_channels, width, conditioning, stages=stages)
        self.pred_channels, self.conditioning = pred_channels, conditioning
        cin = pred_channels + 3 if conditioning == "concat" else pred_channels
        layers: list[nn.Module] = []
        for i in range(2 * stages):
            layers.append(conv_bn_relu(cin if i == 0 else width, width))
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 3, 1)

    def forward(self, redacted: Tensor, condition: Tensor) -> list[Tensor]:
        _check_inputs("ForwardCRM", redacted, condition, self.pred_channels)
        return [self.head(self.body(combine(redacted, condition, self.conditioning)))]


class RecursiveCRM(nn.Module):
    """CRM-R: one Conv-BN-ReLU block (and a 3x3 projection to 3 channels) applied ``steps`` times,
    each step refining the last image: ``I[k+1] = I[k] + f(combine(I[k], condition))``, ``I[0]`` the
    redacted image.

    With ``"concat"`` the first convolution is split into its image part and its condition part;
    the condition part does not change between steps, so it is computed once. This is the same
    function as convolving the concatenation at every step, at a fraction of the cost.

    Example:
        >>> crm = RecursiveCRM(pred_channels=5, steps=4)
        >>> len(crm(torch.rand(2, 3, 32, 32), torch.rand(2, 5, 32, 32)))
        4
    """

    def __init__(self, pred_channels: int, steps: int = 20, width: int = 64, conditioning: str = "concat") -> None:
        super().__init__()
        _check_args("RecursiveCRM", pred_channels, width, conditioning, steps=steps)
        self.pred_channels, self.steps, self.conditioning = pred_channels, steps, conditioning
        if conditioning == "concat":
            self.image_conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
            self.condition_conv = nn.Conv2d(pred_channels, width, 3, padding=1, bias=False)
        else:
            self.image_conv = nn.Conv2d(pred_channels, width, 3, padding=1, bias=False)
        self.norm = batch_norm(width)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, redacted: Tensor, condition: Tensor) -> list[Tensor]:
        _check_inputs("RecursiveCRM", redacted, condition, self.pred_channels)
        image, outputs = redacted, []
        fixed = self.condition_conv(condition) if self.conditioning == "concat" else None
        for _ in range(self.steps):
            if fixed is not None:
                h = self.image_conv(image) + fixed
            else:
                h = self.image_conv(combine(image, condition, "multiply"))
            image = image + self.head(self.act(self.norm(h)))
            outputs.append(image)
        return outputs


CRMS: dict[str, type[nn.Module]] = {"forward": ForwardCRM, "crm_f": ForwardCRM, "recursive": RecursiveCRM,
                                    "crm_r": RecursiveCRM}


def build_crm(name: str, pred_channels: int, **kwargs) -> nn.Module:
    """Make a CRM by name: ``"forward"``/``"crm_f"`` or ``"recursive"``/``"crm_r"``."""
    if name not in CRMS:
        raise ValueError(f"build_crm: unknown CRM {name!r}; choose from {sorted(CRMS)}")
    return CRMS[name](pred_channels, **kwargs)
