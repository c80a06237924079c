"""How a run optimises (``model.optim``): the network's optimiser in parameter groups, the CRM's own
Adam, and the schedule, with :class:`JointOptimizer` stepping them as one for frameworks that take a
single optimiser (Lightning's automatic optimisation, one LR scheduler, gradient clipping, AMP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..arguments import check_types

__all__ = ["HEADS", "NORMS", "JointOptimizer", "Optimisation", "parameter_groups"]

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
         nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
HEADS = ("head", "heads", "segmentation_head")


@dataclass(frozen=True)
class Optimisation:
    """How the network and the CRM train (``model.optim``; ``--model.optim.lr 0.02`` on the command line).

    Args:
        name: ``"sgd"`` (momentum 0.9, the papers') or ``"adamw"``.
        lr, weight_decay: the network's; the learning rate follows the polynomial schedule
            ``lr * (1 - step / total) ** poly_power`` (the DejaVu supplementary, section C: power 2).
        warmup_steps: ramp the learning rate linearly from ``lr / warmup_steps`` over these first
            steps (0: none), as recipes for pretrained backbones do.
        head_lr_mult: the head trains at ``head_lr_mult * lr``: everything of a network with an
            ``encoder`` but its (pretrained) encoder, or a built-in network's ``head`` / ``heads``.
        no_decay_norm_bias: no weight decay on normalisation layers' parameters and biases, nor on what a
            backbone names in its ``no_weight_decay()`` (timm's and open_clip's convention: a ViT's position
            embedding and class token, as mmsegmentation's ViT recipes spare them).
        crm_lr: the learning rate of the CRM's own Adam (:meth:`dejavu.DejaVuLoss.regenerator_optimizer`),
            stepped with the network's optimiser and on the same schedule; ``None`` trains the CRM in the
            network's optimiser at ``lr`` instead (stable, but slow under SGD for spectral redactions).

    Raises:
        ArgumentTypeError: a value of the wrong type (named ``model.optim.<key>``).
        ValueError: a learning rate that is not positive, or an unknown ``name``.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    poly_power: float = 2.0
    warmup_steps: int = 0
    head_lr_mult: float = 1.0
    no_decay_norm_bias: bool = False
    crm_lr: float | None = 1e-3

    def __post_init__(self) -> None:
        check_types("model.optim", type(self).__init__, asdict(self))
        if self.name not in ("sgd", "adamw"):
            raise ValueError(f"model.optim.name must be 'sgd' or 'adamw', got {self.name!r}")
        if self.crm_lr is not None and self.crm_lr <= 0:
            raise ValueError(f"model.optim.crm_lr must be a number > 0, or null to train the CRM in the network's "
                             f"optimiser; got {self.crm_lr!r}")

    def configure(self, module: nn.Module, crm: torch.optim.Optimizer | None,
                  total_steps: Callable[[], int]) -> dict[str, Any]:
        """Lightning's ``configure_optimizers`` answer for ``module``: its parameters but the CRM's own
        (``crm``, built by the caller) in groups, one optimiser over both, and the per-step schedule.
        ``total_steps`` is asked from the first step on: asking earlier would build the training loader
        before a resumed run has restored its position in the data."""
        mine = frozenset(id(p) for g in crm.param_groups for p in g["params"]) if crm else frozenset()
        groups = parameter_groups(module, self.lr, self.weight_decay, self.head_lr_mult, self.no_decay_norm_bias, mine)
        if not groups and crm is not None:  # CRM pretraining: the network is frozen
            opt = crm
        elif self.name == "sgd":
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        if crm is not None and opt is not crm:
            opt = JointOptimizer(opt, crm)

        def poly(step: int) -> float:
            total = 1 if step == 0 else max(1, total_steps())
            ramp = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
            return ramp * max(0.0, 1 - step / total) ** self.poly_power

        sched = torch.optim.lr_scheduler.LambdaLR(opt, poly)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def parameter_groups(module: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                     no_decay_norm_bias: bool = False, exclude: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` (but those whose ``id`` is in ``exclude``) in optimiser
    groups by learning rate and weight decay: the network's head (:data:`HEADS`, or all but the
    ``encoder`` of a network that has one: smp's, OCR, Mask2Former) at ``head_lr_mult * lr``,
    normalisation parameters and biases without decay when ``no_decay_norm_bias``. Auxiliaries train
    at ``lr``."""
    net = getattr(module, "net", module)
    if isinstance(getattr(net, "encoder", None), nn.Module):  # smp's networks, OCR, Mask2Former's backbone
        encoder = {id(p) for p in net.encoder.parameters()}
        head = {id(p) for p in net.parameters() if id(p) not in encoder}
    else:
        head = {id(p) for name, p in net.named_parameters() if name.split(".")[0] in HEADS}
    spared = _named_no_weight_decay(module) if no_decay_norm_bias else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for owner in module.modules():
        for name, p in owner.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in exclude:
                quiet = no_decay_norm_bias and (isinstance(owner, NORMS) or name == "bias" or id(p) in spared)
                groups.setdefault((id(p) in head and head_lr_mult != 1, quiet), []).append(p)
    return [{"params": params, "lr": lr * (head_lr_mult if is_head else 1.0),
             "weight_decay": 0.0 if quiet else weight_decay} for (is_head, quiet), params in groups.items()]


def _named_no_weight_decay(module: nn.Module) -> set[int]:
    """The ids of the parameters that submodules name in their own ``no_weight_decay()`` (timm's models,
    open_clip's towers: names relative to themselves)."""
    spared = set()
    for m in module.modules():
        names = m.no_weight_decay() if callable(getattr(m, "no_weight_decay", None)) else ()
        spared |= {id(p) for name, p in m.named_parameters() if name in names}
    return spared


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
                             "resumes with --model.optim.crm_lr null")
        for optimizer, state in zip(self.optimizers, parts, strict=True):
            optimizer.load_state_dict(state)
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]  # loading made new group dicts
