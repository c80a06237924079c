"""The task protocol: what a dense prediction task gives the training loop and DejaVu."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from .views import FileContent, Palette, stretched

__all__ = ["Task"]


class Task:
    """Base class. Subclasses set ``name``, ``key`` (the batch entry), ``channels`` and ``monitor``
    (the metric that says which model is best, and ``"max"`` or ``"min"``)."""

    name: str
    key: str
    channels: int
    monitor: tuple[str, str]
    query_based = False  # True: the network predicts per query (a QueryPrediction), not per pixel
    output_names: tuple[str, ...] = ("prediction",)  # the exported network's outputs (ONNX names)
    # settings a config may leave to the dataset: num_classes, ignore_index, class_names, things
    from_dataset: tuple[str, ...] = ()

    @property
    def subtasks(self) -> list[Task]:
        """The single tasks this one is made of, in the order of :meth:`split`: itself."""
        return [self]

    def split(self, raw: Tensor) -> list[Tensor]:
        """The raw output cut into one part per subtask."""
        return [raw]

    @property
    def head_channels(self) -> int | list[int]:
        """What :func:`dejavu.models.create_model` takes as output channels: one head's, or one per subtask."""
        return self.channels

    @property
    def condition_channels(self) -> int:
        """The channels of DejaVu's condition (``condition(render(raw))``)."""
        return self.channels

    def render(self, raw: Tensor) -> Tensor:
        """The per-pixel map of a prediction, which :meth:`condition` takes: the raw output itself for a
        dense network; a query-based network's masks rendered into per-pixel maps."""
        return raw

    def _target(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        if isinstance(target, Mapping):
            if self.key not in target:
                raise KeyError(f"{type(self).__name__}: batch has no {self.key!r} entry (has {sorted(target)})")
            return target[self.key]
        return target

    def _check_raw(self, raw: Tensor) -> None:
        if not isinstance(raw, Tensor):
            raise ValueError(f"{type(self).__name__}: the prediction must be a tensor (B, {self.channels}, H, W), got "
                             f"a {type(raw).__name__}; a query-based network (mask2former) goes with the "
                             "query_panoptic task")
        if raw.dim() != 4 or raw.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__}: prediction must have shape (B, {self.channels}, H, W), "
                             f"got {tuple(raw.shape)}")

    def _resized(self, raw: Tensor, size: torch.Size) -> Tensor:
        self._check_raw(raw)
        if raw.shape[-2:] != size:
            raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
        return raw

    def decode(self, raw: Tensor) -> Tensor:
        return raw

    def modules(self) -> dict[str, nn.Module]:
        """Trainable parts of the task itself (e.g. a pose network), trained with the network."""
        return {}

    def mirror(self, raw: Tensor) -> Tensor:
        """The raw prediction of a left-right mirrored image, mirrored back (flip test-time augmentation)."""
        return raw.flip(-1)

    def target_condition(self, target: Tensor | Mapping[str, Tensor]) -> Tensor | None:
        """The condition a perfect prediction would give (what ``condition`` makes of the ground
        truth), for DejaVu's reliance measure; ``None`` where the task has no such map."""
        return None

    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The batch the network trains on; pretext tasks (denoising, masking) corrupt the image here."""
        return dict(batch)

    def compute_metrics(self, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> dict[str, float]:
        """The scalar metrics of one batch, as floats (a confusion matrix is left out)."""
        metrics = self.metrics().to(raw.device)
        self.update_metrics(metrics, raw, target)
        return {k: float(v) for k, v in metrics.compute().items() if v.dim() == 0}

    def update_metrics(self, metrics: MetricCollection, raw: Tensor, target: Tensor | Mapping[str, Tensor]) -> None:
        tgt = self._target(target)
        metrics.update(self.decode(self._resized(raw.detach().float(), tgt.shape[-2:])), tgt)

    # ------------------------------------------------------------------ how an answer looks and is saved
    def target_map(self, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        """The ground truth of a batch in the form :meth:`predicted_map` gives."""
        return self._target(target)

    def predicted_map(self, raw: Tensor, size: Sequence[int] | None = None) -> Tensor:
        """A batch's answers in the ground truth's form (class ids, metres...); ``size`` is for a
        query-based network, whose masks have a size of their own."""
        return self.decode(raw)

    def view(self, value: Tensor, palette: Palette = None) -> np.ndarray:
        """One image's map (ground truth or :meth:`predicted_map`) as RGB ``(H, W, 3)`` in ``[0, 1]``, for
        figures and overlays; ``palette``: the dataset's class colours. By default the map stretched."""
        return stretched(value)

    def legend(self, palette: Palette = None, names: Sequence[str] | None = None) -> list[tuple[str | None, tuple]]:
        """The classes :meth:`view` colours, as ``(name, RGB)`` (name ``None`` where a class has none;
        ``names`` stands in for the task's own); empty for a task without classes."""
        return []

    def prediction_files(self, stem: str, raw_ids: bool = False) -> list[str]:
        """The names of the files ``dejavu predict`` writes for an image ``stem``: by default the map as a
        numpy array. ``raw_ids``: also the class ids as a plain PNG, where there are classes."""
        return [f"{stem}_{self.name}.npy"]

    def predicted_files(self, value: Tensor, stem: str, palette: Palette = None, raw_ids: bool = False
                        ) -> dict[str, FileContent]:
        """The contents of :meth:`prediction_files` for one image's :meth:`predicted_map`."""
        return {f"{stem}_{self.name}.npy": value.float().numpy()}
