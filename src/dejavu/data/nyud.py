"""NYUD-v2 for multi-task learning, in the layout of MTAN (Liu et al., CVPR 2019), which MTPSL and
most multi-task papers distribute: ``{train,val}/{image,label,depth,normal}/<i>.npy`` at 288x384, with
the 13-class segmentation (``-1`` unlabelled), depth in metres (0 unknown) and surface normals in
``[-1, 1]`` (0 unknown)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .base import DenseDataset, Item, distinct_palette

__all__ = ["NYUDv2"]

CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "painting", "sofa", "table", "tv",
           "wall", "window")
LAYOUT = "ROOT/{train,val}/{image,label,depth,normal}/<i>.npy (MTAN's NYUv2, 13 classes)"
FOLDERS = {"image": 3, "label": 0, "depth": 1, "normal": 3}  # the channels of each file (0: a 2-D array)


def _read(path: Path, channels: int) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"NYUDv2: cannot read {path}: {e}") from None
    shape_ok = array.ndim == 2 if channels == 0 else (array.ndim == 3 and array.shape[-1] == channels)
    if not shape_ok:
        want = "(H, W)" if channels == 0 else f"(H, W, {channels})"
        raise ValueError(f"NYUDv2: {path} holds an array of shape {array.shape}, expected {want}")
    return array


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)


class NYUDv2(DenseDataset):
    """NYUD-v2 with ``semantic`` (13 classes, ignore 255), ``depth`` and ``normals`` per image.

    Args:
        root: the folder holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"`` (MTAN's 795 / 654 images).
        transform: applied to each item.

    Raises:
        FileNotFoundError: a missing folder, a split without images, an image without one of its
            three targets.
        ValueError: an unknown split; on reading, an unreadable file, an array of the wrong shape,
            image values outside ``[0, 1]``, a label outside ``-1..12`` or not a whole number, or the
            arrays of one sample of different sizes; each names the file and its own value.
    """

    classes, num_classes, palette, ignore_index = CLASSES, 13, tuple(distinct_palette(13)), 255
    targets = ("semantic", "depth", "normals")

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "val"):
            raise ValueError(f"NYUDv2: split must be 'train' or 'val', got {split!r}")
        self.root = Path(root).expanduser() / split
        for folder in FOLDERS:
            if not (self.root / folder).is_dir():
                raise FileNotFoundError(f"NYUDv2: missing folder {self.root / folder}; expected layout {LAYOUT}")
        self.names = sorted((p.name for p in (self.root / "image").glob("*.npy")), key=lambda n: (len(n), n))
        if not self.names:
            raise FileNotFoundError(f"NYUDv2: no .npy image in {self.root / 'image'}; expected layout {LAYOUT}")
        for folder in ("label", "depth", "normal"):
            missing = [n for n in self.names if not (self.root / folder / n).is_file()]
            if missing:
                raise FileNotFoundError(f"NYUDv2: image {self.root / 'image' / missing[0]} has no "
                                        f"{self.root / folder / missing[0]}")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> Item:
        name = self.names[index]
        image, label, depth, normal = (_read(self.root / f / name, c) for f, c in FOLDERS.items())
        if not (image.min() >= 0 and image.max() <= 1):
            raise ValueError(f"NYUDv2: {self.root / 'image' / name} has values in [{image.min()}, {image.max()}], "
                             "expected [0, 1]")
        sizes = {f: a.shape[:2] for f, a in zip(FOLDERS, (image, label, depth, normal), strict=True)}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"NYUDv2: the arrays of sample {name} differ in size: "
                             + ", ".join(f"{self.root / f / name} {h}x{w}" for f, (h, w) in sizes.items()))
        # the file's own values in every message: -1 (MTAN's unlabelled) is the only id mapped to ignore
        fractional = label[label != np.floor(label)] if label.dtype.kind == "f" else label[:0]
        if fractional.size:
            raise ValueError(f"NYUDv2: {self.root / 'label' / name} has the non-integer label {fractional[0]}; "
                             "labels are class ids -1..12")
        outside = label[(label < -1) | (label >= self.num_classes)]
        if outside.size:
            raise ValueError(f"NYUDv2: {self.root / 'label' / name} has label {outside[0]:g}, outside -1..12 "
                             "(-1: unlabelled)")
        label = np.where(label == -1, self.ignore_index, label).astype(np.int64)
        return {"image": _chw(image), "semantic": torch.from_numpy(label), "depth": _chw(depth),
                "normals": _chw(normal)}
