"""PASCAL-Context (Mottaghi et al., CVPR 2014) as it is distributed: the VOC2010 images and splits, and the
Context release's per-image label maps over its 459 classes (``trainval/*.mat``, ``LabelMap``) with their
names (``labels.txt``). The benchmark's 59 classes (``59_labels.txt``) are kept, in that file's order, as
train ids 1..59; every other class is background, train id 0 (60 classes: "59 classes plus background")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .base import Item, LabelPairs, distinct_palette
from .io import read_image

__all__ = ["PascalContext", "read_label_names"]

# the benchmark's 59 classes, as 59_labels.txt lists them (the file, when present, is what is read)
CLASSES = ("background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
           "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain",
           "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light",
           "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep",
           "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
           "tvmonitor", "wall", "water", "window", "wood")
LAYOUT = ("ROOT/JPEGImages/ID.jpg and ROOT/ImageSets/Main/{train,val}.txt (VOC2010), ROOT/trainval/ID.mat "
          "(LabelMap), ROOT/labels.txt and ROOT/59_labels.txt ('ID: name' lines)")


def read_label_names(path: Path) -> dict[int, str]:
    """The ``ID: name`` lines of a Context label list, as ``{id: name}``.

    Raises:
        FileNotFoundError: no such file. ValueError: a line of another form (named with its number).
    """
    if not path.is_file():
        raise FileNotFoundError(f"PascalContext: {path} does not exist; expected layout {LAYOUT}")
    names = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, name = line.partition(":")
        if not sep or not key.strip().isdigit():
            raise ValueError(f"PascalContext: {path} line {number} is not 'ID: name': {line!r}")
        names[int(key)] = name.strip()
    return names


class PascalContext(LabelPairs):
    """PASCAL-Context, 59 classes plus background (60), nothing ignored.

    Args:
        root: the folder holding ``JPEGImages/``, ``ImageSets/Main/``, ``trainval/`` and the label lists.
        split: ``"train"`` (4,998 images) or ``"val"`` (5,105).
        transform: applied to each item.

    Raises:
        FileNotFoundError: a missing list or folder, or a listed image without its ``.mat`` label map.
        ValueError: an unknown split, a 59-class name that ``labels.txt`` lacks; on reading, a ``.mat``
            without ``LabelMap`` or with an id ``labels.txt`` does not list.
    """

    classes, num_classes, palette, ignore_index = CLASSES, 60, tuple(distinct_palette(60)), 255

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "val"):
            raise ValueError(f"PascalContext: split must be 'train' or 'val', got {split!r}")
        root = Path(root).expanduser()
        everything = read_label_names(root / "labels.txt")
        kept = list(read_label_names(root / "59_labels.txt").values())
        ids = {name: i for i, name in everything.items()}
        missing = [name for name in kept if name not in ids]
        if missing:
            raise ValueError(f"PascalContext: {root / '59_labels.txt'} names {missing[0]!r}, which "
                             f"{root / 'labels.txt'} does not list")
        if len(kept) != 59:
            raise ValueError(f"PascalContext: {root / '59_labels.txt'} lists {len(kept)} classes, not 59")
        self.classes = ("background", *kept)
        self.id_map = torch.full((max(everything) + 1,), -1, dtype=torch.long)  # -1: an id labels.txt lacks
        self.id_map[list(everything)] = 0
        self.id_map[[ids[name] for name in kept]] = torch.arange(1, 60)
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"PascalContext: split file {listing} does not exist; expected layout {LAYOUT}")
        stems = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        self.pairs = [(root / "JPEGImages" / f"{stem}.jpg", root / "trainval" / f"{stem}.mat") for stem in stems]
        for image, label in self.pairs:
            for path in (image, label):
                if not path.is_file():
                    raise FileNotFoundError(f"PascalContext: {path}, listed in {listing}, does not exist")

    def load(self, index: int) -> Item:
        from scipy.io import loadmat

        image_path, label_path = self.pairs[index]
        image = read_image(image_path, "PascalContext")
        try:
            label = loadmat(label_path).get("LabelMap")
        except (ValueError, OSError) as e:
            raise ValueError(f"PascalContext: cannot read label file {label_path}: {e}") from None
        if label is None:
            raise ValueError(f"PascalContext: label file {label_path} has no LabelMap")
        label = torch.from_numpy(np.asarray(label, dtype=np.int64))
        if image.shape[-2:] != label.shape:
            raise ValueError(f"PascalContext: image {image_path} is {image.shape[2]}x{image.shape[1]} but label "
                             f"{label_path} is {label.shape[1]}x{label.shape[0]}")
        return {"image": image, "semantic": self.train_ids(label, label_path)}
