"""What every dataset read from disk shares: its class names, palette and ignore label, an optional
``transform`` of its items, and (for image / label-map pairs) the mapping of stored ids to train ids
with an error that names the file for an id outside the classes."""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .io import list_images, read_image, read_label

__all__ = ["DenseDataset", "LabelPairs", "distinct_palette"]

Item = dict[str, Tensor]


def distinct_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` colours whose hues step by the golden ratio (neighbouring ids look different), for label
    sets without a palette of their own.

    Example:
        >>> len(set(distinct_palette(150)))
        150
    """
    return [tuple(round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.65 + 0.35 * (i % 3) / 2,
                                                              0.95 - 0.3 * (i % 4) / 3)) for i in range(n)]


class DenseDataset(Dataset):
    """Base of the datasets read from disk. A subclass lists its files and implements
    ``load(index)``: a dict with ``image`` ``(3, H, W)`` float32 in ``[0, 1]`` and its targets at their
    native resolution (``semantic`` ``(H, W)`` int64, ``depth`` ``(1, H, W)`` metres with 0 where
    unknown, ``normals`` ``(3, H, W)`` with 0 where unknown). ``transform`` (e.g.
    :func:`dejavu.data.transforms.train_transform`) maps that dict to the item returned.

    Class attributes: ``classes`` (names), ``palette`` (one RGB triple per class), ``num_classes``,
    ``ignore_index`` (the label of unlabelled pixels), ``targets`` (the keys of its items besides
    ``image``).
    """

    classes: tuple[str, ...] = ()
    num_classes: int = 0
    palette: Sequence[tuple[int, int, int]] = ()
    ignore_index: int = 255
    targets: tuple[str, ...] = ("semantic",)

    def __init__(self, transform: Callable[[Item], Item] | None = None) -> None:
        self.transform = transform

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Item:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} items")
        item = self.load(index)
        return self.transform(item) if self.transform is not None else item


class LabelPairs(DenseDataset):
    """Image files with a label map each (``self.pairs``: a list of ``(image, label)`` paths).

    ``id_map``, when set, maps the stored ids to train ids (a lookup table: ``train = id_map[stored]``,
    ``ignore_index`` for ids left out, ``-1`` for ids the dataset's official encoding never writes); a
    stored id beyond the table or never written, or a train id that is neither a class nor
    ``ignore_index``, is a ``ValueError`` naming the file and the value as the file stores it.
    """

    id_map: Tensor | None = None
    pairs: list[tuple[Path, Path]]

    def __len__(self) -> int:
        return len(self.pairs)

    def image_files(self, image_dir: Path, label_dir: Path, layout: str) -> list[Path]:
        """The images of ``image_dir``, sorted, once both folders are known to exist (else an error naming
        the missing one and the expected ``layout``)."""
        name = type(self).__name__
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{name}: missing folder {folder}; expected layout {layout}")
        files = list_images(image_dir)
        if not files:
            raise FileNotFoundError(f"{name}: no .png or .jpg image in {image_dir}; expected layout {layout}")
        return files

    def pair_by_stem(self, images: list[Path], label_dir: Path) -> list[tuple[Path, Path]]:
        """Each image with the ``.png`` label of its stem in ``label_dir`` (an error names the first without)."""
        labels = {p.stem: p for p in list_images(label_dir, (".png",))}
        missing = [p for p in images if p.stem not in labels]
        if missing:
            raise FileNotFoundError(f"{type(self).__name__}: image {missing[0]} has no label file "
                                    f"{label_dir / missing[0].stem}.png ({len(missing)} of {len(images)} images "
                                    "have none)")
        return [(p, labels[p.stem]) for p in images]

    def load(self, index: int) -> Item:
        image_path, label_path = self.pairs[index]
        name = type(self).__name__
        image, label = read_image(image_path, name), read_label(label_path, name)
        if image.shape[-2:] != label.shape:
            raise ValueError(f"{name}: image {image_path} is {image.shape[2]}x{image.shape[1]} but label "
                             f"{label_path} is {label.shape[1]}x{label.shape[0]}")
        return {"image": image, "semantic": self.train_ids(label, label_path)}

    def train_ids(self, label: Tensor, path: Path) -> Tensor:
        name = type(self).__name__
        stored = label
        if self.id_map is not None:
            if label.min() < 0 or label.max() >= len(self.id_map):
                bad = int(label.max() if label.max() >= len(self.id_map) else label.min())
                raise ValueError(f"{name}: label file {path} has id {bad}, outside the dataset's ids "
                                 f"0..{len(self.id_map) - 1}")
            label = self.id_map[label]
            never = label == -1
            if never.any():
                raise ValueError(f"{name}: label file {path} has id {int(stored[never][0])}, which the dataset's "
                                 "official encoding never writes; check that the file is the dataset's own label map")
        bad = ((label < 0) | (label >= self.num_classes)) & (label != self.ignore_index)
        if bad.any():
            raise ValueError(f"{name}: label file {path} has value {int(stored[bad][0])}, outside "
                             f"0..{self.num_classes - 1} and not the ignore label {self.ignore_index}")
        return label


def id_table(size: int, pairs: dict[int, int], ignore_index: int) -> Tensor:
    """A lookup table of ``size`` stored ids: ``pairs`` maps some to train ids, the rest to ``ignore_index``."""
    table = torch.full((size,), ignore_index, dtype=torch.long)
    for stored, train in pairs.items():
        table[stored] = train
    return table
