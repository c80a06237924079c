#!/usr/bin/env bash
# DejaVu's cost on one GPU, in about 5 minutes: what the issue "DejaVu at GPU speed" asks to be measured.
#
#   bash benchmarks/gpu.sh [OUT]          (OUT defaults to gpu_bench; needs `pip install -e .` and CUDA)
#
# 1. Training overhead on a ResNet-50 UNet (smp), 512x512, batch 8, 19 classes, fp32 (TF32) and bf16 autocast:
#    the baseline step against today's defaults (CRM-F 2 stages, CRM-R 20 norm-free fused steps; random blocks
#    b=32; LPIPS on, a random AlexNet) and against the options they replaced (CRM-R's batch-norm block,
#    checkpointed per step; the input checks with a device sync). Time, peak memory and their ratios.
# 2. The DejaVu loss alone at 8x19x512x512, forward and backward: wall and GPU busy time, GPU kernels
#    (torch.profiler), operators and host syncs (a TorchDispatchMode, and torch.cuda.set_sync_debug_mode),
#    for each CRM bare, with its checks and with LPIPS; the default LPIPS rows again with the regenerator
#    under torch.compile(mode="reduce-overhead"), i.e. captured in CUDA graphs; and the host syncs of
#    whole default training steps.
# Each part writes OUT/<part>/bench.md and bench.json; the tables are printed as they finish.
set -euo pipefail
out=${1:-gpu_bench}
# fp32 means PyTorch's defaults: TF32 in cuDNN's convolutions, full fp32 in matmuls
python - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.sh: no CUDA device")
print(torch.cuda.get_device_name(), "torch", torch.__version__)
PY
model="smp:Unet resnet50, 512x512"
variants="CRM-F 2 stages, random blocks;CRM-R 20 steps, random blocks;CRM-R 20 steps batch norm, random blocks"
variants+=";CRM-F 2 stages, random blocks, synced checks"
dejavu bench --only overhead --models "$model" --variants "$variants" --rounds 10 --out "$out/fp32"
dejavu bench --only overhead --models "$model" --variants "$variants" --rounds 10 --amp --out "$out/bf16"
# the compiled rows are last and bounded: a compiler failure is reported in the table's `error` column
timeout 240 dejavu bench --only loss --compile reduce-overhead --out "$out/loss" \
  || echo "benchmarks/gpu.sh: the loss section did not finish in 240 s (see $out/loss if it wrote anything)"
