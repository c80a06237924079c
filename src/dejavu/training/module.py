"""The LightningModule that trains any network and task, with or without DejaVu."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from ..arguments import check_types
from ..extensions import build_auxiliary
from ..losses import DejaVuLoss
from ..models import create_model, input_size_named, load_weights
from ..tasks import Task, create_task
from ..weights import MissingDownloadError, mismatch
from .divergence import DivergenceGuard
from .inference import check_inference
from .inference import predict as predict_views
from .optim import Optimisation
from .strategies import build_strategy

T = TypeVar("T")
DEFAULT_OPTIM = Optimisation()  # frozen: one instance serves every module


def _build(kind: str, fn, spec: dict[str, Any], **extra: Any):
    """Call a factory with a config dict, turning a bad key into an error that names it, and the
    factory's own advice (``encoder_weights=None``) into the option a config or command line sets."""
    spec = dict(spec)
    if "name" not in spec:
        raise ValueError(f"{kind}: the config needs a 'name' (got keys {sorted(spec)})")
    try:
        with _options(kind, fn):
            return fn(spec.pop("name"), **extra, **spec)
    except TypeError as e:
        raise ValueError(f"{kind}: bad config key or value: {e}") from None


@contextmanager
def _options(section: str, factory: Any) -> Iterator[None]:
    """Re-raise a factory's ``FileNotFoundError``/``ValueError`` with each ``argument=value`` it advises
    written as the option that sets it (``lpips_weight=0`` becomes ``--model.dejavu.lpips_weight 0``)."""
    try:
        yield
    except (FileNotFoundError, ValueError) as e:
        names = (set(inspect.signature(factory).parameters) | {"encoder_weights", "weights"}) - {"offline"}
        words = r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")=('[^']*'|[^\s,;)]+)"

        def option(match: re.Match) -> str:
            value = match.group(2).strip("'").rstrip(".")
            return f"--{section}.{match.group(1)} {'null' if value == 'None' else value}"

        message = re.sub(words, option, str(e))
        if message == str(e):
            raise
        raise type(e)(message) from None


RELIANCE_KEYS = ("regen_mse", "regen_mse_blank", "regen_mse_gt")


class DejaVuModule(L.LightningModule):
    """Trains ``network`` on ``task``, adding the DejaVu loss when ``dejavu`` is given. It composes
    the parts its arguments name; what a training step optimises is its ``strategy``'s.

    Args:
        network: model spec for :func:`dejavu.models.create_model`, e.g. ``{"name": "unet", "width": 16}``;
            ``out_channels`` comes from the task.
        task: task spec for :func:`dejavu.tasks.create_task`, e.g. ``{"name": "segmentation", "num_classes": 6}``.
        dejavu: keyword arguments of :class:`dejavu.DejaVuLoss` (``pred_channels`` and ``adapter`` come
            from the task), or ``None`` for the baseline.
        auxiliaries: the extensions' objectives (:mod:`dejavu.extensions`), each ``{"name": ..., **kwargs}``
            or ``{"class_path": ..., "init_args": {...}}``: ``[{name: cyclic, weight: 0.1}]`` (DejaVu-CL),
            ``{name: text, checkpoint: PATH}`` (DejaVu-TS), ``{name: sa, lpips_weight: 0.3}`` (DejaVu-SA's
            loss, added with its defaults to a ``dejavu_sa`` network when not listed).
        optim: the optimisers and schedule (:class:`~dejavu.training.optim.Optimisation`).
        strategy: what a training step optimises (:mod:`dejavu.training.strategies`): ``None`` the
            supervised step; ``{name: crm_pretraining}``; ``{name: redaction_augmentation, redaction:
            {...}, p: 0.5}``.
        pretrained: a local weights file (e.g. a DDeP or MAE pretraining run's ``model.safetensors``)
            loaded into the network; tensors whose shape differs (the output head) are left as initialised.
        frozen: parts of the network (submodule names, e.g. ``["encoder"]``) kept exactly as loaded: no
            gradient, and their normalisation statistics not updated (they run in eval mode). DDeP's
            decoder denoising pretraining freezes the supervised encoder; the log names where it came from.
        inference: how validation and test predict, as papers report: ``{"scales": [0.75, 1, 1.25],
            "flip": true, "window": [512, 1024], "stride": [341, 682]}`` (any subset; see
            :func:`dejavu.training.inference.predict`); ``None``: one pass over the whole image.
        test_noise: standard deviation of Gaussian noise added to test images (in [0, 1] units),
            for the robustness study of supp. Table B.1.
        channels_last: keep convolution weights and images in channels-last memory order (same
            numbers, about 1.8x faster on the CPUs we measured; see benchmarks/RESULTS.md).
        divergence_factor: stop the run when a logged training loss term exceeds this multiple of
            its value at the first step, or is NaN/Inf (:class:`~dejavu.training.divergence.DivergenceGuard`);
            0 stops on NaN/Inf only.

    The CRM's parameters train with the network and are saved in checkpoints; the exported
    inference model (see :mod:`dejavu.training.callbacks`) is ``self.net`` alone.
    """

    def __init__(
        self,
        network: dict[str, Any],
        task: dict[str, Any],
        dejavu: dict[str, Any] | None = None,
        auxiliaries: list[dict[str, Any]] | None = None,
        optim: Optimisation = DEFAULT_OPTIM,
        strategy: dict[str, Any] | None = None,
        pretrained: str | None = None,
        frozen: list[str] | None = None,
        inference: dict[str, Any] | None = None,
        test_noise: float = 0.0,
        channels_last: bool = True,
        divergence_factor: float = 1000.0,
    ) -> None:
        super().__init__()
        if isinstance(optim, Mapping):  # the Python form of the config's section
            optim = Optimisation(**optim)
        self.save_hyperparameters()
        # the optimisation checks its own values; hparams hold them plainly (checkpoints load with weights_only)
        check_types("model", DejaVuModule.__init__, {k: v for k, v in self.hparams.items() if k != "optim"})
        self.hparams["optim"] = asdict(optim)
        self.optim = optim
        check_inference(inference)
        self.guard = DivergenceGuard(divergence_factor)
        self.task: Task = _build("model.task", create_task, task)
        if inference and self.task.query_based:
            raise ValueError(f"model.inference averages dense outputs over views; the {self.task.name} task's "
                             "predictions are per query: leave model.inference null")
        self.task_modules = nn.ModuleDict(self.task.modules())  # registered: trained, moved and saved with the rest
        self.strategy = build_strategy(strategy)
        # every part with pretrained weights is built before any missing download is reported, so that an
        # offline run names all the files it needs at once, not one per attempt
        missing: list[MissingDownloadError] = []
        heads = self.task.head_channels
        net = _downloaded(missing, lambda: _build("model.network", create_model, network, out_channels=heads))
        self.dejavu_loss = None if dejavu is None else _downloaded(missing, lambda: _build_dejavu(dejavu, self.task))
        specs = list(auxiliaries or [])
        needed = getattr(net, "auxiliary", None)  # a network that needs an objective of its own (DejaVu-SA's)
        if needed and needed not in [spec.get("name") for spec in specs]:
            specs.append({"name": needed})
        built = [_downloaded(missing, lambda spec=spec: build_auxiliary(spec, self.task)) for spec in specs]
        if missing:
            raise MissingDownloadError(missing[0] if len(missing) == 1 else f"{len(missing)} pretrained files are "
                                       "needed and missing:\n" + "\n".join(f"- {e}" for e in missing))
        self.auxiliaries = nn.ModuleDict(built)  # each returns its named losses (dejavu.extensions)
        if self.dejavu_loss is None and any(a.extends_dejavu for a in self.auxiliaries.values()):
            names = ", ".join(k for k, a in self.auxiliaries.items() if a.extends_dejavu)
            raise ValueError(f"model.auxiliaries: {names} extend DejaVu: set model.dejavu too")
        self.net: nn.Module = net
        self.auxiliary_outputs = _has_auxiliary_outputs(self.net)
        if pretrained:
            skipped = load_weights(self.net, pretrained, strict=False)
            rank_zero_info(f"model.pretrained: loaded {pretrained}; kept the initial values of {skipped or 'nothing'}")
        self.frozen_parts = [_frozen(self.net, name, network, pretrained) for name in frozen or []]
        self.strategy.setup(self)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)  # the CRM's small tensors gain nothing from it
        self.val_metrics = self.task.metrics()
        self.arrays: dict[str, Tensor] = {}  # the last evaluation's non-scalar metrics (a confusion matrix)
        self.test_metrics = self.task.metrics()
        # DejaVu's reliance on the prediction (DejaVuLoss.reliance), averaged over the validation set
        self.val_regen = MetricCollection(
            {k: MeanMetric() for k in RELIANCE_KEYS}, compute_groups=False) if self.dejavu_loss else None

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)

    def train(self, mode: bool = True) -> DejaVuModule:
        super().train(mode)
        self._keep_frozen()
        return self

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._keep_frozen()  # Lightning restores each submodule's mode after validation, bypassing train()

    def _keep_frozen(self) -> None:
        for part in self.frozen_parts:  # their batch-norm statistics stay the loaded ones
            part.eval()

    # ------------------------------------------------------------------------------ training
    def predict(self, image: Tensor, auxiliary: bool = False) -> tuple[Tensor, dict[str, Any]]:
        """The prediction, and what else the network made for the auxiliary objectives (a network's own
        ``training_outputs(image)`` where it has one: DejaVu-SA's regenerated image as ``"sa_regenerated"``);
        with ``auxiliary``, a network's own auxiliary predictions of the task as ``"deep_supervision"``,
        ``[(weight, prediction), ...]`` (OCR's soft object regions, Mask2Former's intermediate decoder layers),
        if it has any."""
        image = image.contiguous(memory_format=self.memory_format)
        outputs = getattr(self.net, "training_outputs", None)
        if outputs is not None:  # a network that makes more than its prediction for the objectives (DejaVu-SA)
            return outputs(image)
        if auxiliary and self.auxiliary_outputs:
            raw, deep = self.net(image, auxiliary=True)
            return raw, {"deep_supervision": deep}
        return self.net(image), {}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        batch = self.task.prepare(batch)
        with _batch_statistics(batch["image"]):
            return self._training_step(batch)

    def _training_step(self, batch: dict[str, Tensor]) -> Tensor:
        loss, logs = self.strategy.step(self, batch)
        size = batch["image"].shape[0]
        self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=False, batch_size=size)
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=size)
        return self.checked(loss, logs)

    def checked(self, loss: Tensor, parts: dict[str, Tensor], cause: str = "", sync: bool = False) -> Tensor:
        """``loss``, or a ``FloatingPointError`` naming the step and each part when one is NaN/Inf or has
        diverged (:class:`DivergenceGuard`, without a device sync: on a GPU a step or two late).

        A diverging run must stop where it starts rather than train on, or save NaN weights as its result:
        nothing is exported, and the message says which checkpoint is left to resume from.
        """
        parts = {k.removeprefix("train/"): v for k, v in parts.items()}
        own = (" (the CRM trains in the network's optimiser: --model.optim.crm_lr 0.001 gives it its own Adam)"
               if self.dejavu_loss is not None and self.optim.crm_lr is None else "")

        def advice() -> str:  # made only when a check fails: it lists the checkpoint folder
            return (f"{cause}Lower --model.optim.lr (now {self.optim.lr:g}){own} or check the data for NaN/Inf; "
                    f"{self._checkpoint_note()}. Nothing is exported. (--model.divergence_factor "
                    f"{self.guard.factor:g} sets when a loss counts as diverged.)")

        where = f"epoch {self.current_epoch}, step {self.global_step}"
        try:
            self.guard({**parts, "loss": loss}, where, advice, sync)
        except FloatingPointError as e:
            raise FloatingPointError(f"dejavu fit: {e}") from None
        return loss

    def _checkpoint_note(self) -> str:
        trainer = attached_trainer(self)
        callback = trainer.checkpoint_callback if trainer is not None else None
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else None
        saved = sorted(p.name for p in folder.glob("*.ckpt")) if folder is not None and folder.is_dir() else []
        if not saved:
            return "no checkpoint was written before this step, so start again"
        return f"the checkpoints written before this step are in {folder} ({', '.join(saved)}): resume with --ckpt_path"

    def configure_optimizers(self) -> dict[str, Any]:
        own = self.dejavu_loss is not None and self.optim.crm_lr is not None
        crm = self.dejavu_loss.regenerator_optimizer(self.optim.crm_lr) if own else None
        return self.optim.configure(self, crm, lambda: int(self.trainer.estimated_stepping_batches))

    # ---------------------------------------------------------------------------- evaluation
    def fixed_prepare(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Pretext corruption that is the same at every evaluation, so validation curves are comparable."""
        generator = torch.Generator(batch["image"].device).manual_seed(batch_idx)
        return self.task.prepare(batch, generator)

    def evaluate(self, image: Tensor) -> Tensor:
        """The raw prediction at evaluation: one pass, or ``inference``'s windows and augmentations."""
        with input_size_named(image, "give a larger --data.eval_size (or --data.size), or model.inference scales "
                                     "and windows that keep each view larger"):
            if not self.hparams.inference:
                return self.predict(image)[0]
            return predict_views(lambda x: self.predict(x)[0], image, self.task, **self.hparams.inference)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        batch = self.fixed_prepare(batch, batch_idx)
        raw = self.evaluate(batch["image"])
        self.log("val/task_loss", self.task.loss(raw, batch), batch_size=batch["image"].shape[0], sync_dist=True)
        self.task.update_metrics(self.val_metrics, raw, batch)
        if self.val_regen is not None:
            generator = torch.Generator(batch["image"].device).manual_seed(batch_idx)  # the same masks at every epoch
            regen = self.dejavu_loss.reliance(batch["image"], self.task.render(raw), self.task.target_condition(batch),
                                              generator)
            for key, value in regen.items():
                if key in self.val_regen:
                    self.val_regen[key].update(value, weight=batch["image"].shape[0])

    def on_validation_epoch_end(self) -> None:
        metrics, self.arrays = _scalars_and_arrays("val", self.val_metrics.compute())
        self.val_metrics.reset()
        if self.val_regen is not None:
            regen = {k: m.compute().float() for k, m in self.val_regen.items() if m.update_called}
            regen["reliance"] = 1 - regen["regen_mse"] / regen["regen_mse_blank"].clamp_min(1e-12)
            metrics.update({f"val/{k}": v for k, v in regen.items()})
            self.val_regen.reset()
        self.log_dict(metrics)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        batch = self.fixed_prepare(batch, batch_idx)
        image = batch["image"]
        if self.hparams.test_noise > 0:
            image = image + self.hparams.test_noise * torch.randn_like(image)
        self.task.update_metrics(self.test_metrics, self.evaluate(image), batch)

    def on_test_epoch_end(self) -> None:
        metrics, self.arrays = _scalars_and_arrays(self.evaluated_split, self.test_metrics.compute())
        self.log_dict(metrics)
        self.test_metrics.reset()

    @property
    def evaluated_split(self) -> str:
        """The split ``test`` evaluates (``--data.split``), which names its metrics: ``val/mIoU`` on ``val``."""
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        return getattr(getattr(datamodule, "hparams", None), "split", "test")

    @property
    def monitor(self) -> tuple[str, str]:
        """The validation metric that picks the best checkpoint, and whether higher is better."""
        if self.strategy.monitor is not None:
            return self.strategy.monitor
        name, mode = self.task.monitor
        return f"val/{name}", mode

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["divergence_reference"] = self.guard.state_dict()  # a resumed run judges by the same first values

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_state_dict(self, checkpoint["state_dict"], checkpoint.get("dejavu_source", "the checkpoint"))
        self.guard.load_state_dict(checkpoint.get("divergence_reference", {}))


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The trainer ``module`` is attached to, or ``None`` (Lightning's ``module.trainer`` raises then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def _frozen(net: nn.Module, name: str, network: Mapping[str, Any], pretrained: str | None) -> nn.Module:
    """``net``'s part ``name`` without gradients, reported with where its weights came from."""
    try:
        part = net.get_submodule(name)
    except AttributeError:
        parts = [n for n, _ in net.named_children()]
        raise ValueError(f"model.frozen: the network has no part {name!r}; its parts are {parts}") from None
    part.requires_grad_(False)
    source = pretrained or (network.get("encoder_weights") if name == "encoder" else None)
    count = sum(p.numel() for p in part.parameters())
    rank_zero_info(f"model.frozen: {name} ({count / 1e6:.2f} M parameters) kept as loaded from "
                   f"{source or 'nowhere: random initialisation (give encoder_weights or model.pretrained)'}")
    return part


def _has_auxiliary_outputs(net: nn.Module) -> bool:
    """Whether ``net`` takes ``auxiliary=True`` and then also returns its auxiliary predictions."""
    return "auxiliary" in inspect.signature(net.forward).parameters


def _scalars_and_arrays(prefix: str, computed: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Metrics to log (scalars), and the rest (a confusion matrix), which the run writes to its files."""
    scalars = {f"{prefix}/{k}": v.float() for k, v in computed.items() if v.dim() == 0}
    return scalars, {f"{prefix}/{k}": v.detach().cpu() for k, v in computed.items() if v.dim() > 0}


@contextmanager
def _batch_statistics(image: Tensor) -> Iterator[None]:
    """Name the settings behind batch norm's "more than 1 value per channel" (a batch of one image
    shrunk to 1x1 by the network or by the DejaVu loss's downsampling)."""
    try:
        yield
    except ValueError as e:
        if "more than 1 value per channel" not in str(e) and "single pixel" not in str(e):
            raise
        raise ValueError(f"a training batch of {tuple(image.shape)} leaves a batch norm layer one value per channel "
                         f"({str(e).splitlines()[0]}): batch statistics need two or more. Give a larger --data.size "
                         "(e.g. 64 64 for a network that downsamples 32 times), a --data.batch_size of 2 or more, "
                         "or, when the CRM is named, a larger --model.dejavu.scale") from None


def _downloaded(missing: list[MissingDownloadError], build: Callable[[], T]) -> T | None:
    """``build()``, or ``None`` with its :class:`MissingDownloadError` added to ``missing``."""
    try:
        return build()
    except MissingDownloadError as e:
        missing.append(e)
        return None


def _build_dejavu(spec: dict[str, Any], task: Task) -> DejaVuLoss:
    try:
        with _options("model.dejavu", DejaVuLoss):
            return DejaVuLoss(task.condition_channels, adapter=task.condition, **spec)
    except TypeError as e:
        raise ValueError(f"model.dejavu: bad config key or value: {e}") from None


def check_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise a ValueError naming ``source`` and the first parameter that does not fit ``module``."""
    diff = mismatch(module.state_dict(), state)
    if diff:
        raise ValueError(f"checkpoint {source} does not match the model: {diff}")


