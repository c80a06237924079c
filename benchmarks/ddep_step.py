"""CPU step time of DDeP pretraining on TransUNet R50+ViT-B/16 (2x3x256x256, random weights): the decoder
only (encoder frozen, the paper's DDeP) against the whole network (denoising pretraining of both).

    python benchmarks/ddep_step.py
"""

import statistics
import time

import torch

from dejavu.training.module import DejaVuModule


def step_seconds(frozen: list[str], rounds: int = 3) -> tuple[float, float]:
    """Millions of trained parameters, and the median step time after one warm-up."""
    module = DejaVuModule({"name": "transunet", "normalize": "inception"}, {"name": "denoising", "gamma": 0.9},
                          frozen=frozen)
    optimizer = module.configure_optimizers()["optimizer"]
    module.log = module.log_dict = lambda *a, **k: None
    module.train()
    batch = {"image": torch.rand(2, 3, 256, 256)}
    times = []
    for i in range(rounds + 1):
        t = time.perf_counter()
        loss = module.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t)
    return sum(p.numel() for p in module.net.parameters() if p.requires_grad) / 1e6, statistics.median(times[1:])


if __name__ == "__main__":
    torch.manual_seed(0)
    for frozen in (["encoder"], []):
        trained, seconds = step_seconds(frozen)
        print(f"frozen={frozen}: {trained:.1f} M trained, {seconds:.2f} s a step (median of 3 after a warm-up)")
