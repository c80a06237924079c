"""``dejavu fit``, ``validate`` and ``test`` through LightningCLI (YAML configs, ``--section.key value``
overrides), with a run folder per run; :func:`fit_run` is the same from Python."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from .callbacks import AtomicCheckpointIO, RunArtifacts
from .datamodule import DenseDataModule
from .module import DejaVuModule


class RunConfig(SaveConfigCallback):
    """Saves the resolved config as ``RUN_DIR/config.yaml`` (``config_test.yaml`` for ``test``)."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = Path(self.config["run_dir"])
        stage = getattr(stage, "value", stage)
        name = "config.yaml" if stage == "fit" else f"config_{stage}.yaml"
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, run_dir / name, overwrite=True, multifile=False)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class DejaVuCLI(LightningCLI):
    """LightningCLI for :class:`DejaVuModule` and :class:`DenseDataModule`, with a run folder per run."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        # `args` is how every dejavu command passes its arguments, which LightningCLI warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        super().__init__(
            DejaVuModule, DenseDataModule, save_config_callback=RunConfig, seed_everything_default=0,
            trainer_defaults={"precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
                              "max_epochs": 10, "log_every_n_steps": 10},
            args=args, run=run, auto_configure_optimizers=False,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # no `predict`: DejaVuModule has no prediction path yet (batches are dicts of targets too)
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run_dir", type=str, default="runs/default",
                            help="folder this run writes: config, checkpoints, logs, metrics, model, figure")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="replace an existing run folder (otherwise fit refuses to touch it)")
        parser.add_argument("--figure_images", type=int, default=4, help="validation images in figure.png")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI takes the model's hyperparameters from the checkpoint, so the network always
        # fits its weights; evaluation settings are the command line's, not the training run's.
        cfg = self.config.get(self.config.get("subcommand") or "", None)
        noise = cfg["model"]["test_noise"] if cfg is not None and "model" in cfg else None
        super()._parse_ckpt_path()
        if noise is not None:
            self.config[self.config.subcommand]["model"]["test_noise"] = noise

    def _prepare_run_dir(self, cfg: Any) -> Path:
        run_dir = Path(cfg["run_dir"])
        if self.subcommand != "fit":
            return run_dir
        ckpt = cfg.get("ckpt_path")
        if ckpt == "last" and not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise SystemExit(f"dejavu fit: --ckpt_path last, but {run_dir / 'checkpoints' / 'last.ckpt'} "
                             "does not exist: nothing to resume")
        if ckpt is None and run_dir.exists() and any(run_dir.iterdir()):
            if not cfg["overwrite"]:
                raise SystemExit(f"dejavu fit: run folder {run_dir} already exists. Pass --overwrite true to "
                                 "replace it, --ckpt_path last to resume it, or choose another --run_dir.")
            if int(os.environ.get("LOCAL_RANK", "0")) == 0:
                shutil.rmtree(run_dir)
        return run_dir

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run_dir = self._prepare_run_dir(cfg)
        monitor, mode = self.model.monitor
        user_callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        kwargs["callbacks"] = [*user_callbacks,
                               ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor,
                                               mode=mode, save_last=True, save_top_k=1,
                                               enable_version_counter=False, auto_insert_metric_name=False),
                               RunArtifacts(run_dir, cfg["figure_images"])]
        kwargs["logger"] = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
        kwargs["plugins"] = [AtomicCheckpointIO()]
        kwargs["default_root_dir"] = str(run_dir)
        return super().instantiate_trainer(**kwargs)


def fit_run(config: str | Path, run_dir: str | Path, *overrides: str) -> dict[str, Any]:
    """Run ``dejavu fit --config CONFIG --run_dir RUN_DIR OVERRIDES...`` in this process; return its metrics.json."""
    import json

    DejaVuCLI(args=["fit", "--config", str(config), "--run_dir", str(run_dir), *overrides])
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package, e.g. ``packaged_config("synthetic/segmentation_dejavu.yaml")``."""
    return Path(__file__).resolve().parent.parent / "configs" / name
