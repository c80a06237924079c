"""The LightningDataModule: any dataset by registry name or by ``class_path`` (yours too), with the
training pipeline of :mod:`dejavu.data.transforms` drawn from ``(seed, epoch, index)`` alone and
evaluation at the labels' native resolution."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from ..data import (
    ADE20K,
    CamVid,
    Cityscapes,
    COCOPanoptic,
    ImageFolder,
    KITTIDepth,
    KITTIRaw,
    NYUDv2,
    PascalContext,
    SyntheticScenes,
    SyntheticVideo,
)
from ..data.transforms import eval_transform, train_transform

# the datasets by name, and the training pipeline each gets by default (train_transform's arguments);
# their num_classes and ignore_index fill a segmentation task's (lightning_cli.fill_class_counts)
DATASETS: dict[str, type[Dataset]] = {"synthetic": SyntheticScenes, "synthetic_video": SyntheticVideo,
                                      "camvid": CamVid, "cityscapes": Cityscapes, "ade20k": ADE20K,
                                      "coco_panoptic": COCOPanoptic, "nyud": NYUDv2, "pascal_context": PascalContext,
                                      "kitti": KITTIDepth, "kitti_raw": KITTIRaw, "folder": ImageFolder}
USUAL = {"scale": (0.5, 2.0), "flip": True, "jitter": 0.3}
NONE = {"scale": (1, 1), "flip": False, "jitter": 0}
DEFAULT_AUGMENTATION: dict[str, dict[str, Any]] = {"synthetic": NONE, "synthetic_video": NONE,
                                              "camvid": NONE,
                                              "cityscapes": USUAL, "ade20k": USUAL, "coco_panoptic": USUAL,
                                              "nyud": USUAL, "kitti": USUAL, "pascal_context": USUAL,
                                              "kitti_raw": NONE,  # it resizes itself, with its intrinsics
                                              "folder": USUAL}


def class_names(cls: type[Dataset], init_args: dict[str, Any]) -> list[str] | None:
    """A dataset's class names: its ``init_args``' ``classes`` (a folder's), else the class's own."""
    names = init_args.get("classes") or getattr(cls, "classes", None)
    return list(names) if names else None


def dataset_class(dataset: str | dict) -> tuple[type[Dataset], dict[str, Any]]:
    """The class and the ``init_args`` of ``data.dataset``: a registry name, or ``{"class_path":
    "package.module.Class", "init_args": {...}}`` (LightningCLI's convention) for any dataset.

    Raises:
        ValueError: an unknown name, a class path that cannot be imported, or a spec of another shape.
    """
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {sorted(DATASETS)} or {{class_path: ..., init_args: ...}}, "
                             f"got {dataset!r}")
        return DATASETS[dataset], {}
    if not isinstance(dataset, dict) or "class_path" not in dataset or set(dataset) - {"class_path", "init_args"}:
        raise ValueError(f"data.dataset: a spec needs class_path (and optionally init_args), got {dataset!r}")
    module, _, name = str(dataset["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"data.dataset: cannot import class_path {dataset['class_path']!r} ({e})") from None
    return cls, dict(dataset.get("init_args") or {})


def label_subset(length: int, fraction: float, seed: int) -> list[int]:
    """``round(fraction * length)`` indices (at least 1), drawn without replacement by ``seed``, sorted.

    The same ``(length, fraction, seed)`` always gives the same subset.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"data.label_fraction must be in (0, 1], got {fraction!r}")
    count = max(1, round(fraction * length))
    perm = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
    return sorted(perm[:count].tolist())


class EpochShuffle(Sampler[int]):
    """A random order of ``range(length)`` that depends on ``(seed, epoch)`` alone (Lightning calls
    ``set_epoch`` at each epoch's start), so a resumed run draws each epoch's order exactly as the
    stopped run did, however many orders were drawn in between.

    It yields ``epoch * length + index``: :class:`SeededItems` reads the epoch from it, so an item's
    random augmentation depends on ``(seed, epoch, index)`` alone too, in any worker."""

    def __init__(self, length: int, seed: int, epoch: int = 0) -> None:
        self.length, self.seed, self.epoch = length, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch)))
        return iter((torch.randperm(self.length, generator=generator) + self.epoch * self.length).tolist())

    def __len__(self) -> int:
        return self.length


class SeededItems(Dataset):
    """``dataset``'s items through ``transform``, whose random draws (torchvision's, from the global
    generator) are seeded by ``(seed, epoch, index)`` (keys ``epoch * len + index`` from
    :class:`EpochShuffle`; a plain index is epoch 0): the same augmentation in any worker, after any
    resume."""

    def __init__(self, dataset: Dataset, transform: Callable[[dict], dict], seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> dict:
        epoch, index = divmod(key, len(self.dataset))
        item = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, index)) % 2**63)
            return self.transform(item)


BLANK = {"depth": 0.0, "normals": 0.0}  # what an absent target holds (a label map: the ignore label)


def labelled_tasks(targets: tuple[str, ...], mode: str, seed: int, index: int) -> dict[str, bool]:
    """Which of ``targets`` training image ``index`` keeps the labels of, from ``(seed, index)`` alone:
    ``"one"`` exactly one, chosen uniformly (a fraction ``1 / T`` of all labels); ``"random"`` a random
    non-empty subset, its size uniform in ``1..T`` (a fraction ``(T + 1) / 2T`` on average), as the
    "one label" and "random labels" settings of multi-task learning from partial annotations (MTPSL).

    Example:
        >>> labelled_tasks(("semantic", "depth", "normals"), "one", seed=0, index=3)
        {'semantic': False, 'depth': True, 'normals': False}
    """
    generator = torch.Generator().manual_seed(hash((seed, index, 7919)) % 2**63)  # ints: the same in every process
    order = torch.randperm(len(targets), generator=generator).tolist()
    count = 1 if mode == "one" else int(torch.randint(1, len(targets) + 1, (), generator=generator))
    keep = set(order[:count])
    return {key: i in keep for i, key in enumerate(targets)}


class PartialLabels(Dataset):
    """``dataset``'s items with the labels of some tasks removed (:func:`labelled_tasks`): an absent
    target is blanked (label maps to ``ignore_index``, depth and normals to 0) and ``item["labelled"]``
    says which are present, so a multi-task loss can leave the others out."""

    def __init__(self, dataset: Dataset, targets: tuple[str, ...], mode: str, seed: int, ignore_index: int) -> None:
        self.dataset, self.targets, self.mode, self.seed, self.ignore_index = dataset, targets, mode, seed, ignore_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        labelled = labelled_tasks(self.targets, self.mode, self.seed, index)
        for key, present in labelled.items():
            if not present:
                item[key] = torch.full_like(item[key], BLANK.get(key, self.ignore_index))
        return {**item, "labelled": labelled}


def collate(items: list[dict]) -> dict:
    """``default_collate``, with a clear error for validation images whose labels differ in size."""
    sizes = {tuple(v.shape) for item in items for k, v in item.items() if k == "semantic" or k == "depth"}
    if len(sizes) > 1 and len({len(s) for s in sizes}) == 1:
        raise ValueError(f"data: the items of one batch have labels of different sizes {sorted(sizes)} (native-"
                         "resolution evaluation of a dataset with varied image sizes, such as ADE20K); set "
                         "--data.val_batch_size 1")
    return default_collate(items)


def _not_empty(ds: Dataset, what: str, fix: str) -> Dataset:
    # an empty training split would "train" nothing and export an untrained network, exiting 0
    if len(ds) == 0:
        raise ValueError(f"data: {what} has no samples; {fix}")
    return ds


class DenseDataModule(L.LightningDataModule):
    """Training, validation and test data for a :class:`~dejavu.training.module.DejaVuModule`.

    Args:
        dataset: a name (``"synthetic"``: procedural scenes made on the fly; ``"camvid"``,
            ``"cityscapes"``, ``"ade20k"``, ``"nyud"``, ``"kitti"``, ``"folder"``: read from ``root``),
            or ``{"class_path": "my.module.MyDataset", "init_args": {...}}`` for any map-style dataset
            whose ``__init__`` takes ``split`` (and ``root``, ``transform`` if it has them) and whose
            items are dicts like :class:`dejavu.data.DenseDataset`'s.
        root: the dataset's folder (passed as ``root=``).
        size: ``(H, W)`` of the training crops (``None``: each image's own size). Synthetic scenes
            are rendered at it.
        eval_size: ``(H, W)`` of the images the network sees at evaluation, ``"size"`` (the default:
            ``size``) or ``"native"`` (each image's own size); the targets stay native either way.
        split: the split ``dejavu test`` evaluates (``"val"`` or ``"test"``).
        val_split: the split validated on during training (``"test"`` for KITTI's Eigen split, which
            has no other).
        batch_size, num_workers: loader settings; ``val_batch_size`` (default ``batch_size``) for
            validation and test (1 for datasets of varied image sizes such as ADE20K).
        augmentation: the training pipeline, :func:`dejavu.data.transforms.train_transform`'s arguments
            (``scale``, ``flip``, ``jitter``); unset keys take the dataset's default (the usual
            scale 0.5-2 / flip / jitter for Cityscapes, ADE20K, NYUD-v2, KITTI and folders; none for
            synthetic scenes and CamVid, as their shipped results were measured).
        train_length, val_length: number of synthetic scenes per split (refused for other datasets).
        seed: synthetic scene seed (train uses ``seed``, val ``seed + 1``, test ``seed + 2``) and the
            seed of the labelled subset.
        label_fraction: train on this fraction of the training images only (DDeP's few-label setting).
        partial_labels: train from partial annotations: ``"one"`` keeps one task's labels per training
            image, ``"random"`` a random subset (see :func:`labelled_tasks`; fixed per image by
            ``seed``); the multi-task loss then uses the labels present (``batch["labelled"]``).
            Validation keeps every label.
        train_sequences: train on CamVid's images of these sequences only (e.g. ``[0001TP, 0006R0]``,
            leaving out ``0016E5``, the val split's sequence: accuracy on a sequence never seen). Quote
            ``'0016E5'`` in YAML and on the command line, which would read it as the number 1.6e6.

    Evaluation items keep their targets at native resolution (the image alone is resized to
    ``size``), so metrics are computed where the labels live, with the prediction resized up.
    """

    def __init__(
        self,
        dataset: str | dict = "synthetic",
        root: str | None = None,
        size: tuple[int, int] | None = (64, 64),
        eval_size: tuple[int, int] | Literal["size", "native"] = "size",
        split: str = "val",
        val_split: str = "val",
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        augmentation: dict[str, Any] | None = None,
        train_length: int = 512,
        val_length: int = 64,
        seed: int = 0,
        label_fraction: float = 1.0,
        partial_labels: Literal["one", "random"] | None = None,
        train_sequences: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.dataset_class, self.init_args = dataset_class(dataset)
        # rendered or resized at `size` by the dataset itself (the transforms then leave sizes alone)
        self.sizes_itself = issubclass(self.dataset_class, SyntheticScenes) or getattr(
            self.dataset_class, "resizes_itself", False)
        name = dataset if isinstance(dataset, str) else None
        if not issubclass(self.dataset_class, SyntheticScenes) and not root and "root" not in self.init_args:
            raise ValueError(f"data.root: the {name or self.dataset_class.__name__} dataset needs --data.root DIR")
        for key, value in (("split", split), ("val_split", val_split)):
            if value not in ("train", "val", "test"):
                raise ValueError(f"data.{key} must be 'train', 'val' or 'test', got {value!r}")
        synthetic = issubclass(self.dataset_class, SyntheticScenes)
        if not synthetic and (train_length, val_length) != (512, 64):  # they would be ignored
            raise ValueError(f"data.train_length and data.val_length count synthetic scenes; the {name or 'given'} "
                             "dataset has its own (for a short trial, --trainer.limit_train_batches and "
                             "--trainer.limit_val_batches take fewer batches)")
        if train_sequences is not None and self.dataset_class is not CamVid:
            raise ValueError(f"data.train_sequences is for CamVid's driving sequences; the {name or 'given'} "
                             "dataset has none")
        unknown = set(augmentation or {}) - {"scale", "flip", "jitter"}
        if unknown:
            raise ValueError(f"data.augmentation: unknown keys {sorted(unknown)}; use scale, flip, jitter")
        label_subset(1, label_fraction, 0)  # validates the fraction now rather than at fit time
        for key, value in (("size", size), ("eval_size", eval_size)):
            if value not in (None, "size", "native") and (len(value) != 2 or min(value) < 1):
                raise ValueError(f"--data.{key} must be [H, W] with sides of at least 1, got {value}")
        for key, value, least in (("batch_size", batch_size, 1), ("val_batch_size", val_batch_size or 1, 1),
                                  ("num_workers", num_workers, 0), ("train_length", train_length, 0),
                                  ("val_length", val_length, 0)):
            if value < least:
                raise ValueError(f"--data.{key} must be at least {least}, got {value}")
        self.targets = tuple(getattr(self.dataset_class, "targets", ("semantic",)))
        if partial_labels is not None and len(self.targets) < 2:
            raise ValueError(f"data.partial_labels is for multi-task data; the {name or self.dataset_class.__name__} "
                             f"dataset has the targets {list(self.targets)}")
        self.augmentation = {**DEFAULT_AUGMENTATION.get(name or "", USUAL), **(augmentation or {})}
        self.save_hyperparameters()

    def _dataset(self, split: str) -> Dataset:
        hp = self.hparams
        if issubclass(self.dataset_class, SyntheticScenes):  # the scenes, or their video
            length = hp.train_length if split == "train" else hp.val_length
            ds = self.dataset_class(length, size=tuple(hp.size or (64, 64)),
                                    seed=hp.seed + {"train": 0, "val": 1, "test": 2}[split])
            option = "train_length" if split == "train" else "val_length"
            return _not_empty(ds, f"the synthetic {split!r} split", f"give --data.{option} of at least 1")
        kwargs = {**({"root": hp.root} if hp.root else {}), **self.init_args, "split": split}
        if getattr(self.dataset_class, "resizes_itself", False):
            kwargs["size"] = tuple(hp.size) if hp.size else None
        if self.dataset_class is CamVid and split == "train" and hp.train_sequences is not None:
            kwargs["sequences"] = hp.train_sequences
        try:
            ds = self.dataset_class(**kwargs)
        except TypeError as e:
            raise ValueError(f"data.dataset: {self.dataset_class.__name__}({kwargs}) failed: {e}") from None
        return _not_empty(ds, f"the {split!r} split of {self.dataset_class.__name__} under {kwargs.get('root')}",
                          "check --data.root and the dataset's layout (docs/data.md)")

    def _size(self, evaluation: bool = False) -> tuple[int, int] | None:
        size = self.hparams.eval_size if evaluation and self.hparams.eval_size != "size" else self.hparams.size
        return None if self.sizes_itself or size in (None, "native") else tuple(size)

    def eval_size(self) -> list[int] | None:
        """The ``(H, W)`` the network sees at evaluation (synthetic scenes: their size), ``None`` for native."""
        size = self.hparams.size if self.sizes_itself else self._size(evaluation=True)
        return list(size) if size else None

    def train_dataset(self) -> Dataset:
        ds = self._dataset("train")
        if self.hparams.label_fraction < 1:
            ds = Subset(ds, label_subset(len(ds), self.hparams.label_fraction, self.hparams.seed))
        ignore = self.init_args.get("ignore_index", getattr(self.dataset_class, "ignore_index", 255))
        if self.hparams.partial_labels is not None:
            ds = PartialLabels(ds, self.targets, self.hparams.partial_labels, self.hparams.seed, ignore)
        transform = train_transform(self._size(), ignore_index=ignore, **self.augmentation)
        return SeededItems(ds, transform, self.hparams.seed)

    def eval_dataset(self, split: str) -> Dataset:
        """The ``split``'s items with the image resized to ``size`` and the targets at native resolution."""
        return SeededItems(self._dataset(split), eval_transform(self._size(evaluation=True)), self.hparams.seed)

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        hp = self.hparams
        # its own generator: creating an iterator would otherwise draw from the global one, which the
        # training steps' random masks use, and a resumed run creates them at other moments
        return DataLoader(ds, batch_size=hp.val_batch_size or hp.batch_size, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, collate_fn=collate,
                          generator=torch.Generator().manual_seed(hp.seed))

    def train_dataloader(self) -> StatefulDataLoader:
        """Shuffled by epoch (:class:`EpochShuffle`, seeded from the run's seed) and resumable: Lightning
        saves the loader's position in every checkpoint, so a run resumed mid-epoch sees the batches the
        stopped run would have seen."""
        hp, ds = self.hparams, self.train_dataset()
        seed = torch.initial_seed()
        # a resumed run builds this loader, and its first iterator, before Lightning sets the epoch
        epoch = self.trainer.fit_loop.epoch_progress.current.processed if self.trainer is not None else 0
        return StatefulDataLoader(ds, batch_size=hp.batch_size, sampler=EpochShuffle(len(ds), seed, epoch),
                                  num_workers=hp.num_workers, drop_last=len(ds) >= hp.batch_size,
                                  persistent_workers=hp.num_workers > 0, generator=torch.Generator().manual_seed(seed))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_dataset(self.hparams.val_split))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_dataset(self.hparams.split))
