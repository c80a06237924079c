"""Callbacks the training tests put into real `dejavu` runs (importable as `helpers`)."""

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch


class DDPProbe(L.Callback):
    """Records, per rank, a hash of every training batch and a checksum of the final parameters."""

    def __init__(self, out: str) -> None:
        self.out, self.seen = Path(out), []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        for image in batch["image"]:
            self.seen.append(hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest())

    def on_fit_end(self, trainer, module) -> None:
        params = torch.cat([p.detach().flatten() for p in module.parameters()])
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "seen": self.seen, "params": params.double().sum().item(), "first": params[:5].tolist(),
            "world": trainer.world_size, "pid": os.getpid()}))


class InterruptAt(L.Callback):
    """Presses Ctrl-C (raises KeyboardInterrupt) at a given global step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


class KillAt(L.Callback):
    """SIGKILLs its own process at the end of a given global step: no handler, no clean-up, as a crash or
    an out-of-memory kill would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
