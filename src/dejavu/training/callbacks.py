"""What every run leaves in its folder: atomic checkpoints, metrics.json, the inference model, a figure."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch.utils.data import DataLoader

from ..data import distinct_palette
from ..weights import read_file, write_safetensors
from .datamodule import class_names
from .figures import confusion_figure, module_figure, per_class_iou
from .module import attached_trainer


class AtomicCheckpointIO(CheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into place, so
    a crash or Ctrl-C never leaves a half-written checkpoint. Loads with :func:`read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:  # open(), not mkstemp: the file's mode follows the umask (not 0600)
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())

        atomic_write(path, write)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        checkpoint = read_checkpoint(path)  # on the CPU: loading the state moves it to the model's device
        checkpoint["dejavu_source"] = str(path)
        return checkpoint

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint (``RUN/checkpoints/*.ckpt``), read with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an exported network (``model.safetensors``, ``model.pt``) in its place, a file that
            cannot be read (truncated...), or one that is not a Lightning checkpoint; each names the file.
    """
    path = Path(path)
    if path.suffix == ".safetensors" or path.name == "model.pt":
        raise ValueError(f"{path} is an exported network, not a training checkpoint: --ckpt_path takes "
                         f"RUN/checkpoints/best.ckpt or last.ckpt; to evaluate or start from exported weights, "
                         f"pass --model.pretrained {path}")
    checkpoint = read_file(path, "checkpoint")
    if not isinstance(checkpoint, dict) or not {"state_dict", "pytorch-lightning_version"} <= checkpoint.keys():
        raise ValueError(f"checkpoint {path} is not a Lightning training checkpoint (it has no state_dict and "
                         "pytorch-lightning_version); --ckpt_path takes RUN/checkpoints/best.ckpt or last.ckpt, "
                         "--model.pretrained takes a network's weights")
    return checkpoint


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename); NaN and Inf become ``null``, so the file is
    always valid JSON."""
    text = json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: a kill leaves
    the old file or the new one, never half of one, and no temporary file once ``write`` fails."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix kept: savefig reads the format from it
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:  # the user asked for `path`: the hidden name would only confuse
        if e.filename is None or Path(e.filename) != tmp:
            raise
        raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def file_in_the_way(path: Path) -> Path | None:
    """The first folder above ``path`` that exists as a file (nothing can be written under it), if any."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def export_inference_model(module, run_dir: Path) -> dict[str, Path]:
    """Save the base network alone (no CRM, no LPIPS): ``model.safetensors``, ``model.pt`` (a plain
    state dict for ``torch.load(weights_only=True)``) and ``model.json`` (how to rebuild it)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.net.state_dict().items()}
    paths = {"safetensors": run_dir / "model.safetensors", "pt": run_dir / "model.pt", "json": run_dir / "model.json"}
    atomic_write(paths["safetensors"], lambda tmp: write_safetensors(state, tmp))
    atomic_write(paths["pt"], lambda tmp: torch.save(state, tmp))
    hp = module.hparams
    write_json(paths["json"], {"network": dict(hp.network), "task": dict(hp.task),
                               "parameters": sum(v.numel() for v in module.net.parameters()),
                               **data_facts(getattr(attached_trainer(module), "datamodule", None))})
    return paths


def data_facts(datamodule: Any) -> dict[str, Any]:
    """What ``dejavu predict`` needs to know of the data: the size the network saw at evaluation
    (``input_size``; ``None``: each image's own) and the dataset's class names and palette."""
    if datamodule is None or not hasattr(datamodule, "dataset_class"):
        return {}
    classes = class_names(datamodule.dataset_class, datamodule.init_args)
    palette = getattr(datamodule.dataset_class, "palette", None)
    palette = palette or (distinct_palette(len(classes)) if classes else None)
    return {"input_size": datamodule.eval_size(), "classes": classes,
            "palette": [list(c) for c in palette] if palette else None}


def class_report(module) -> dict[str, Any]:
    """Each segmentation task's per-class IoU (``{"val/IoU": {class: IoU}}``, ``null`` for a class neither
    present nor predicted) and confusion matrix (``{"val/confusion": {"classes": [...], "matrix": rows}}``,
    rows the true class, columns the predicted one) from the module's last evaluation; empty for tasks
    without classes."""
    iou, confusion = {}, {}
    tasks = {t.name: t for t in getattr(module.task, "tasks", [module.task])}
    for key, matrix in getattr(module, "arrays", {}).items():
        if not key.endswith("confusion"):
            continue
        parts = key.split("/")
        task = tasks.get(parts[1]) if len(parts) == 3 else module.task
        names = getattr(task, "class_names", None) or [f"class{i}" for i in range(matrix.shape[0])]
        values = per_class_iou(matrix.numpy())
        iou[key.replace("confusion", "IoU")] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, values,
                                                                                                     strict=True)}
        confusion[key] = {"classes": list(names), "matrix": matrix.long().tolist()}  # rows and columns in order
    return {"iou": iou, "confusion": confusion} if iou else {}


def run_summary(run_dir: Path, trainer: L.Trainer, module, last: dict[str, Any], best: dict[str, Any],
                weights: str, written: list[str], seconds: float) -> str:
    """What ``dejavu fit`` prints when it ends: where the run is, its monitored metric at the last and
    the best epoch, reliance, wall time, and which weights it exported to which files."""
    name, _ = module.monitor

    def score(at: dict[str, Any]) -> str:
        value = at.get("val", {}).get(name)
        return f"{value:.4f} (epoch {at['epoch']})" if value is not None else "not measured"

    max_epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
    lines = [f"dejavu fit: done in {_duration(seconds)}: {run_dir}",
             f"  {trainer.current_epoch}{max_epochs} epochs, {trainer.global_step} steps",
             f"  {name}: last {score(last)}, best {score(best)}"]
    reliance = last.get("val", {}).get("val/reliance")
    if reliance is not None:
        lines.append(f"  val/reliance: {reliance:.4f} (how much better the CRM regenerates from the prediction "
                     "than from a blank condition)")
    lines.append(f"  wrote, from the {weights} epoch's weights: {', '.join(written)}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def evaluation_name(split: str, noise: float = 0.0, inference: dict[str, Any] | None = None) -> str:
    """The evaluation setting as part of a file name, so evaluations with different settings write
    different files: ``val``, ``test_noise0.3``, ``val_scales0.75-1-1.25_flip_window512x1024``.

    Example:
        >>> evaluation_name("val", 0.0, {"scales": [0.5, 1.0], "flip": True})
        'val_scales0.5-1_flip'
    """
    parts = [split] + ([f"noise{noise:g}"] if noise else [])
    spec = inference or {}
    if spec.get("scales") is not None and list(spec["scales"]) != [1]:
        parts.append("scales" + "-".join(f"{s:g}" for s in spec["scales"]))
    if spec.get("flip"):
        parts.append("flip")
    for key in ("window", "stride"):
        if spec.get(key) is not None:
            parts.append(key + "x".join(str(int(v)) for v in spec[key]))
    return "_".join(parts)


def test_metrics_name(split: str, noise: float = 0.0, inference: dict[str, Any] | None = None) -> str:
    """The file ``dejavu test`` writes its metrics to: ``test_metrics_<split>[_noise<σ>][_<views>].json``
    (see :func:`evaluation_name`)."""
    return f"test_metrics_{evaluation_name(split, noise, inference)}.json"


def _floats(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def spread_batch(dataset, n: int) -> dict[str, Any]:
    """``n`` items spread evenly over ``dataset`` (neighbouring video frames look alike), as one batch;
    targets kept at native resolution are resized (nearest) to their image, to be shown beside it."""
    count = min(n, len(dataset))
    indices = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
    return next(iter(DataLoader([_at_image_size(dataset[i]) for i in indices], batch_size=count)))


def _at_image_size(item: dict[str, Any]) -> dict[str, Any]:
    size = item["image"].shape[-2:]
    out = dict(item)
    for key, value in item.items():
        if key != "image" and isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[-2:] != size:
            grid = value[None, None] if value.dim() == 2 else value[None]
            resized = F.interpolate(grid.float(), size=tuple(size), mode="nearest")
            out[key] = (resized[0, 0] if value.dim() == 2 else resized[0]).to(value.dtype)
    return out


class RandomState(L.Callback):
    """Saves the global random generators (torch, CUDA, Python) in every checkpoint and restores them
    just before the first training step after a resume, so redaction masks, augmentation and dropout
    continue exactly as in the run that was stopped (whatever the sanity check and the loaders drew
    in between)."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, module, batch: Any, batch_idx: int) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["torch"])
        random.setstate(self.pending["python"])
        if "cuda" in self.pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.pending["cuda"])
        self.pending = None


class LastCheckpoint(Checkpoint):
    """``checkpoints/last.ckpt``: written after every epoch (its validation included) and, with
    ``every_n_steps``, every N training steps within an epoch, so ``--ckpt_path last`` resumes from
    the latest state whatever the monitored metric did.

    The step save is skipped at an epoch's last batch: the epoch-end save follows its validation, and
    a state taken between the two would resume past the validation and lose the epoch's metrics.
    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs it after the other callbacks
    and the checkpoint holds their state as of this step (the best checkpoint's score included).
    """

    def __init__(self, path: str | Path, every_n_steps: int = 0) -> None:
        self.path, self.every_n_steps, self.saved_step = Path(path), every_n_steps, -1

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step  # with gradient accumulation, several batches end at one step: save once
        if (self.every_n_steps and step % self.every_n_steps == 0 and step > self.saved_step
                and step > 0 and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch):
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved_step = step

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state: a resume continues from it


class RunArtifacts(L.Callback):
    """At the end of ``fit``: the exported inference model, ``crm.safetensors`` (the CRM's weights, in
    a DejaVu run), ``figure.png`` and, last, ``metrics.json``, whose presence says the run finished;
    then a summary on standard output. At the end of ``test``: ``test_metrics.json``. Written by rank 0.

    ``weights`` picks what is exported: ``"last"`` (the end of the schedule, the paper's practice) or
    ``"best"`` (the best monitored validation score, from ``checkpoints/best.ckpt``; chosen on the
    validation split, so its validation metrics flatter it). ``metrics.json`` holds the exported
    weights' validation metrics as ``val``, and both the last and the best epoch's.

    The last validation metrics travel in the checkpoints (``best.ckpt`` holds its epoch's), so resuming
    a run killed after its training (while exporting) writes the same files as the run not killed."""

    def __init__(self, run_dir: str | Path, figure_images: int = 4, weights: str = "last") -> None:
        if weights not in ("last", "best"):
            raise ValueError(f"--export_weights must be 'last' or 'best', got {weights!r}")
        self.run_dir, self.figure_images, self.weights = Path(run_dir), figure_images, weights
        self.last: dict[str, Any] = {}
        self.started = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        return {"last": dict(self.last)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))

    def on_fit_start(self, trainer: L.Trainer, module) -> None:
        self.started = time.monotonic()
        every = trainer.check_val_every_n_epoch
        never = trainer.limit_val_batches == 0 or (every is not None and trainer.max_epochs is not None
                                                   and 0 <= trainer.max_epochs < every)
        if self.weights == "best" and never:  # the weights would be the last ones, labelled best
            raise ValueError("--export_weights best picks the epoch of the best validation score, and this run never "
                             "validates (--trainer.limit_val_batches 0, or --trainer.check_val_every_n_epoch above "
                             "--trainer.max_epochs): export the last weights (--export_weights last) or validate")

    def on_validation_end(self, trainer: L.Trainer, module) -> None:
        if trainer.sanity_checking:
            return
        self.last = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
                     "val": _floats(trainer.callback_metrics, "val/"), **class_report(module)}
        if isinstance(trainer.logger, TensorBoardLogger) and trainer.is_global_zero and self.figure_images > 0:
            self._tensorboard_figure(trainer, module)

    def _tensorboard_figure(self, trainer: L.Trainer, module) -> None:
        """figure.png of this validation, as an image in TensorBoard (``val/figure``)."""
        with tempfile.TemporaryDirectory() as folder, torch.random.fork_rng(devices=[]):  # the run's random stream
            path = Path(folder) / "figure.png"  # untouched, so a resumed run stays exact
            self._figure(trainer, module, path)
            if path.is_file():
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                trainer.logger.experiment.add_image("val/figure", pixels, trainer.global_step, dataformats="HWC")

    def _figure(self, trainer: L.Trainer, module, path: Path) -> None:
        loader = trainer.datamodule.val_dataloader() if trainer.datamodule else None
        if loader is None or self.figure_images <= 0:
            return
        batch = spread_batch(loader.dataset, self.figure_images)
        palette = data_facts(trainer.datamodule).get("palette")
        atomic_write(path, lambda tmp: module_figure(module, batch, tmp, palette=palette))

    def on_fit_end(self, trainer: L.Trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        best_file, best, weights = self.run_dir / "checkpoints" / "best.ckpt", {}, self.weights
        if best_file.is_file():  # the best checkpoint holds this callback's state of its own epoch
            checkpoint = read_checkpoint(best_file)
            best = checkpoint.get("callbacks", {}).get(self.state_key, {}).get("last", {})
            if weights == "best":
                module.load_state_dict(checkpoint["state_dict"])
        elif weights == "best":  # no validation score was ever finite: say which weights these are
            print(f"dejavu fit: no best checkpoint ({best_file}: the monitored {module.monitor[0]} was never "
                  "measured or never finite), so the last weights are exported, and labelled so", flush=True)
            weights = "last"
        exported = best if weights == "best" else self.last
        written = self._write_results(trainer, module, exported)
        per_class = {f"{key}/{name}": value for key, table in exported.get("iou", {}).items()
                     for name, value in table.items()}  # val/IoU/road, beside val/mIoU
        write_json(self.run_dir / "metrics.json", {
            "val": {**exported.get("val", {}), **per_class}, "weights": weights, "epochs": trainer.current_epoch,
            "steps": trainer.global_step, "dejavu": module.dejavu_loss is not None, "last": self.last,
            "best": best, "monitor": module.monitor[0],
        })
        print(run_summary(self.run_dir, trainer, module, self.last, best, weights, [*written, "metrics.json"],
                          time.monotonic() - self.started), flush=True)

    def _write_results(self, trainer: L.Trainer, module, exported: dict[str, Any]) -> list[str]:
        """Everything but metrics.json; the names written."""
        written = [p.name for p in export_inference_model(module, self.run_dir).values()]
        if module.dejavu_loss is not None:  # the CRM, for DejaVuLoss(regenerator_weights=...) in a later run
            crm = module.dejavu_loss.regenerator.state_dict()
            crm = {k: v.detach().cpu().contiguous() for k, v in crm.items()}
            atomic_write(self.run_dir / "crm.safetensors", lambda tmp: write_safetensors(crm, tmp))
            written.append("crm.safetensors")
        self._figure(trainer, module, self.run_dir / "figure.png")
        written += ["figure.png"] if (self.run_dir / "figure.png").is_file() else []
        for key, table in exported.get("confusion", {}).items():  # val/confusion, val/segmentation/confusion
            name = key.replace("/", "_").replace("val_", "", 1) + ".png"
            atomic_write(self.run_dir / name, lambda tmp, t=table, k=key: confusion_figure(
                np.array(t["matrix"]), t["classes"], tmp, f"{k}, epoch {exported['epoch']}"))
            written.append(name)
        return written

    def on_test_end(self, trainer: L.Trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        split, noise, inference = module.evaluated_split, module.hparams.test_noise, module.hparams.inference
        write_json(self.run_dir / test_metrics_name(split, noise, inference), {
            "split": split, "noise": noise, "inference": dict(inference) if inference else None,
            "metrics": _floats(trainer.callback_metrics, f"{split}/"), **class_report(module)})
