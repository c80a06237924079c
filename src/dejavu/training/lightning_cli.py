"""``dejavu fit``, ``validate`` and ``test`` through LightningCLI (YAML configs, ``--section.key value``
overrides), with a run folder per run; :func:`fit_run` is the same from Python.

A config may name the config it extends with a top-level ``base: FILE`` (relative to its own folder):
``--config dejavu.yaml`` then reads as ``--config baseline.yaml --config dejavu.yaml``, LightningCLI's
own composition, where later files override earlier ones key by key. So a DejaVu config holds only
what DejaVu adds, and still runs on its own.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from filelock import FileLock, Timeout
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from ..arguments import matches
from ..tasks import TASKS
from .callbacks import (
    AtomicCheckpointIO,
    LastCheckpoint,
    RandomState,
    RunArtifacts,
    evaluation_name,
    file_in_the_way,
    read_checkpoint,
    test_metrics_name,
)
from .datamodule import DenseDataModule, class_names, dataset_class
from .module import DejaVuModule
from .parser import DejaVuArgumentParser
from .progress import RunModelSummary, RunProgressBar, quiet


class RunConfig(SaveConfigCallback):
    """Saves the resolved config as ``RUN_DIR/config.yaml`` (``config_test.yaml`` for ``test``), with
    :func:`save_config`."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = Path(self.config["run_dir"])
        stage = getattr(stage, "value", stage)
        if stage == "fit":
            name = "config.yaml"
        else:  # one file per evaluation setting, as its metrics
            split = trainer.datamodule.hparams.split if stage == "test" else trainer.datamodule.hparams.val_split
            hp = pl_module.hparams
            name = f"config_{stage}_{evaluation_name(split, hp.test_noise, hp.inference)}.yaml"
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.parser, self.config, run_dir / name)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


COMMAND_SETTINGS = ("ckpt_path", "weights_only")  # how this command ran, not what the run is


def save_config(parser: Any, config: Any, path: Path) -> None:
    """Write a resolved config so that ``--config PATH`` alone gives the same config back: every key,
    ``null`` values included (a dropped ``data.size: null`` read back as the default 64x64), no
    ``base:`` (it is already resolved into the values), and none of :data:`COMMAND_SETTINGS`."""
    config = config.clone()
    config["base"] = None
    for key in COMMAND_SETTINGS:
        if key in config:
            del config[key]
    try:
        parser.save(config, path, overwrite=True, multifile=False, skip_unset=False)
    except TypeError:  # jsonargparse before 4.49 calls it skip_none
        parser.save(config, path, overwrite=True, multifile=False, skip_none=False)


# model settings that change how a trained network is evaluated, not the network: an evaluation from a
# checkpoint takes them from the command line (or config), every other model setting from the checkpoint
EVALUATION_SETTINGS = ("test_noise", "inference", "channels_last")


def _saved_value(saved: dict[str, Any], key: str) -> Any:
    """The value of a dotted ``key`` in a checkpoint's nested hyperparameters; ``None`` where it has none (a
    ``model.dejavu.lpips_weight`` of a baseline's checkpoint, whose ``dejavu`` is ``None``)."""
    node: Any = saved
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return list(node) if isinstance(node, tuple) else node


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": value}``; tuples read as lists, so values compare as YAML writes them."""
    if not isinstance(d, dict):
        return {prefix[:-1]: list(d) if isinstance(d, tuple) else d} if prefix else {}
    return {k: v for key, value in d.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


class DejaVuCLI(LightningCLI):
    """LightningCLI for :class:`DejaVuModule` and :class:`DenseDataModule`, with a run folder per run."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        # `args` is how every dejavu command passes its arguments, which LightningCLI warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        quiet()
        args = expand_bases(list(args) if args is not None else sys.argv[1:])
        self._lock: FileLock | None = None  # the run folder's, held while fit runs (see lock_run_dir)
        try:
            super().__init__(
                DejaVuModule, DenseDataModule, save_config_callback=RunConfig, seed_everything_default=0,
                trainer_defaults={"precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
                                  "max_epochs": 10, "log_every_n_steps": 10},
                args=args, run=run, auto_configure_optimizers=False, parser_class=DejaVuArgumentParser,
            )
        finally:  # finished or failed: the next run (in this process too: fit_run, compare) may take the folder
            if self._lock is not None:
                self._lock.release()

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # no `predict`: DejaVuModule has no prediction path yet (batches are dicts of targets too)
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run_dir", type=str, default="runs/default",
                            help="folder this run writes: config, checkpoints, logs, metrics, model, figure")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="fit: replace an existing run folder; test: replace its test_metrics file (otherwise "
                                 "both refuse)")
        parser.add_argument("--figure_images", type=int, default=4, help="validation images in figure.png")
        parser.add_argument("--export_weights", type=Literal["last", "best"], default="last",
                            help="the weights model.safetensors, metrics.json's val, predict and export use: last "
                                 "(the end of the schedule) or best (checkpoints/best.ckpt, the best monitored "
                                 "validation score; picked on the validation split, so its val metrics flatter it)")
        parser.add_argument("--last_every_n_steps", type=int, default=0,
                            help="also write checkpoints/last.ckpt every N training steps (0: at epoch ends only); "
                                 "a resumed run continues exactly where it stopped either way")
        parser.add_argument("--offline", type=bool, default=False,
                            help="forbid downloading pretrained weights (LPIPS, CLIP, encoders): the same as "
                                 "DEJAVU_OFFLINE=1; a missing file is then an error that names it")
        parser.add_argument("--base", type=str | None, default=None,
                            help="a config file's key only (base: FILE, the config it extends, read before it); "
                                 "on the command line give --config BASE.yaml --config FILE.yaml")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg["offline"]:  # read by every loader of pretrained weights (dejavu.weights.is_offline)
            os.environ["DEJAVU_OFFLINE"] = "1"
        fill_class_counts(cfg["model"]["task"], cfg["data"]["dataset"])
        task = cfg["model"]["task"] or {}
        if cfg["data"].get("partial_labels") and (task.get("name") != "multitask" or len(task.get("tasks", [])) < 2):
            # the dataset's other targets would take the labels of the one task this run trains
            raise SystemExit(f"dejavu: data.partial_labels {cfg['data']['partial_labels']!r} keeps one task's labels "
                             f"per image, and this run trains the single task {task.get('name')!r}: most images would "
                             "lose its labels. Use a multitask model.task, or data.label_fraction to train on a "
                             "subset of labelled images")

    def _parse_ckpt_path(self) -> None:
        # Lightning's own (private: it has no public hook for how a checkpoint's hyperparameters meet the
        # command line) lets the checkpoint's win over every setting. Ours, with LightningCLI's private
        # `_parser(sub)` for the subcommand's defaults, is pinned by tests/training/test_training.py
        # (test_an_evaluation_from_a_checkpoint_uses_the_views_it_is_given and the clashes test).
        # LightningCLI builds the network from the checkpoint's hyperparameters, so it always fits its
        # weights. A setting the config states that the checkpoint contradicts is an error: it would
        # otherwise be dropped without a word. Evaluation settings are the command line's.
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else None
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if ckpt is None or ckpt in ("best", "hpc", "registry"):
            return
        path = Path(cfg["run_dir"]) / "checkpoints" / "last.ckpt" if ckpt == "last" else Path(ckpt)
        if ckpt == "last" and not path.is_file():
            return  # _prepare_run_dir says there is nothing to resume
        try:
            saved = read_checkpoint(path).get("hyper_parameters") or {}
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"dejavu {sub}: --ckpt_path: {e}") from None
        saved = {k: v for k, v in saved.items() if k not in ("_instantiator", "_class_path")}
        if not saved:  # a checkpoint from elsewhere: loading its weights names what does not fit
            return
        given, default = (_flat(ns.as_dict()) for ns in (cfg["model"], self._parser(sub).get_defaults()["model"]))
        stated = {k: v for k, v in given.items() if k not in default or default[k] != v}
        clashes = [f"model.{k}: checkpoint {_saved_value(saved, k)!r}, config {v!r}" for k, v in stated.items()
                   if k.split(".")[0] not in EVALUATION_SETTINGS and _saved_value(saved, k) != v]
        if clashes:
            raise SystemExit(f"dejavu {sub}: the checkpoint {path} was trained with other settings than the config "
                             f"states: {'; '.join(clashes)}. A checkpoint's network is evaluated as it was trained: "
                             f"pass the run's own config (--config RUN/config.yaml) or give the checkpoint's values; "
                             f"settings left at their defaults come from the checkpoint. Only "
                             f"{', '.join('model.' + k for k in EVALUATION_SETTINGS)} may differ.")
        evaluation = {k: cfg["model"][k] for k in EVALUATION_SETTINGS}
        self.config = self.parser.parse_object({sub: {"model": saved}}, self.config)
        for k, v in evaluation.items():
            self.config[sub]["model"][k] = v

    def _prepare_run_dir(self, cfg: Any) -> Path:
        run_dir = Path(cfg["run_dir"])
        if self.subcommand != "fit":
            if self.subcommand and cfg.get("ckpt_path") is None and not self.model.hparams.pretrained:
                raise SystemExit(f"dejavu {self.subcommand}: no weights to evaluate, the network would be randomly "
                                 f"initialised; pass --ckpt_path RUN/checkpoints/last.ckpt (or --model.pretrained "
                                 f"RUN/model.safetensors)")
            hp = self.model.hparams
            results = run_dir / test_metrics_name(self.datamodule.hparams.split, hp.test_noise, hp.inference)
            if self.subcommand == "test" and results.exists() and not cfg["overwrite"]:
                raise SystemExit(f"dejavu test: {results} exists; pass --overwrite true to replace it, or give another "
                                 "--run_dir for this evaluation's files")
            return run_dir
        if run_dir.exists() and not run_dir.is_dir():
            raise SystemExit(f"dejavu fit: --run_dir {run_dir} is a file, not a folder; choose another --run_dir")
        blocking = file_in_the_way(run_dir)
        if blocking is not None:
            raise SystemExit(f"dejavu fit: --run_dir {run_dir} lies under {blocking}, which is a file, not a folder; "
                             "choose another --run_dir")
        ckpt, last = cfg.get("ckpt_path"), run_dir / "checkpoints" / "last.ckpt"
        rank0 = int(os.environ.get("LOCAL_RANK", "0")) == 0
        if ckpt == "last" and not last.is_file():
            raise SystemExit(f"dejavu fit: --ckpt_path last, but {last} does not exist: nothing to resume")
        if ckpt == "last":  # the file itself: Lightning's "last" looks for its own ModelCheckpoint's files
            cfg["ckpt_path"] = str(last)
        if rank0:  # the other ranks of a DDP run are this run's own processes
            self._lock = lock_run_dir(run_dir)
        if ckpt is None and run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
            # a start that failed before its first checkpoint (a bad --data.root...) holds nothing to keep
            finished_or_saved = (run_dir / "metrics.json").exists() or any(run_dir.glob("checkpoints/*.ckpt"))
            if finished_or_saved and not cfg["overwrite"]:
                resume = " or --ckpt_path last to resume it" if last.is_file() else ""
                raise SystemExit(f"dejavu fit: run folder {run_dir} already exists. Pass --overwrite true to "
                                 f"replace it{resume}, or choose another --run_dir.")
            if rank0:
                _empty(run_dir)
        if rank0:  # what a kill left half-written: the checkpoint it belonged to was never renamed into place
            for tmp in run_dir.glob("**/.*.tmp*"):
                tmp.unlink(missing_ok=True)
        return run_dir

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run_dir = self._prepare_run_dir(cfg)
        monitor, mode = self.model.monitor
        trainer_cfg = cfg.get("trainer") or {}
        user_callbacks = trainer_cfg.get("callbacks") or []
        kwargs["callbacks"] = [*user_callbacks,
                               ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor,
                                               mode=mode, save_top_k=1, enable_version_counter=False,
                                               auto_insert_metric_name=False),
                               LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg["last_every_n_steps"]),
                               RandomState(), RunArtifacts(run_dir, cfg["figure_images"], cfg["export_weights"])]
        shown = trainer_cfg.get("enable_progress_bar") in (None, True)
        if shown and not any(isinstance(c, ProgressBar) for c in kwargs["callbacks"]):
            kwargs["callbacks"].append(RunProgressBar())
        summary = trainer_cfg.get("enable_model_summary") in (None, True)
        if summary and not any(isinstance(c, ModelSummary) for c in kwargs["callbacks"]):
            kwargs["callbacks"].append(RunModelSummary())
        if trainer_cfg.get("logger") in (None, True):  # the user's logger(s) stay; TensorBoard is the default
            kwargs["logger"] = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="",
                                                 default_hp_metric=False)  # no hp_metric of -1
        if trainer_cfg.get("logger") is not False:  # the schedule drives the learning rate to 0: show it
            kwargs["callbacks"].append(LearningRateMonitor(logging_interval="step"))
        plugins = trainer_cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):  # atomic checkpoints unless the user has own
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        kwargs["default_root_dir"] = str(run_dir)
        return super().instantiate_trainer(**kwargs)


LOCK = ".lock"


def lock_run_dir(run_dir: Path) -> FileLock:
    """Hold ``RUN_DIR/.lock`` (an OS file lock, released when the process ends, however it ends) for a
    run's lifetime, so a second run started in the same folder is refused instead of deleting or
    overwriting the files of the first while it runs.

    Raises:
        SystemExit: another process holds the folder.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SystemExit(f"dejavu fit: run folder {run_dir} is in use by another dejavu run (it holds "
                         f"{run_dir / LOCK}); wait for that run to end, or choose another --run_dir") from None
    except OSError as e:  # a folder where the lock file goes, a read-only folder...
        what = "a folder" if (run_dir / LOCK).is_dir() else e.strerror or type(e).__name__
        raise SystemExit(f"dejavu fit: --run_dir {run_dir}: cannot take its lock file {run_dir / LOCK} ({what}); "
                         f"remove what is there, or choose another --run_dir") from None
    return lock


def _empty(folder: Path) -> None:
    """Delete what ``folder`` holds, except its lock (deleting a held lock file would let a third run in)."""
    for child in folder.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def expand_bases(args: list[str]) -> list[str]:
    """Put each ``--config FILE``'s chain of ``base:`` files before it, deepest first.

    Example: ``["fit", "--config", "camvid/dejavu.yaml"]`` becomes
    ``["fit", "--config", "camvid/baseline.yaml", "--config", "camvid/dejavu.yaml"]``.

    Raises:
        SystemExit: a ``base`` that does not exist, is not a file name, or closes a cycle; a config or
            base that is not readable YAML (named, with the parser's line); ``--base`` on the command line.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name == "--base":  # a config file's key: on the command line it would be parsed and ignored
            raise SystemExit("dejavu: --base is a config file's key (base: FILE); on the command line give the base "
                             "config first: --config BASE.yaml --config YOURS.yaml")
        if name == "--config" and (eq or i + 1 < len(args)):
            path = resolve_config(value if eq else args[i + 1])
            for base in _base_chain(Path(path)) if Path(path).is_file() else []:
                out += ["--config", str(base)]
            out += ["--config", path]
            i += 1 if eq else 2
            continue
        out.append(args[i])
        i += 1
    return out


def resolve_config(path: str) -> str:
    """``path`` itself when it is a file, else the packaged config of that name (``camvid/baseline.yaml``,
    or ``configs/camvid/baseline.yaml`` as the README writes it), so the shipped configs work from any
    folder (``dejavu configs`` lists them); else ``path`` unchanged (the parser names what is wrong)."""
    if Path(path).is_file():
        return path
    name = path.removeprefix("configs/")
    return str(packaged_config(name)) if name.endswith(".yaml") and packaged_config(name).is_file() else path


def packaged_configs() -> list[tuple[str, str]]:
    """The configs shipped with the package, as ``(name, its first comment line)``."""
    root = packaged_config("")
    configs = []
    for path in sorted(root.rglob("*.yaml")):
        first = next((line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        configs.append((str(path.relative_to(root)), first))
    return configs


def compose_config(path: str | Path) -> dict[str, Any]:
    """A config as ``dejavu fit`` composes it from its file and its chain of ``base:`` files, every default
    filled in: parsed by the command's own parser (so it merges exactly as a run does), without building
    anything or touching the random state. ``config`` and ``base`` (how it was composed) are left out.

    Raises:
        SystemExit: as :func:`expand_bases`, or a value the parser refuses.
    """
    with _random_state_kept():
        config = _Composer(args=["--config", str(path)], run=False).config.as_dict()
    for key in ("config", "base"):
        config.pop(key, None)
    return config


class _Composer(DejaVuCLI):
    """The command's parse alone: LightningCLI's hooks before and at instantiation do nothing here."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Python's, numpy's and torch's random states as they were, and no "Seed set" line: LightningCLI seeds
    them as it parses."""
    states = random.getstate(), np.random.get_state(), os.environ.get("PL_GLOBAL_SEED")
    log = logging.getLogger("lightning.fabric.utilities.seed")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        log.setLevel(level)
    random.setstate(states[0])
    np.random.set_state(states[1])
    if states[2] is None:
        os.environ.pop("PL_GLOBAL_SEED", None)
    else:
        os.environ["PL_GLOBAL_SEED"] = states[2]


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise SystemExit(f"dejavu: config {path} is not a text file") from None
    except yaml.YAMLError as e:
        raise SystemExit(f"dejavu: config {path} is not valid YAML: {' '.join(str(e).split())}") from None
    if data is not None and not isinstance(data, dict):
        raise SystemExit(f"dejavu: config {path} must hold keys and values (a YAML mapping), got a "
                         f"{type(data).__name__}")
    return data or {}


def _base_chain(path: Path) -> list[Path]:
    chain, seen = [], {path.resolve()}
    while True:
        config = _read_config(path)
        base = config.get("base")
        if base is None:
            return chain[::-1]
        if not isinstance(base, str) or not base.strip():
            raise SystemExit(f"dejavu: config {path} names base {base!r}; base must be the file name of the config "
                             "it extends, relative to this one (e.g. base: baseline.yaml)")
        path = path.parent / base
        if not path.is_file():
            raise SystemExit(f"dejavu: config {chain[-1] if chain else path.parent} names base {base!r}, "
                             f"but {path} does not exist (a base is relative to the config that names it)")
        if path.resolve() in seen:
            raise SystemExit(f"dejavu: configs extend each other in a cycle through {path}")
        seen.add(path.resolve())
        chain.append(path)


def fill_class_counts(task: dict[str, Any], dataset: str | dict) -> None:
    """Take a segmentation or panoptic task's ``num_classes``, ``ignore_index`` and ``class_names``
    (and a panoptic task's ``things``) from the dataset (its class, or a folder's ``init_args``) when
    the config leaves them out, so they are written once; a config that gives another count is an error."""
    cls, init_args = dataset_class(dataset)
    names = class_names(cls, init_args)
    known = {"num_classes": init_args.get("num_classes") or (len(names) if names else None),
             "ignore_index": init_args.get("ignore_index", getattr(cls, "ignore_index", None)),
             "class_names": names}
    things = init_args.get("things", getattr(cls, "things", None))
    for spec in task.get("tasks") or [task]:
        fields = getattr(TASKS.get(spec.get("name")), "from_dataset", ())
        if not fields:
            continue
        if "things" in fields and things is not None:
            if spec.get("things") is None:
                spec["things"] = list(things)
            elif sorted(spec["things"]) != sorted(things):  # PQ_th and PQ_st would split the classes wrongly
                raise ValueError(f"model.task: things={list(spec['things'])}, but the {cls.__name__} dataset's thing "
                                 f"classes are {list(things)}; leave things out to take the dataset's")
        for key, value in ((k, v) for k, v in known.items() if k in fields):
            given = spec.get(key)
            if given is None and value is not None:
                spec[key] = value
            elif key == "num_classes" and (not matches(given, int)):
                raise ValueError(f"model.task: num_classes must be an int, got {given!r}; leave it out to take the "
                                 f"{cls.__name__} dataset's {value}")
            elif key == "num_classes" and value is not None and given != value:
                raise ValueError(f"model.task: num_classes={given}, but the {cls.__name__} dataset has {value} "
                                 "classes; leave num_classes out to take the dataset's")


def fit_run(config: str | Path, run_dir: str | Path, *overrides: str) -> dict[str, Any]:
    """Run ``dejavu fit --config CONFIG --run_dir RUN_DIR OVERRIDES...`` in this process; return its metrics.json."""
    import json

    DejaVuCLI(args=["fit", "--config", str(config), "--run_dir", str(run_dir), *overrides])
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def test_run(run_dir: str | Path, split: str = "test", noise: float = 0.0,
             inference: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a finished run's exported weights (its last or best checkpoint, as ``metrics.json`` says) on
    ``split`` with Gaussian input noise of standard deviation ``noise`` and the views of ``inference`` (``None``:
    the run's own ``model.inference``) (``dejavu test``); return its ``test_metrics_*.json`` (see
    :func:`~dejavu.training.callbacks.test_metrics_name`)."""
    import json

    run = Path(run_dir)
    weights = json.loads((run / "metrics.json").read_text()).get("weights", "last")
    checkpoint = run / "checkpoints" / f"{weights}.ckpt"
    if inference is None:
        inference = (_read_config(run / "config.yaml").get("model") or {}).get("inference")
    DejaVuCLI(args=["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(checkpoint),
                    "--data.split", split, "--model.test_noise", str(noise),
                    "--model.inference", json.dumps(inference)])
    return json.loads((run / test_metrics_name(split, noise, inference)).read_text())


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package, e.g. ``packaged_config("synthetic/segmentation_dejavu.yaml")``."""
    return Path(__file__).resolve().parent.parent / "configs" / name
