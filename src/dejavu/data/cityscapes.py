"""Cityscapes in its official layout: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
``gtFine/{split}/{city}/*_gtFine_labelIds.png``, the 34 label ids mapped to the 19 train ids of the
benchmark (the others, and 255, ignored; an id the official encoding never writes, 34..254, is an error).
For training, optionally also the 19,998 ``train_extra`` images with their ``gtCoarse`` annotations and a
folder of pseudo-labels for them: the "enhanced" training of DejaVu's Table 1 and of HMS (Tao et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .base import Item, LabelPairs, id_table
from .io import list_images, read_label

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
COARSE_LAYOUT = ("ROOT/leftImg8bit/train_extra/CITY/*_leftImg8bit.png (leftImg8bit_trainextra.zip) and "
                 "ROOT/gtCoarse/train_extra/CITY/*_gtCoarse_labelIds.png (gtCoarse.zip)")


class Cityscapes(LabelPairs):
    """Cityscapes fine annotations, 19 classes, ignore label 255; optionally the coarse ones too.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/`` (and ``gtCoarse/`` for ``coarse``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: applied to each item (see :class:`dejavu.data.base.DenseDataset`).
        coarse: the training split also holds the ``train_extra`` images, labelled by ``gtCoarse``
            (its ``*_gtCoarse_labelIds.png``, the same ids as ``gtFine``).
        pseudo_labels: a folder of pseudo-labels for the ``train_extra`` images (e.g. those HMS released),
            ``PSEUDO/CITY/<image name>.png`` holding train ids (0..18, 255 where it has none), a relative
            path taken under ``root`` (the shipped configs: ``ROOT/autolabelled``); where one
            names a class it replaces the coarse label (as HMS's auto-labelling does), elsewhere the coarse
            label stays. An image without one keeps its coarse label. Needs ``coarse``.

    Raises:
        FileNotFoundError: a missing folder (named, with the layout), a split without images, an
            image without its ``_gtFine_labelIds.png`` (``_gtCoarse_labelIds.png``).
        ValueError: an unknown split, ``coarse`` / ``pseudo_labels`` for another split than ``train``,
            ``pseudo_labels`` without ``coarse`` or naming no file; on reading, an unreadable file or
            an id outside the encoding.
    """

    classes, num_classes, palette, ignore_index = CLASSES, len(CLASSES), PALETTE, 255
    # labelIds PNGs store the ids 0..33, and 255 for the license plate (id -1); nothing else
    id_map = id_table(256, TRAIN_IDS, 255).index_fill(0, torch.arange(34, 255), -1)

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None,
                 coarse: bool = False, pseudo_labels: str | Path | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "val", "test"):
            raise ValueError(f"Cityscapes: split must be 'train', 'val' or 'test', got {split!r}")
        root = Path(root).expanduser()
        self.pairs = _pairs(root, split, "gtFine", LAYOUT)
        self.pseudo: dict[Path, Path] = {}
        if pseudo_labels is not None and not coarse:
            raise ValueError("Cityscapes: pseudo_labels label the coarse train_extra images; give coarse=True too")
        if split != "train" or not coarse:
            return  # coarse data are for training; val and test stay the benchmark's own
        extra = _pairs(root, "train_extra", "gtCoarse", COARSE_LAYOUT)
        self.pairs += extra
        if pseudo_labels is not None:
            folder = root / Path(pseudo_labels).expanduser()  # an absolute path stays itself
            if not folder.is_dir():
                raise FileNotFoundError(f"Cityscapes: pseudo-label folder {folder} does not exist; expected "
                                        "PSEUDO/CITY/<train_extra image name>.png")
            found = {image: folder / image.parent.name / image.name for image, _ in extra}
            self.pseudo = {image: path.with_suffix(".png") for image, path in found.items()
                           if path.with_suffix(".png").is_file()}
            if not self.pseudo:
                raise ValueError(f"Cityscapes: pseudo-label folder {folder} has no PNG named as a train_extra "
                                 f"image (e.g. {found[extra[0][0]].with_suffix('.png')})")

    def load(self, index: int) -> Item:
        item = super().load(index)
        image = self.pairs[index][0]
        if image in self.pseudo:
            path = self.pseudo[image]
            pseudo = read_label(path, "Cityscapes")
            if pseudo.shape != item["semantic"].shape:
                raise ValueError(f"Cityscapes: pseudo-label {path} is {pseudo.shape[1]}x{pseudo.shape[0]} but image "
                                 f"{image} is {item['semantic'].shape[1]}x{item['semantic'].shape[0]}")
            bad = (pseudo >= self.num_classes) & (pseudo != self.ignore_index)
            if bad.any():
                raise ValueError(f"Cityscapes: pseudo-label {path} has value {int(pseudo[bad][0])}; pseudo-labels "
                                 f"hold train ids 0..{self.num_classes - 1} and {self.ignore_index}")
            item["semantic"] = torch.where(pseudo != self.ignore_index, pseudo, item["semantic"])
        return item


def _pairs(root: Path, split: str, annotation: str, layout: str) -> list[tuple[Path, Path]]:
    """Each ``leftImg8bit/{split}`` image with its ``{annotation}/{split}`` labelIds file."""
    images, labels = root / "leftImg8bit" / split, root / annotation / split
    for folder in (images, labels):
        if not folder.is_dir():
            raise FileNotFoundError(f"Cityscapes: missing folder {folder}; expected layout {layout}")
    files = [p for city in sorted(images.iterdir()) if city.is_dir() for p in list_images(city, (".png",))]
    if not files:
        raise FileNotFoundError(f"Cityscapes: no *_leftImg8bit.png image in {images}/CITY/; expected {layout}")
    pairs = []
    for image in files:
        label = labels / image.parent.name / image.name.replace("_leftImg8bit", f"_{annotation}_labelIds")
        if not label.is_file():
            raise FileNotFoundError(f"Cityscapes: image {image} has no label file {label}")
        pairs.append((image, label))
    return pairs
