"""What a training step optimises (``model.strategy``), each a small strategy: the supervised step (the
task loss with DejaVu's and the auxiliaries'), the supplementary's redaction-as-augmentation baseline,
and CRM pretraining (the CRM alone, on the ground truth's condition: the paper's "stored weights")."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from lightning import LightningModule
from torch import Tensor

from .. import redaction as R
from ..extensions import TrainingStep
from ..losses import NonFiniteError
from ..tasks import Task

__all__ = ["STRATEGIES", "CRMPretraining", "RedactionAugmentation", "Strategy", "Supervised", "build_strategy",
           "register_strategy"]

S = TypeVar("S", bound="type[Strategy]")
STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`Strategy` available to ``model.strategy: {name: ...}``."""
    def add(cls: S) -> S:
        STRATEGIES[name] = cls
        return cls
    return add


def build_strategy(spec: Mapping[str, Any] | None) -> Strategy:
    """``model.strategy`` as a :class:`Strategy`: ``{"name": registered name, **kwargs}``; ``None`` is
    the supervised step.

    Raises:
        ValueError: an unknown name or a key the strategy does not take (named).
    """
    spec = dict(spec or {"name": "supervised"})
    name = spec.pop("name", None)
    if name not in STRATEGIES:
        raise ValueError(f"model.strategy: unknown strategy {name!r}; choose from {sorted(STRATEGIES)}")
    try:
        return STRATEGIES[name](**spec)
    except TypeError as e:
        raise ValueError(f"model.strategy: {name}: bad config key or value: {e}") from None


class Strategy:
    """Base class: ``setup(module)`` checks that the run suits it and prepares the module once;
    ``step(module, batch)`` returns a training step's loss and the terms to log (``train/...``). The
    module is the run's :class:`~dejavu.training.module.DejaVuModule`."""

    monitor: tuple[str, str] | None = None  # the validation metric that picks the best checkpoint; None: the task's

    def setup(self, module: LightningModule) -> None:
        pass

    def step(self, module: LightningModule, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


@register_strategy("supervised")
class Supervised(Strategy):
    """The network's prediction, its task loss (and its own deep supervision, if any), DejaVu's loss
    when the run has one, and each auxiliary objective's losses, summed."""

    def inputs(self, image: Tensor) -> Tensor:
        """What the network sees of a training image."""
        return image

    def step(self, module: LightningModule, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        image = self.inputs(batch["image"])
        raw, extras = module.predict(image, auxiliary=True)
        loss = task_loss = module.task.loss(raw, batch)
        logs = {"train/task_loss": task_loss}
        deep = extras.pop("deep_supervision", ())
        if deep:
            logs["train/deep_supervision"] = sum(w * module.task.loss(aux, batch) for w, aux in deep)
            loss = loss + logs["train/deep_supervision"]
        out = None
        if module.dejavu_loss is not None:
            try:
                out = module.dejavu_loss(image, module.task.render(raw))
            except NonFiniteError as e:  # the network's weights diverged at the last update, or the data is bad
                module.checked(loss, {**logs, "prediction": loss.new_tensor(math.nan)}, f"{e}. ", sync=True)
            loss = loss + out.loss
            logs.update({"train/dejavu_loss": out.loss, "train/regen_mse": out.mse})
            if module.dejavu_loss.lpips_weight > 0:  # a term that is off would read 0 (LPIPS) or 1 (SSIM)
                logs["train/regen_lpips"] = out.lpips
            if module.dejavu_loss.ssim_weight > 0:
                logs["train/regen_ssim"] = out.ssim
        step = TrainingStep(module.net, image, raw, module.task.condition, module.dejavu_loss, out, extras, batch)
        for auxiliary in module.auxiliaries.values():
            for name, value in auxiliary(step).items():
                loss = loss + value
                logs[f"train/{name}"] = value
        logs["train/loss"] = loss
        return loss, logs


@register_strategy("redaction_augmentation")
class RedactionAugmentation(Supervised):
    """The supplementary's baseline: a training batch replaced by its redaction with probability ``p``
    (no CRM, no extra loss), e.g. ``{name: redaction_augmentation, redaction: {name: checkerboard,
    block_size: 8}, p: 0.5}``."""

    def __init__(self, redaction: Any, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"model.strategy: redaction_augmentation's p must be in [0, 1], got {p!r}")
        self.redaction, self.p = R.as_redaction(redaction), float(p)

    def inputs(self, image: Tensor) -> Tensor:
        return self.redaction(image) if torch.rand(()) < self.p else image


@register_strategy("crm_pretraining")
class CRMPretraining(Strategy):
    """The CRM alone, conditioned on the ground truth's condition (the task's ``target_condition``) with
    the run's redaction, the network frozen and not run; the run writes ``crm.safetensors`` for
    ``dejavu.regenerator_weights`` of a DejaVu run (the paper's "stored weights", supp. C.1). The best
    checkpoint is the lowest ``val/regen_mse_gt``."""

    monitor = ("val/regen_mse_gt", "min")

    def setup(self, module: LightningModule) -> None:
        if type(module.task).target_condition is Task.target_condition:
            raise ValueError(f"model.strategy: crm_pretraining: the {type(module.task).__name__} task has no "
                             "ground-truth condition to pretrain a CRM on")
        if module.dejavu_loss is None or len(module.auxiliaries):
            raise ValueError("model.strategy: crm_pretraining trains the CRM of model.dejavu alone: set model.dejavu, "
                             "and no model.auxiliaries")
        module.net.requires_grad_(False)  # the optimiser then holds the CRM's parameters only

    def step(self, module: LightningModule, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out = module.dejavu_loss.from_condition(batch["image"], module.task.target_condition(batch))
        return out.loss, {"train/dejavu_loss": out.loss, "train/regen_mse": out.mse}
