"""KITTI depth on the Eigen split, in the layout BTS and AdaBins distribute: raw images under
``ROOT/raw/`` and the annotated depth maps (uint16 PNG, metres x 256, 0 unknown) under ``ROOT/gt/``,
listed by ``ROOT/splits/eigen_{train,test}_files_with_gt.txt`` (``image depth focal`` per line,
``None`` for an image without ground truth, which is left out)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .base import DenseDataset, Item
from .io import read_image

__all__ = ["KITTIDepth", "read_depth_png"]

LAYOUT = ("ROOT/splits/eigen_{train,test}_files_with_gt.txt listing 'IMAGE DEPTH FOCAL', IMAGE under ROOT/raw/ "
          "(e.g. 2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png), DEPTH under ROOT/gt/ "
          "(e.g. 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png)")


def read_depth_png(path: Path, scale: float = 256.0, owner: str = "KITTIDepth") -> torch.Tensor:
    """A 16-bit depth PNG as ``(1, H, W)`` float32 metres (stored value / ``scale``; 0 stays 0, unknown).

    Raises:
        ValueError: an unreadable file, or one that is not 16-bit grey (names it).
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("I", "I;16", "I;16B"):
                raise ValueError(f"{owner}: depth file {path} is a {im.mode} image; expected 16-bit grey")
            depth = np.asarray(im).astype(np.float32) / scale
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{owner}: cannot read depth file {path}: {e}") from None
    return torch.from_numpy(depth)[None]


class KITTIDepth(DenseDataset):
    """KITTI monocular depth on the Eigen split with the annotated ground truth (652 of its 697 test
    images have it). Items have ``image`` and sparse ``depth``; evaluate with ``Depth(max_depth=80,
    eval_crop="garg")`` as the literature does.

    Args:
        root: the folder holding ``raw/``, ``gt/`` and ``splits/``.
        split: ``"train"`` or ``"test"``.
        split_file: another list in the same format (default ``splits/eigen_{split}_files_with_gt.txt``).
        transform: applied to each item.

    Raises:
        FileNotFoundError: a missing split file or folder, or a listed file that does not exist.
        ValueError: an unknown split, a malformed line (named with its number); on reading, an
            unreadable file.
    """

    targets = ("depth",)

    def __init__(self, root: str | Path, split: str = "train", split_file: str | Path | None = None,
                 transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "test"):
            raise ValueError(f"KITTIDepth: split must be 'train' or 'test', got {split!r}")
        root = Path(root).expanduser()
        listing = Path(split_file) if split_file else root / "splits" / f"eigen_{split}_files_with_gt.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"KITTIDepth: split file {listing} does not exist; expected layout {LAYOUT}")
        self.pairs: list[tuple[Path, Path]] = []
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 3:
                raise ValueError(f"KITTIDepth: {listing} line {number} has {len(fields)} fields, expected "
                                 f"'IMAGE DEPTH FOCAL': {line!r}")
            if fields[1] != "None":
                self.pairs.append((root / "raw" / fields[0], root / "gt" / fields[1]))
        for image, depth in self.pairs:
            for path in (image, depth):
                if not path.is_file():
                    raise FileNotFoundError(f"KITTIDepth: {path}, listed in {listing}, does not exist")

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Item:
        image_path, depth_path = self.pairs[index]
        image, depth = read_image(image_path, "KITTIDepth"), read_depth_png(depth_path)
        if image.shape[-2:] != depth.shape[-2:]:
            raise ValueError(f"KITTIDepth: image {image_path} is {image.shape[2]}x{image.shape[1]} but depth "
                             f"{depth_path} is {depth.shape[2]}x{depth.shape[1]}")
        return {"image": image, "depth": depth}
