"""Auxiliary objectives: what an extension of DejaVu adds to a training step.

An extension is one :class:`AuxiliaryLoss` subclass: ``forward(step)`` reads a :class:`TrainingStep`
and returns its named, weighted losses, which the training loop adds to the task loss and logs as
``train/<name>``. Registered by name (:func:`register_auxiliary`), a run lists it in
``model.auxiliaries: [{name: cyclic, weight: 0.1}]``; an unregistered one goes there as
``{class_path: package.module.Class, init_args: {...}}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import DejaVuLoss, DejaVuOutput

if TYPE_CHECKING:
    from ..tasks import Task

__all__ = ["AUXILIARIES", "AuxiliaryLoss", "TrainingStep", "build_auxiliary", "register_auxiliary"]

A = TypeVar("A", bound="type[AuxiliaryLoss]")


@dataclass
class TrainingStep:
    """One training step, as auxiliary objectives see it.

    Attributes:
        net: the dense prediction network (images in its own normalisation to raw outputs).
        image: the network's input ``(B, 3, H, W)``.
        prediction: its raw output.
        condition: the task's map from raw outputs to the conditioning map.
        loss_fn, regeneration: the DejaVu loss and its output, ``None`` in a run without DejaVu.
        extras: anything else the network produced (DejaVu-SA: ``"sa_regenerated"``).
        batch: the training batch: the targets, and ``labelled`` with partial labels.
    """

    net: Callable[[Tensor], Tensor]
    image: Tensor
    prediction: Tensor
    condition: Callable[[Tensor], Tensor]
    loss_fn: DejaVuLoss | None = None
    regeneration: DejaVuOutput | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    batch: Mapping[str, Any] = field(default_factory=dict)

    def regenerated01(self) -> Tensor:
        """DejaVu's regenerated image in ``[0, 1]`` at the input's size (it is smaller when ``scale < 1``)."""
        if self.regeneration is None:
            raise ValueError("this objective extends DejaVu: the run needs model.dejavu")
        out = self.regeneration.regenerated
        if out.shape[-2:] != self.image.shape[-2:]:
            out = F.interpolate(out, size=self.image.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def image01(self) -> Tensor:
        """The input image in ``[0, 1]``."""
        if self.loss_fn is None:
            raise ValueError("this objective extends DejaVu: the run needs model.dejavu")
        return self.loss_fn.to_unit_range(self.image)


class AuxiliaryLoss(nn.Module):
    """Base class of an extension's objective: ``forward(step) -> {name: weighted loss}``.

    Example:
        >>> class Smoothness(AuxiliaryLoss):
        ...     def __init__(self, weight: float = 0.1) -> None:
        ...         super().__init__()
        ...         self.weight = weight
        ...
        ...     def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        ...         dx = step.prediction.diff(dim=-1).abs().mean()
        ...         return {"smoothness": self.weight * dx}
    """

    extends_dejavu = False  # True: it reads DejaVu's regeneration, so a run needs model.dejavu
    per_pixel = True  # True: it compares dense outputs, which a query-based task does not have

    @classmethod
    def for_task(cls, task: Task, **kwargs: Any) -> AuxiliaryLoss:
        """The objective for a run of ``task``, from its config entry's keyword arguments."""
        return cls(**kwargs)

    def forward(self, step: TrainingStep) -> dict[str, Tensor]:
        raise NotImplementedError


AUXILIARIES: dict[str, type[AuxiliaryLoss]] = {}


def register_auxiliary(name: str) -> Callable[[A], A]:
    """Class decorator: make an :class:`AuxiliaryLoss` available to ``model.auxiliaries`` as ``name``."""
    def add(cls: A) -> A:
        AUXILIARIES[name] = cls
        return cls
    return add


def build_auxiliary(spec: Mapping[str, Any], task: Task) -> tuple[str, AuxiliaryLoss]:
    """An entry of ``model.auxiliaries`` as ``(name, objective)``: ``{"name": registered name, **kwargs}``
    or ``{"class_path": "package.module.Class", "init_args": {...}}``.

    Raises:
        ValueError: an unknown name or class path, a key the objective does not take, or an objective that
            does not fit the task (each named).
    """
    spec = dict(spec)
    if "class_path" in spec:
        module, _, attr = str(spec.pop("class_path")).rpartition(".")
        cls = getattr(importlib.import_module(module), attr, None) if module else None
        if not (isinstance(cls, type) and issubclass(cls, AuxiliaryLoss)):
            raise ValueError(f"model.auxiliaries: {module}.{attr} is not an AuxiliaryLoss subclass")
        name, kwargs = attr.lower(), dict(spec.pop("init_args", None) or {})
    else:
        name = spec.pop("name", None)
        if name not in AUXILIARIES:
            raise ValueError(f"model.auxiliaries: unknown objective {name!r}; choose from {sorted(AUXILIARIES)}, or "
                             "give {class_path: package.module.Class, init_args: {...}}")
        cls, kwargs = AUXILIARIES[name], spec
    if cls.per_pixel and task.query_based:
        raise ValueError(f"model.auxiliaries: {name} compares dense outputs; the {task.name} task's predictions are "
                         "per query: train it with model.dejavu alone")
    try:
        return name, cls.for_task(task, **kwargs)
    except TypeError as e:
        raise ValueError(f"model.auxiliaries: {name}: bad config key or value: {e}") from None
