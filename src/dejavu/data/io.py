"""Reading dataset files: images at 8 or 16 bits, label maps as class ids, and folder listings that
do not care how an extension is capitalised. Every error names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image", "read_label"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of ``folder`` whose extension is one of ``suffixes`` in any case (``.PNG`` too), sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def read_image(path: Path, owner: str = "dejavu", exif: bool = False) -> Tensor:
    """An image file as ``(3, H, W)`` float32 in ``[0, 1]``: 8-bit grey or colour, and 16-bit grey, whose
    16 bits are kept instead of saturating (Pillow reads it as ``I;16``). ``owner`` (the reader's name)
    starts error messages. ``exif``: turn the image as its EXIF orientation says, as a photo viewer
    does (for photos; datasets' labels are drawn on the stored pixels, so their readers leave it off).

    Raises:
        ValueError: the file cannot be decoded (names it).
    """
    try:
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened) if exif else opened
            if im.mode.startswith("I;16") or im.mode == "I":
                array = np.asarray(im, dtype=np.float32) / (65535.0 if im.mode.startswith("I;16") else 4294967295.0)
                image = torch.from_numpy(array)[None].expand(3, -1, -1)
            else:
                image = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float().div_(255)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{owner}: cannot read image file {path}: {str(e).strip() or type(e).__name__}") from None
    return image.contiguous()


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
