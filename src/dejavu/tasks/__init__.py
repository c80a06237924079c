"""Dense prediction tasks: what the network outputs, its loss, its metrics, and DejaVu's condition.

A task turns the network's raw output ``(B, channels, h, w)`` into everything else:

- ``loss(raw, target)``: the task loss (segmentation cross-entropy with ignore index; depth L1 or
  scale-invariant log; normals cosine);
- ``decode(raw)``: the natural prediction (logits, metric depth, unit normals);
- ``condition(raw)``: the map the CRM is conditioned on (the DejaVu paper, section 3), so
  ``DejaVuLoss(task.channels, adapter=task.condition)`` works for any task or combination;
- ``metrics()``: a torchmetrics ``MetricCollection`` that accumulates over a dataset (and syncs under
  DDP); ``compute_metrics(raw, target)`` is the one-batch shortcut.

- ``subtasks``, ``split(raw)``, ``head_channels``: the single tasks it is made of (a multi-task's, in
  order), its output cut into their parts, and the output channels :func:`dejavu.models.create_model`
  takes;
- ``predicted_map(raw)``, ``view(value)``, ``legend()``, ``prediction_files(stem)`` /
  ``predicted_files(value, stem)``, ``output_names``: its answers in the ground truth's form, drawn
  (figures, overlays), saved (``dejavu predict``) and named in an export.

``target`` is the ground-truth tensor or the batch dict (the task reads its own ``key``). A raw
output smaller than the target is resized to it (bilinear).
"""

from __future__ import annotations

from .base import Task
from .dense import Depth, MultiTask, Normals, Segmentation
from .metrics import AngleMetrics, DepthMetrics, PanopticMetrics
from .panoptic import Panoptic
from .pretext import Denoising, MaskedModeling
from .query_panoptic import QueryPanoptic
from .query_semantic import QuerySemantic
from .registry import TASKS, create_task, register_task
from .selfsup import SelfSupervisedDepth

__all__ = ["TASKS", "AngleMetrics", "Denoising", "Depth", "DepthMetrics", "MaskedModeling", "MultiTask", "Normals",
           "Panoptic", "PanopticMetrics", "QueryPanoptic", "QuerySemantic", "Segmentation", "SelfSupervisedDepth",
           "Task", "create_task", "register_task"]
