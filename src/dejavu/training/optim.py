"""Several optimisers stepped as one: the network's and the regenerator's, for frameworks that take a
single optimiser (Lightning's automatic optimisation, one LR scheduler, gradient clipping, AMP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["JointOptimizer"]


class JointOptimizer(torch.optim.Optimizer):
    """Steps ``optimizers`` together; their parameter groups are this optimiser's groups.

    The groups are the same dicts, not copies, so a scheduler that sets ``lr`` on each group, gradient
    clipping and a gradient scaler reach every part, and each part keeps its own algorithm and state.

    Example:
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> opt = JointOptimizer(torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.Adam(b.parameters()))
        >>> [g["lr"] for g in opt.param_groups]
        [0.1, 0.001]
    """

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        if not optimizers or not all(isinstance(o, torch.optim.Optimizer) for o in optimizers):
            raise TypeError("JointOptimizer: give one or more torch.optim.Optimizer instances")
        self.optimizers = optimizers
        super().__init__([g for o in optimizers for g in o.param_groups], {})

    @property
    def state(self) -> dict[Any, Any]:  # the parts' states, by parameter (read by device moves)
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    @state.setter
    def state(self, value: Any) -> None:  # torch.optim.Optimizer.__init__ sets one; the parts own theirs
        pass

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:  # one forward and backward for all the parts
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        parts = state_dict.get("optimizers")
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            held = len(parts) if isinstance(parts, list) else "no"
            raise ValueError(f"JointOptimizer: the saved state holds {held} optimiser states, this one has "
                             f"{len(self.optimizers)} parts. A run whose CRM trained in the network's optimiser "
                             "resumes with --model.crm_lr null")
        for optimizer, state in zip(self.optimizers, parts, strict=True):
            optimizer.load_state_dict(state)
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]  # loading made new group dicts
