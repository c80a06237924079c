"""How a task's answer looks: the RGB panels of figures and overlays, and the files ``dejavu predict``
writes. Each task answers for itself (:meth:`~dejavu.tasks.Task.view`,
:meth:`~dejavu.tasks.Task.predicted_files`); these are the drawings they share.

A view is one image's map ``(H, W, 3)``, float in ``[0, 1]``; a file's content is a PIL image or a
numpy array (saved as ``.npy``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from ..data import distinct_palette

__all__ = ["DEPTH_SCALE", "LABEL_DIVISOR", "FileContent", "class_colours", "indexed_png", "inverse_depth_colours",
           "panoptic_colours", "panoptic_png", "stretched", "to_uint8"]

DEPTH_SCALE = 256.0  # 16-bit depth PNGs hold metres x 256, KITTI's convention (up to 256 m)
LABEL_DIVISOR = 1000  # panoptic ids = class x 1000 + instance (Cityscapes' and Panoptic-DeepLab's convention)

FileContent = Image.Image | np.ndarray
Palette = Sequence[Sequence[int]] | None


def class_colours(labels: np.ndarray, num_classes: int, palette: Palette = None) -> np.ndarray:
    """Class ids ``(H, W)`` in ``palette`` (default :func:`dejavu.data.distinct_palette`); ids outside
    the classes (ignored pixels) black."""
    colours = list(palette)[:num_classes] if palette else distinct_palette(num_classes)
    table = np.array([*colours, (0, 0, 0)], dtype=np.float64) / 255
    return table[np.where((labels >= 0) & (labels < num_classes), labels, num_classes)]


def panoptic_colours(classes: np.ndarray, instance: np.ndarray, num_classes: int, things: Sequence[int],
                     palette: Palette = None) -> np.ndarray:
    """A panoptic map (class and instance ``(H, W)`` each): stuff in its class colour, each thing instance
    in a colour of its own (instance k of the image: the k-th of a golden-ratio palette), void black."""
    out = class_colours(classes, num_classes, palette)
    thing = (instance > 0) & np.isin(classes, things)
    if thing.any():
        own = np.array(distinct_palette(int(instance.max()) + 7), dtype=np.float64)[6:] / 255  # skip class-like hues
        out[thing] = own[instance[thing] - 1]
    return out


def inverse_depth_colours(metres: np.ndarray) -> np.ndarray:
    """Depth ``(H, W)`` as inverse depth in magma: near is bright, as usual for depth maps."""
    from matplotlib import colormaps  # matplotlib only where a depth map is drawn

    inverse = 1 / np.clip(metres, 1e-3, None)
    return colormaps["magma"]((inverse - inverse.min()) / max(np.ptp(inverse), 1e-6))[..., :3]


def stretched(value: Tensor) -> np.ndarray:
    """Any map ``(C, H, W)`` stretched to ``[0, 1]``: one channel in grey, else its first three as RGB."""
    v = value.float().numpy()
    v = np.repeat(v, 3, 0) if len(v) == 1 else np.concatenate([v, np.zeros_like(v)])[:3]
    return ((v - v.min()) / max(np.ptp(v), 1e-6)).transpose(1, 2, 0)


def to_uint8(view: np.ndarray) -> np.ndarray:
    return (255 * view.clip(0, 1)).round().astype(np.uint8)


def indexed_png(ids: np.ndarray, num_classes: int, palette: Palette = None) -> Image.Image:
    """Class ids ``(H, W)`` as a palette PNG (the ids themselves, shown in the class colours)."""
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    colours = [tuple(c) for c in palette or distinct_palette(num_classes)]
    image.putpalette([v for c in colours[:256] for v in c])
    return image


def panoptic_png(classes: np.ndarray, instance: np.ndarray) -> Image.Image:
    """``class x 1000 + instance`` RGB-encoded as COCO's panoptic PNGs: R + 256 G + 256^2 B."""
    ids = classes.astype(np.int64) * LABEL_DIVISOR + instance
    return Image.fromarray(np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8))
