"""The LightningModule that trains any network and task, with or without DejaVu."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from .. import redaction as R
from ..arguments import check_types, matches
from ..extensions import CyclicConsistency, SharedAttentionRegeneration, TextSupervision, TrainingStep
from ..losses import DejaVuLoss, NonFiniteError
from ..models import create_model, input_size_named, load_weights
from ..models.shared_attention import SharedAttention
from ..tasks import Task, create_task
from ..weights import MissingDownloadError, mismatch
from .divergence import DivergenceGuard
from .inference import check_inference
from .inference import predict as predict_views
from .optim import JointOptimizer

T = TypeVar("T")


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
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
HEADS = ("head", "heads", "segmentation_head")


def parameter_groups(module: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                     no_decay_norm_bias: bool = False, exclude: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` (but those whose ``id`` is in ``exclude``) in optimiser
    groups by learning rate and weight decay: the network's head (:data:`HEADS`, or all but the
    ``encoder`` of a network that has one: smp's, OCR, Mask2Former) at ``head_lr_mult * lr``,
    normalisation parameters and biases without decay when ``no_decay_norm_bias``. Auxiliaries train
    at ``lr``."""
    net = getattr(module, "net", module)
    if isinstance(getattr(net, "encoder", None), nn.Module):  # smp's networks, OCR, Mask2Former's backbone
        encoder = {id(p) for p in net.encoder.parameters()}
        head = {id(p) for p in net.parameters() if id(p) not in encoder}
    else:
        head = {id(p) for name, p in net.named_parameters() if name.split(".")[0] in HEADS}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for owner in module.modules():
        for name, p in owner.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in exclude:
                quiet = no_decay_norm_bias and (isinstance(owner, NORMS) or name == "bias")
                groups.setdefault((id(p) in head and head_lr_mult != 1, quiet), []).append(p)
    return [{"params": params, "lr": lr * (head_lr_mult if is_head else 1.0),
             "weight_decay": 0.0 if quiet else weight_decay} for (is_head, quiet), params in groups.items()]


class DejaVuModule(L.LightningModule):
    """Trains ``network`` on ``task``, adding the DejaVu loss when ``dejavu`` is given.

    Args:
        network: model spec for :func:`dejavu.models.create_model`, e.g. ``{"name": "unet", "width": 16}``;
            ``out_channels`` comes from the task.
        task: task spec for :func:`dejavu.tasks.create_task`, e.g. ``{"name": "segmentation", "num_classes": 6}``.
        dejavu: keyword arguments of :class:`dejavu.DejaVuLoss` (``pred_channels`` and ``adapter`` come
            from the task), or ``None`` for the baseline.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adamw"``.
        lr, weight_decay: optimiser settings; the learning rate follows the polynomial schedule
            ``lr * (1 - step / total) ** poly_power`` (the DejaVu supplementary, section C: power 2).
        warmup_steps: ramp the learning rate linearly from ``lr / warmup_steps`` over these first
            steps (0: none), as recipes for pretrained backbones do.
        head_lr_mult: the head trains at ``head_lr_mult * lr``: everything of an smp network but its
            (pretrained) encoder, or a built-in network's ``head`` / ``heads``.
        no_decay_norm_bias: no weight decay on normalisation layers' parameters and biases.
        test_noise: standard deviation of Gaussian noise added to test images (in [0, 1] units),
            for the robustness study of supp. Table B.1.
        cyclic_weight: DejaVu-CL: weight of the cyclic consistency loss (paper: 0.1); needs ``dejavu``.
        text_supervision: DejaVu-TS: keyword arguments of :class:`dejavu.text.TextSupervision`
            (``model``, ``checkpoint`` or ``pretrained``, ``class_names`` (default: the segmentation
            task's), ``weight`` (paper: 0.3)); needs ``dejavu``.
        sa_weight: weight of the regeneration MSE of a DejaVu-SA network (``network.name: dejavu_sa``).
        sa_lpips_weight, sa_lpips_weights: weight of its LPIPS term (paper: 0.3, as for DejaVu) and the
            backbone weights file (see :class:`dejavu.perceptual.LPIPS`; ``0`` switches LPIPS off).
        augment: the supplementary's "redaction as augmentation" baseline: ``{"redaction": spec, "p": 0.5}``
            replaces a training batch by its redaction with probability ``p`` (no CRM, no extra loss).
        pretrained: a local weights file (e.g. a DDeP or MAE pretraining run's ``model.safetensors``)
            loaded into the network; tensors whose shape differs (the output head) are left as initialised.
        crm_pretraining: train the CRM alone, conditioned on the ground truth's condition (the task's
            ``target_condition``) with the run's redaction, the network frozen and not run; the run
            writes ``crm.safetensors`` for ``dejavu.regenerator_weights`` of a DejaVu run (the paper's
            "stored weights", supp. C.1). The best checkpoint is then the lowest ``val/regen_mse_gt``.
        inference: how validation and test predict, as papers report: ``{"scales": [0.75, 1, 1.25],
            "flip": true, "window": [512, 1024], "stride": [341, 682]}`` (any subset; see
            :func:`dejavu.training.inference.predict`); ``None``: one pass over the whole image.
        channels_last: keep convolution weights and images in channels-last memory order (same
            numbers, about 1.8x faster on the CPUs we measured; see benchmarks/RESULTS.md).
        crm_lr: the learning rate of the CRM's own Adam (:meth:`dejavu.DejaVuLoss.regenerator_optimizer`),
            stepped with the network's optimiser and on the same schedule; ``None`` trains the CRM in the
            network's optimiser at ``lr`` instead (stable, but slow under SGD for spectral redactions).
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
        optimizer: str = "sgd",
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        poly_power: float = 2.0,
        test_noise: float = 0.0,
        cyclic_weight: float = 0.0,
        text_supervision: dict[str, Any] | None = None,
        sa_weight: float = 1.0,
        sa_lpips_weight: float = 0.3,
        sa_lpips_weights: str | None = None,
        augment: dict[str, Any] | None = None,
        pretrained: str | None = None,
        channels_last: bool = True,
        crm_pretraining: bool = False,
        inference: dict[str, Any] | None = None,
        warmup_steps: int = 0,
        head_lr_mult: float = 1.0,
        no_decay_norm_bias: bool = False,
        crm_lr: float | None = 1e-3,
        divergence_factor: float = 1000.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_types("model", DejaVuModule.__init__, dict(self.hparams))
        check_inference(inference)
        self.guard = DivergenceGuard(divergence_factor)
        if crm_lr is not None and (not matches(crm_lr, float) or crm_lr <= 0):
            raise ValueError(f"model.crm_lr must be a number > 0, or null to train the CRM in the network's "
                             f"optimiser; got {crm_lr!r}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"model.optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        self.task: Task = _build("model.task", create_task, task)
        if inference and self.task.query_based:
            raise ValueError(f"model.inference averages dense outputs over views; the {self.task.name} task's "
                             "predictions are per query: leave model.inference null")
        self.task_modules = nn.ModuleDict(self.task.modules())  # registered: trained, moved and saved with the rest
        if (cyclic_weight > 0 or text_supervision or network.get("name") == "dejavu_sa") and self.task.query_based:
            raise ValueError(f"model.cyclic_weight, model.text_supervision and dejavu_sa compare dense outputs; the "
                             f"{self.task.name} task's predictions are per query: train it with model.dejavu alone")
        if (cyclic_weight > 0 or text_supervision) and dejavu is None:
            raise ValueError("model.cyclic_weight and model.text_supervision extend DejaVu: set model.dejavu too")
        # every part with pretrained weights is built before any missing download is reported, so that an
        # offline run names all the files it needs at once, not one per attempt
        missing: list[MissingDownloadError] = []
        heads = self.task.head_channels
        net = _downloaded(missing, lambda: _build("model.network", create_model, network, out_channels=heads))
        self.dejavu_loss = None if dejavu is None else _downloaded(missing, lambda: _build_dejavu(dejavu, self.task))
        text = None
        if text_supervision:
            spec = {"class_names": getattr(self.task, "class_names", None), **text_supervision}
            text = _downloaded(missing, lambda: _text_supervision(spec))
        sa = None
        if isinstance(net, SharedAttention) or (net is None and network.get("name") == "dejavu_sa"):
            sa = _downloaded(missing, lambda: SharedAttentionRegeneration(sa_weight, sa_lpips_weight, sa_lpips_weights))
        if missing:
            raise MissingDownloadError(missing[0] if len(missing) == 1 else f"{len(missing)} pretrained files are "
                                       "needed and missing:\n" + "\n".join(f"- {e}" for e in missing))
        self.net: nn.Module = net
        self.auxiliary_outputs = _has_auxiliary_outputs(self.net)
        if pretrained:
            skipped = load_weights(self.net, pretrained, strict=False)
            rank_zero_info(f"model.pretrained: loaded {pretrained}; kept the initial values of {skipped or 'nothing'}")
        # the extensions, each an auxiliary objective that returns its named losses
        self.auxiliaries = nn.ModuleDict()
        if sa is not None:
            self.auxiliaries["sa"] = sa
        if cyclic_weight > 0:
            self.auxiliaries["cyclic"] = CyclicConsistency(cyclic_weight)
        if text is not None:
            self.auxiliaries["text"] = text
        if crm_pretraining:
            if type(self.task).target_condition is Task.target_condition:
                raise ValueError(f"model.crm_pretraining: the {type(self.task).__name__} task has no ground-truth "
                                 "condition to pretrain a CRM on")
            if self.dejavu_loss is None or self.auxiliaries or augment:
                raise ValueError("model.crm_pretraining trains the CRM of model.dejavu alone: set model.dejavu, "
                                 "and no extension (cyclic_weight, text_supervision, dejavu_sa) or augment")
            self.net.requires_grad_(False)  # the optimiser then holds the CRM's parameters only
        self.augmentation = None
        if augment:
            augment = dict(augment)
            self.augment_p = float(augment.pop("p", 0.5))
            self.augmentation = R.as_redaction(augment.pop("redaction"))
            if augment:
                raise ValueError(f"model.augment: unknown keys {sorted(augment)} (expected redaction, p)")
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

    # ------------------------------------------------------------------------------ training
    def predict(self, image: Tensor, auxiliary: bool = False) -> tuple[Tensor, dict[str, Any]]:
        """The prediction, and what else the network made for the auxiliary objectives (a DejaVu-SA
        network's regenerated image as ``"sa_regenerated"``); with ``auxiliary``, a network's own
        auxiliary predictions of the task as ``"deep_supervision"``, ``[(weight, prediction), ...]``
        (OCR's soft object regions, Mask2Former's intermediate decoder layers), if it has any."""
        image = image.contiguous(memory_format=self.memory_format)
        if isinstance(self.net, SharedAttention):
            enhanced, regenerated, _ = self.net.forward_train(image)
            return enhanced, {"sa_regenerated": regenerated}
        if auxiliary and self.auxiliary_outputs:
            raw, deep = self.net(image, auxiliary=True)
            return raw, {"deep_supervision": deep}
        return self.net(image), {}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        batch = self.task.prepare(batch)
        with _batch_statistics(batch["image"]):
            return self._training_step(batch)

    def _training_step(self, batch: dict[str, Tensor]) -> Tensor:
        image = batch["image"]
        if self.hparams.crm_pretraining:
            out = self.dejavu_loss.from_condition(image, self.task.target_condition(batch))
            self.log_dict({"train/dejavu_loss": out.loss, "train/regen_mse": out.mse}, batch_size=image.shape[0])
            self.log("loss", out.loss, prog_bar=True, logger=False, batch_size=image.shape[0])
            return self.checked(out.loss, {"dejavu_loss": out.loss, "regen_mse": out.mse})
        if self.augmentation is not None and torch.rand(()) < self.augment_p:
            image = self.augmentation(image)
        raw, extras = self.predict(image, auxiliary=True)
        task_loss = self.task.loss(raw, batch)
        loss = task_loss
        logs = {"train/task_loss": task_loss}
        deep = extras.pop("deep_supervision", ())
        if deep:
            logs["train/deep_supervision"] = sum(w * self.task.loss(aux, batch) for w, aux in deep)
            loss = loss + logs["train/deep_supervision"]
        out = None
        if self.dejavu_loss is not None:
            try:
                out = self.dejavu_loss(image, self.task.render(raw))
            except NonFiniteError as e:  # the network's weights diverged at the last update, or the data is bad
                self.checked(loss, {**logs, "prediction": loss.new_tensor(math.nan)}, f"{e}. ", sync=True)
            loss = loss + out.loss
            logs.update({"train/dejavu_loss": out.loss, "train/regen_mse": out.mse})
            if self.dejavu_loss.lpips_weight > 0:  # a term that is off would read 0 (LPIPS) or 1 (SSIM)
                logs["train/regen_lpips"] = out.lpips
            if self.dejavu_loss.ssim_weight > 0:
                logs["train/regen_ssim"] = out.ssim
        step = TrainingStep(self.net, image, raw, self.task.condition, self.dejavu_loss, out, extras)
        for auxiliary in self.auxiliaries.values():
            for name, value in auxiliary(step).items():
                loss = loss + value
                logs[f"train/{name}"] = value
        logs["train/loss"] = loss
        self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=False, batch_size=image.shape[0])
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=image.shape[0])
        return self.checked(loss, logs)

    def checked(self, loss: Tensor, parts: dict[str, Tensor], cause: str = "", sync: bool = False) -> Tensor:
        """``loss``, or a ``FloatingPointError`` naming the step and each part when one is NaN/Inf or has
        diverged (:class:`DivergenceGuard`, without a device sync: on a GPU a step or two late).

        A diverging run must stop where it starts rather than train on, or save NaN weights as its result:
        nothing is exported, and the message says which checkpoint is left to resume from.
        """
        parts = {k.removeprefix("train/"): v for k, v in parts.items()}
        own = (" (the CRM trains in the network's optimiser: --model.crm_lr 0.001 gives it its own Adam)"
               if self.dejavu_loss is not None and self.hparams.crm_lr is None else "")

        def advice() -> str:  # made only when a check fails: it lists the checkpoint folder
            return (f"{cause}Lower --model.lr (now {self.hparams.lr:g}){own} or check the data for NaN/Inf; "
                    f"{self._checkpoint_note()}. Nothing is exported. (--model.divergence_factor "
                    f"{self.guard.factor:g} sets when a loss counts as diverged.)")

        where = f"epoch {self.current_epoch}, step {self.global_step}"
        try:
            self.guard({**parts, "loss": loss}, where, advice, sync)
        except FloatingPointError as e:
            raise FloatingPointError(f"dejavu fit: {e}") from None
        return loss

    def _checkpoint_note(self) -> str:
        callback = self._trainer.checkpoint_callback if self._trainer is not None else None
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else None
        saved = sorted(p.name for p in folder.glob("*.ckpt")) if folder is not None and folder.is_dir() else []
        if not saved:
            return "no checkpoint was written before this step, so start again"
        return f"the checkpoints written before this step are in {folder} ({', '.join(saved)}): resume with --ckpt_path"

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        crm = self.dejavu_loss.regenerator_optimizer(hp.crm_lr) if self.dejavu_loss and hp.crm_lr else None
        mine = frozenset(id(p) for g in crm.param_groups for p in g["params"]) if crm else frozenset()
        groups = parameter_groups(self, hp.lr, hp.weight_decay, hp.head_lr_mult, hp.no_decay_norm_bias, mine)
        if not groups and crm is not None:  # CRM pretraining: the network is frozen
            opt = crm
        elif hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        if crm is not None and opt is not crm:
            opt = JointOptimizer(opt, crm)
        power, warmup = hp.poly_power, hp.warmup_steps

        def poly(step: int) -> float:
            # the total is asked for from the first step on, not here: asking now would build the training
            # loader before a resumed run has restored its position in the data
            total = 1 if step == 0 else max(1, int(self.trainer.estimated_stepping_batches))
            ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
            return ramp * max(0.0, 1 - step / total) ** power

        sched = torch.optim.lr_scheduler.LambdaLR(opt, poly)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(getattr(datamodule, "hparams", None), "split", "test")

    @property
    def monitor(self) -> tuple[str, str]:
        """The validation metric that picks the best checkpoint, and whether higher is better."""
        if self.hparams.crm_pretraining:
            return "val/regen_mse_gt", "min"
        name, mode = self.task.monitor
        return f"val/{name}", mode

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["divergence_reference"] = self.guard.state_dict()  # a resumed run judges by the same first values

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_state_dict(self, checkpoint["state_dict"], checkpoint.get("dejavu_source", "the checkpoint"))
        self.guard.load_state_dict(checkpoint.get("divergence_reference", {}))


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


def _text_supervision(spec: dict[str, Any]) -> TextSupervision:
    try:
        return TextSupervision(**spec)
    except TypeError as e:
        raise ValueError(f"model.text_supervision: bad config key or value: {e}") from None


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


