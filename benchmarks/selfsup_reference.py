"""The reference a self-supervised depth network must beat: a constant depth, median-scaled per image
as the network's prediction is, on the validation clips of configs/synthetic/selfsup_depth_*.yaml
(64 clips at 64x64, scene seed 1: the data module's validation seed for seed 0).

    python benchmarks/selfsup_reference.py
"""

import torch

from dejavu.data import SyntheticVideo
from dejavu.tasks import DepthMetrics
from dejavu.tasks.reprojection import median_scaled

metrics = DepthMetrics()
for item in SyntheticVideo(64, size=(64, 64), seed=1):
    target = item["depth"][None]
    metrics.update(median_scaled(torch.ones_like(target), target), target)
print({k: round(float(v), 4) for k, v in metrics.compute().items()})
