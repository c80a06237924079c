"""Where a DejaVu training step spends its time: torch.profiler over a few steps, top operators.

    python benchmarks/profile_step.py [--variant "CRM-R 20 steps, band-stop"] [--size 128] [--batch 8]
"""

import argparse

import torch
from bench import VARIANTS, TrainStep  # benchmarks/bench.py, beside this script
from torch.profiler import ProfilerActivity, profile

from dejavu.models import create_model

p = argparse.ArgumentParser()
p.add_argument("--variant", default="CRM-F 2 stages, random blocks", choices=list(VARIANTS))
p.add_argument("--size", type=int, default=128)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--no-lpips", dest="lpips", action="store_false")
p.add_argument("--rows", type=int, default=18)
a = p.parse_args()
torch.manual_seed(0)
device = torch.device("cpu")
step = TrainStep(create_model("unet", 19), 19, VARIANTS[a.variant], device, amp=False, lpips=a.lpips)
x, y = torch.rand(a.batch, 3, a.size, a.size), torch.randint(0, 19, (a.batch, a.size, a.size))
for _ in range(2):
    step(x, y)
with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
    for _ in range(3):
        step(x, y)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))
