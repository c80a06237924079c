"""Cityscapes in its official layout: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
``gtFine/{split}/{city}/*_gtFine_labelIds.png``, the 34 label ids mapped to the 19 train ids of the
benchmark (the others, and 255, ignored; an id the official encoding never writes, 34..254, is an error)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .base import Item, LabelPairs, id_table
from .io import list_images

__all__ = ["Cityscapes"]

CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
           (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
           (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))
# label id -> train id, from the Cityscapes scripts' labels.py; every other id is ignored
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LAYOUT = "ROOT/leftImg8bit/{train,val,test}/CITY/*_leftImg8bit.png and ROOT/gtFine/SPLIT/CITY/*_gtFine_labelIds.png"


class Cityscapes(LabelPairs):
    """Cityscapes fine annotations, 19 classes, ignore label 255.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: applied to each item (see :class:`dejavu.data.base.DenseDataset`).

    Raises:
        FileNotFoundError: a missing folder (named, with the layout), a split without images, an
            image without its ``_gtFine_labelIds.png``.
        ValueError: an unknown split; on reading, an unreadable file or a stored id above 255.
    """

    classes, num_classes, palette, ignore_index = CLASSES, len(CLASSES), PALETTE, 255
    # labelIds PNGs store the ids 0..33, and 255 for the license plate (id -1); nothing else
    id_map = id_table(256, TRAIN_IDS, 255).index_fill(0, torch.arange(34, 255), -1)

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "val", "test"):
            raise ValueError(f"Cityscapes: split must be 'train', 'val' or 'test', got {split!r}")
        root = Path(root).expanduser()
        images, labels = root / "leftImg8bit" / split, root / "gtFine" / split
        for folder in (images, labels):
            if not folder.is_dir():
                raise FileNotFoundError(f"Cityscapes: missing folder {folder}; expected layout {LAYOUT}")
        files = [p for city in sorted(images.iterdir()) if city.is_dir() for p in list_images(city, (".png",))]
        if not files:
            raise FileNotFoundError(f"Cityscapes: no *_leftImg8bit.png image in {images}/CITY/; expected {LAYOUT}")
        self.pairs = []
        for image in files:
            label = labels / image.parent.name / image.name.replace("_leftImg8bit", "_gtFine_labelIds")
            if not label.is_file():
                raise FileNotFoundError(f"Cityscapes: image {image} has no label file {label}")
            self.pairs.append((image, label))
