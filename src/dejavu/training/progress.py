"""What ``dejavu fit`` shows while it runs: one bar for the whole run (plain lines in a log), a model
summary without an empty FLOPs column, and none of the noise (:func:`quiet`)."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table
from tqdm import tqdm

log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class RunProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, over the whole run instead of one epoch: ``epoch 6/10`` in its description,
    the run's batches as its total, so its ETA is the run's. When standard output is not a terminal
    (a CI log, ``nohup``), no bar is drawn; a plain line is printed every ``interval`` seconds and at
    each epoch's end instead of hundreds of redraws.

    Args:
        interval: seconds between two lines in a log.
        interactive: draw the bar (default: whether standard output is a terminal).
    """

    def __init__(self, interval: float = 30.0, interactive: bool | None = None) -> None:
        super().__init__()
        self.interval = interval
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._started, self._first, self._printed = 0.0, 0, 0.0

    def _run_total(self, trainer: L.Trainer) -> int | None:
        per_epoch = trainer.num_training_batches
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps * trainer.accumulate_grad_batches
        if per_epoch == float("inf") or not trainer.max_epochs or trainer.max_epochs < 0:
            return None
        return int(per_epoch) * trainer.max_epochs

    def _done(self, trainer: L.Trainer, batch_idx: int) -> int:
        return trainer.current_epoch * int(trainer.num_training_batches) + batch_idx + 1

    def _epochs(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}" + (f"/{trainer.max_epochs}" if trainer.max_epochs > 0 else "")

    @property
    def is_enabled(self) -> bool:  # every bar Lightning makes is created disabled in a log
        return super().is_enabled and self.interactive

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._first = trainer.current_epoch * int(trainer.num_training_batches) + trainer.fit_loop.epoch_loop.batch_idx
        self._started = self._printed = time.monotonic()
        self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(total=self._run_total(trainer))
        self.train_progress_bar.initial = self._first  # a resumed run's ETA counts only what is left
        self.train_progress_bar.n = self._first

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        self.train_progress_bar.set_description(self._epochs(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done = self._done(trainer, batch_idx)
        if self.interactive:
            if self._should_update(done, self.train_progress_bar.total or done):
                self.train_progress_bar.update(done - self.train_progress_bar.n)
                self.train_progress_bar.set_postfix(self.get_metrics(trainer, module))
            return
        now = time.monotonic()
        if now - self._printed >= self.interval or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._printed = now
            print(self._line(trainer, module, done, now), flush=True)

    def _line(self, trainer: L.Trainer, module: L.LightningModule, done: int, now: float) -> str:
        total = self._run_total(trainer)
        elapsed = now - self._started
        parts = [self._epochs(trainer), f"batch {done}" + (f"/{total} ({100 * done / total:.0f}%)" if total else "")]
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                  for k, v in self.get_metrics(trainer, module).items() if k != "v_num"]
        parts.append(f"elapsed {tqdm.format_interval(elapsed)}")
        if total and done > self._first:
            parts.append(f"eta {tqdm.format_interval(elapsed / (done - self._first) * (total - done))}")
        return "  ".join(parts)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.interactive:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, module))


class RunModelSummary(ModelSummary):
    """Lightning's model summary without its FLOPs column, which Lightning fills only for a module with an
    ``example_input_array`` (ours has none, whose size is the data's): a column of zeros otherwise."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int, **kwargs: Any) -> None:
        # Lightning's table formatter is private, with no public way to leave a column out; the quiet-fit
        # test (tests/training/test_training.py::test_fit_is_quiet_by_default) pins the table it prints
        columns = [c for c in summary_data if c[0] != "FLOPs" or total_flops]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, total_training_modes,
                                      total_flops, *columns)
        if not total_flops:
            table = table.rsplit("\n", 1)[0]  # "0 Total Flops"
        log.info("\n" + table)


class _Unwanted(logging.Filter):
    """Lightning's advertisement for its cloud logger, its "`Trainer.fit` stopped" line (the run's summary
    says how it ended) and its note that it keeps our model summary."""

    UNWANTED = ("💡 Tip", "`Trainer.fit` stopped", "Trainer already configured with model summary")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.UNWANTED)


KNOWN_WARNINGS = (  # deprecations inside Lightning and torchdata, an eval-mode LPIPS that is meant to be,
    ".*isinstance.treespec, LeafSpec.*",  # and Lightning's notes on what our run folders do by design
    "'set_vital' is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r"Checkpoint directory .* exists and is not empty",  # a resume: fit refuses other existing folders
    r"The dirpath has changed from",  # evaluating a checkpoint from another --run_dir
)


def quiet() -> None:
    """Silence what is noise to a ``dejavu`` user: the warnings in :data:`KNOWN_WARNINGS` and
    Lightning's log lines :class:`_Unwanted` names. Idempotent."""
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _Unwanted) for f in rank_zero.filters):
        rank_zero.addFilter(_Unwanted())
