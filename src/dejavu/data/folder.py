"""Your own segmentation data: ``images/{split}/`` with label maps of the same stem in
``labels/{split}/`` (PNG, one channel of class ids)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .base import Item, LabelPairs, distinct_palette

__all__ = ["ImageFolder"]

LAYOUT = "ROOT/images/SPLIT/*.{png,jpg} with label maps ROOT/labels/SPLIT/<same stem>.png"


class ImageFolder(LabelPairs):
    """A folder of images and label maps, for a dataset of your own.

    Args:
        root: the folder holding ``images/`` and ``labels/``.
        split: the subfolder of each (``"train"``, ``"val"``, or any name).
        num_classes: ids ``0 .. num_classes - 1`` are classes; with ``classes`` it may be left out.
        ignore_index: the label of unlabelled pixels.
        classes: class names (default ``class0``, ``class1``...).
        transform: applied to each item.

    Raises:
        ValueError: neither ``num_classes`` nor ``classes``, or both, disagreeing; on reading, an
            unreadable file or a label outside the classes.
        FileNotFoundError: a missing folder, a split without images, an image without its label.

    Example (a config)::

        data:
          dataset:
            class_path: dejavu.data.ImageFolder
            init_args: {root: /data/mine, num_classes: 5}
    """

    def __init__(self, root: str | Path, split: str = "train", num_classes: int | None = None,
                 ignore_index: int = 255, classes: Sequence[str] | None = None,
                 transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        if classes is None and num_classes is None:
            raise ValueError("ImageFolder: give num_classes (or the class names as classes)")
        if classes is not None and num_classes is not None and len(classes) != num_classes:
            raise ValueError(f"ImageFolder: {len(classes)} class names but num_classes={num_classes}")
        self.classes = tuple(classes) if classes is not None else tuple(f"class{i}" for i in range(num_classes))
        self.num_classes, self.ignore_index = len(self.classes), ignore_index
        self.palette = tuple(distinct_palette(self.num_classes))
        root = Path(root).expanduser()
        labels = root / "labels" / split
        self.pairs = self.pair_by_stem(self.image_files(root / "images" / split, labels, LAYOUT), labels)
