"""Stop a diverging run where it starts, not 40 steps later at the first NaN.

A diverging optimiser multiplies a loss by orders of magnitude within a few steps (a CRM-R at SGD 0.01
went 0.08, 19.5, 5.7e3, 1.2e7, ... before its first NaN). :class:`DivergenceGuard` compares every
logged loss term with the value it had at the run's first step and stops the run with a
``FloatingPointError`` that names the epoch, the step, each term against its first value, and what to
change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ..arguments import matches
from ..checks import AsyncCheck

__all__ = ["DivergenceGuard"]


class DivergenceGuard:
    """Raises ``FloatingPointError`` when a loss term is NaN/Inf or above ``factor`` times its first value.

    A term's reference is its first finite value (terms that start at 0, such as an LPIPS that is off,
    are checked for finiteness only). ``factor`` 1000 lets a hard batch through, since training rarely
    raises a loss above its untrained start, and stops a geometric blow-up a step or two after it
    begins. ``factor=0`` checks finiteness alone.

    The values reach the host without a device sync (:class:`dejavu.checks.AsyncCheck`): on a CPU
    they are checked at the step itself, on a GPU a step or two later, and the message names the step
    they came from.

    Example:
        >>> guard = DivergenceGuard(factor=1000)
        >>> guard({"loss": torch.tensor(2.0)}, "step 0")
        >>> guard({"loss": torch.tensor(3e3)}, "step 1", "lower lr")
        Traceback (most recent call last):
        ...
        FloatingPointError: the training loss diverged at step 1: loss 3000 (1.5e+03x its first value, 2); lower lr
    """

    def __init__(self, factor: float = 1000.0) -> None:
        if not matches(factor, float) or not (factor == 0 or factor > 1):
            raise ValueError(f"DivergenceGuard: factor must be 0 (finiteness only) or a number > 1, got {factor!r}")
        self.factor = float(factor)
        self.reference: dict[str, float] = {}
        self.checks = AsyncCheck(self._check)

    def __call__(self, parts: Mapping[str, Tensor], where: str,
                 advice: str | Callable[[], str] = "lower the learning rate", sync: bool = False) -> None:
        """Check ``parts`` (scalar tensors) of the step named by ``where``; ``advice`` (or a function
        that makes it, called only on failure) ends the message. ``sync``: check now on every device."""
        names = list(parts)
        self.checks.submit(torch.stack([parts[k].detach().float().reshape(()) for k in names]), names, where, advice,
                           sync=sync)

    def _check(self, values: list[float], names: list[str], where: str, advice: str | Callable[[], str]) -> None:
        for name, value in zip(names, values, strict=True):
            if math.isfinite(value) and name not in self.reference:
                self.reference[name] = value
        if any(not math.isfinite(v) or self._ratio(k, v) > self.factor > 0 for k, v in zip(names, values, strict=True)):
            detail = ", ".join(self._describe(k, v) for k, v in zip(names, values, strict=True))
            what = "is not finite" if any(not math.isfinite(v) for v in values) else "diverged"
            self.checks.clear()
            raise FloatingPointError(f"the training loss {what} at {where}: {detail}; "
                                     f"{advice() if callable(advice) else advice}")

    def _ratio(self, name: str, value: float) -> float:
        first = self.reference.get(name, 0.0)
        return value / first if first > 0 else 0.0

    def _describe(self, name: str, value: float) -> str:
        ratio = self._ratio(name, value)
        first = f" ({ratio:.3g}x its first value, {self.reference[name]:.4g})" if ratio > 10 else ""
        return f"{name} {value:.4g}{first}"

    def state_dict(self) -> dict[str, float]:
        return dict(self.reference)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.reference = dict(state)
