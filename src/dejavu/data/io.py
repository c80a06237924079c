"""Reading dataset files: images at any bit depth, label maps as class ids, and folder listings that
do not care how an extension is capitalised. Every error names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image", "read_label"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of ``folder`` whose extension is one of ``suffixes`` in any case (``.PNG`` too), sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def read_image(path: Path, owner: str = "dejavu") -> Tensor:
    """An image file as ``(3, H, W)`` float32 in ``[0, 1]``: 8- and 16-bit, grey or colour (torchvision's
    decoder; a 16-bit file keeps its 16 bits instead of saturating). ``owner`` (the reader's name)
    starts error messages.

    Raises:
        ValueError: the file cannot be decoded (names it).
    """
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    try:
        image = decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError) as e:
        raise ValueError(f"{owner}: cannot read image file {path}: {str(e).strip() or type(e).__name__}") from None
    return to_dtype(image, torch.float32, scale=True)


def read_label(path: Path, owner: str = "dejavu") -> Tensor:
    """A single-channel label map as ``(H, W)`` int64 class ids: the stored values of a grey (8- or
    16-bit) file, the palette indices of an indexed one.

    Raises:
        ValueError: the file cannot be read, or it is a colour image (whose colours would need a
            palette to become ids); the message names the file.
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise ValueError(f"{owner}: label file {path} is a {im.mode} image; labels must be one channel of "
                                 "class ids (grey or palette-indexed): map a colour-coded label's colours to ids first")
            return torch.from_numpy(np.asarray(im).astype(np.int64))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{owner}: cannot read label file {path}: {e}") from None
