"""Training throughput of the reference configs on this machine, and the share of step time spent
waiting for data, for the settings we choose between (channels-last, data workers, threads).

    python benchmarks/throughput.py [--steps 40] [--configs configs/synthetic/segmentation_baseline.yaml ...]

Each setting trains ``--steps`` steps (after 5 warm-up steps) through the real `dejavu` module and
data module; images/s counts the training steps only. The data wait is Lightning's SimpleProfiler
time in ``train_dataloader_next`` over the total of the timed steps.
"""

import argparse
import itertools
import json
import time

import lightning as L
import torch
import yaml

from dejavu.training import DejaVuModule, DenseDataModule


class Clock(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        self.end = time.perf_counter()


def measure(config: str, steps: int, channels_last: bool, workers: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    with open(config) as f:
        cfg = yaml.safe_load(f)
    model = DejaVuModule(**{**cfg["model"], "channels_last": channels_last})
    data = DenseDataModule(**{**cfg["data"], "num_workers": workers})
    clock, warmup = Clock(5), 5
    profiler = L.pytorch.profilers.SimpleProfiler()
    trainer = L.Trainer(max_steps=steps + warmup, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, profiler=profiler, accelerator="cpu",
                        callbacks=[clock])
    trainer.fit(model, data)
    seconds = clock.end - clock.start
    waits = profiler.recorded_durations.get("[_TrainingEpochLoop].train_dataloader_next", [])
    wait = sum(waits[warmup:])
    return {"config": config, "channels_last": channels_last, "workers": workers, "threads": threads,
            "images_per_s": steps * cfg["data"]["batch_size"] / seconds, "data_wait_share": wait / seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--configs", nargs="+", default=["configs/synthetic/segmentation_baseline.yaml",
                                                   "configs/synthetic/segmentation_dejavu.yaml"])
    a = p.parse_args()
    rows = []
    for config, cl, workers, threads in itertools.product(a.configs, (False, True), (0, 1), (1, 2)):
        rows.append(measure(config, a.steps, cl, workers, threads))
        r = rows[-1]
        print(f"{config:48s} channels_last={cl!s:5s} workers={workers} threads={threads}  "
              f"{r['images_per_s']:7.1f} images/s  data wait {100 * r['data_wait_share']:5.1f}%", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
