"""Callbacks the training tests put into real `dejavu` runs (importable as `helpers`)."""

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

TESTS = Path(__file__).resolve().parent  # on PYTHONPATH for a subprocess that loads these callbacks
ROOT = TESTS.parent  # the checkout: README, docs, configs, benchmarks
CONFIGS = sorted(c for c in (ROOT / "configs").rglob("*.yaml") if c.name != "base.yaml")  # the shipped configs


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


class KillInValidation(L.Callback):
    """SIGKILLs its own process at the first validation batch after a given global step (during the
    validation of that step's epoch)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInExport(L.Callback):
    """SIGKILLs its own process at the end of training, after the n-th file of the run's results is
    written to its temporary name and before it is renamed into place."""

    def __init__(self, write: int) -> None:
        self.write = write

    def on_fit_end(self, trainer, module) -> None:  # runs before RunArtifacts', which writes the results
        from dejavu.training import callbacks

        original, calls = callbacks.atomic_write, []

        def atomic_write(path, write):
            calls.append(path)
            if len(calls) == self.write:
                return original(path, lambda tmp: (write(tmp), os.kill(os.getpid(), signal.SIGKILL)))
            return original(path, write)

        callbacks.atomic_write = atomic_write


class WorseningMetric(L.Callback):
    """Makes the monitored validation metric worse at every epoch, as the best-checkpoint callback sees it."""

    def setup(self, trainer, module, stage) -> None:
        name, mode = module.monitor
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                original = callback._monitor_candidates

                def candidates(trainer, original=original):
                    worse = float(trainer.current_epoch) * (1 if mode == "min" else -1)
                    return {**original(trainer), name: torch.tensor(worse)}

                callback._monitor_candidates = candidates


class HoldAtStart(L.Callback):
    """Writes ``marker`` when training starts, then sleeps: a run that is still running."""

    def __init__(self, marker: str, seconds: float = 120.0) -> None:
        self.marker, self.seconds = Path(marker), seconds

    def on_train_start(self, trainer, module) -> None:
        import time

        self.marker.write_text(str(os.getpid()))
        time.sleep(self.seconds)


class NoBestCheckpoint(L.Callback):
    """Keeps the best-checkpoint callback from writing, as when the monitored metric is never measured."""

    def setup(self, trainer, module, stage) -> None:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.save_top_k = 0
