"""What a synthetic panoptic run learnt, part by part: the share of pixels it calls things, how high its
centre heatmap peaks, how far its offsets are from the true ones, and its PQ over a grid of the
grouping's threshold and NMS kernel. On the 64 validation scenes of configs/synthetic/panoptic_*.yaml
(64x64, scene seed 1: the data module's validation seed for seed 0).

    python benchmarks/panoptic_diagnose.py RUN_DIR
"""

import sys

import torch
from torch.utils.data import default_collate

from dejavu.cli.deploy import load_run
from dejavu.data import SyntheticScenes
from dejavu.tasks import Panoptic
from dejavu.tasks.panoptic import instance_centres

net, task, meta = load_run(sys.argv[1])
dataset = SyntheticScenes(64, size=(64, 64), seed=1)
batch = default_collate([dataset[i] for i in range(len(dataset))])
with torch.no_grad():
    raw = net(batch["image"])
c = task.num_classes
heat, offsets, thing = instance_centres(batch["instance"], task.sigma)
things = torch.tensor(task.things)
print(f"thing pixels: predicted {torch.isin(raw[:, :c].argmax(1), things).float().mean():.3f}, "
      f"true {torch.isin(batch['semantic'], things).float().mean():.3f}")
peaks = raw[:, c].amax((1, 2))
print(f"heatmap peak per image: {peaks.min():.2f}-{peaks.max():.2f} (true: {heat.amax((1, 2, 3)).min():.2f}-1)")
error, size = (((x * thing).abs()).sum() / (2 * thing.sum()) for x in (raw[:, c + 1:] - offsets, offsets))
print(f"offset L1 error on thing pixels {error:.4f}, true offsets' mean size {size:.4f}")
for threshold in (0.1, 0.2, 0.3, 0.5):
    for kernel in (3, 5, 7, 9):
        grouped = Panoptic(c, task.things, task.ignore_index, sigma=task.sigma, threshold=threshold, nms_kernel=kernel)
        m = grouped.compute_metrics(raw, batch)
        print(f"threshold {threshold} NMS {kernel}: PQ {m['PQ']:.4f}, things {m['PQ_th']:.4f}")
