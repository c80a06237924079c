"""Does the regenerator compile, and to the same numbers? ``torch.compile`` of CRM-F and CRM-R (its
fused steps included) against eager: values and gradients, and the compile time.

    python benchmarks/compile_regenerator.py [--mode reduce-overhead] [--device cuda]

``mode="reduce-overhead"`` captures the compiled code in CUDA graphs on a GPU (on a CPU it is the
default mode). A few minutes on 2 CPU cores, most of it compiling.
"""

import argparse
import time

import torch

from dejavu.regeneration import ForwardCRM, RecursiveCRM

p = argparse.ArgumentParser()
p.add_argument("--mode", default="default")
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
a = p.parse_args()
for crm in (ForwardCRM(4, width=8, init_scale=0.3), RecursiveCRM(4, steps=4, width=8, init_scale=0.3)):
    torch.manual_seed(0)
    crm = crm.to(a.device)
    r = torch.rand(2, 3, 16, 16, device=a.device)
    c = torch.rand(2, 4, 16, 16, device=a.device, requires_grad=True)
    results = []
    for fn in (crm, torch.compile(crm, mode=a.mode)):
        crm.zero_grad()
        c.grad = None
        start = time.perf_counter()
        out = fn(r, c)
        out.square().mean().backward()
        results.append((out.detach(), c.grad.clone(), crm.head.weight.grad.clone(), time.perf_counter() - start))
    (eager, *_), (compiled, *_) = results
    gaps = [(x - y).abs().max().item() for x, y in zip(results[0][:3], results[1][:3], strict=True)]
    print(f"{type(crm).__name__}: first compiled call {results[1][3]:.1f} s; largest difference in the output, "
          f"the condition's gradient, the projection's gradient: {gaps}")
    assert all(g < 1e-4 for g in gaps), gaps
