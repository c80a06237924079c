"""Parameter counts and CPU training-step time of the reference networks, and the scene generation rate.

    python benchmarks/models_and_data.py [--size 128] [--batch 8] [--steps 10]

A step is forward, loss (cross-entropy on 6 classes), backward and an SGD update; the time is the
median over ``--steps`` steps after 2 warm-up steps. The scene rate is measured on one core.
"""

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from dejavu.data import SyntheticScenes
from dejavu.models import create_model


def step_time(model: torch.nn.Module, size: int, batch: int, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 6, (batch, size, size))
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x)[:, :6], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def scene_rate(size: int, n: int = 500) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ds = SyntheticScenes(n, size=(size, size))
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    torch.set_num_threads(threads)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    rows = []
    for name, out, kw in [("unet", 6, {}), ("segnet_mtl", [6, 1, 3], {}),
                          ("smp:Unet", 6, {"encoder": "resnet18"}), ("smp:FPN", 6, {"encoder": "tu-hrnet_w18"})]:
        torch.manual_seed(0)
        model = create_model(name, out, **kw)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"model": name, **kw, "params": params, "step_s": step_time(model, a.size, a.batch, a.steps)})
        print(f"{name:12s} {kw.get('encoder', ''):14s} {params / 1e6:7.2f} M params  "
              f"{rows[-1]['step_s'] * 1000:8.1f} ms/step ({a.batch}x3x{a.size}x{a.size}, "
              f"{torch.get_num_threads()} threads)")
    for size in (64, 128):
        rate = scene_rate(size)
        rows.append({"scenes_per_s": rate, "size": size})
        print(f"synthetic scenes {size}x{size}: {rate:.0f} images/s on one core")
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
                      "rows": rows}))


if __name__ == "__main__":
    main()
