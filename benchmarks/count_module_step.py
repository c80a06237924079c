"""Operators and host syncs of one `dejavu fit` training step (DejaVuModule.training_step and its backward, after a
warm-up step; UNet width 8, CRM-F, checkerboard, LPIPS off, 2x3x64x64), counted by the bench's OpCounter.

    python benchmarks/count_module_step.py                          # this checkout
    PYTHONPATH=<other checkout>/src python benchmarks/count_module_step.py   # another version
"""
import warnings

import torch
from opcount import OpCounter  # beside this script

from dejavu.training.module import DejaVuModule

warnings.filterwarnings("ignore")
torch.manual_seed(0)
module = DejaVuModule(network={"name": "unet", "width": 8, "depth": 2}, task={"name": "segmentation", "num_classes": 6},
                      dejavu={"redaction": {"name": "checkerboard", "block_size": 8}, "regenerator": "forward",
                              "lpips_weight": 0.0})
batch = {"image": torch.rand(2, 3, 64, 64), "semantic": torch.randint(0, 6, (2, 64, 64))}
module.training_step(batch, 0)
module.zero_grad(set_to_none=True)
with OpCounter() as counter:
    module.training_step(batch, 1).backward()
print("operators", counter.kernels, "host syncs", counter.syncs)
