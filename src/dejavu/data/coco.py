"""COCO panoptic (Kirillov et al., 2019) in its official layout: 133 categories (80 things, 53 stuff),
segments stored as RGB-encoded ids (``id = R + 256 G + 256^2 B``) in one PNG per image and
described in ``panoptic_{split}2017.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .base import DenseDataset, Item, distinct_palette
from .io import read_image

__all__ = ["COCOPanoptic"]

THING_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
STUFF_NAMES = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood", "flower", "fruit",
    "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform", "playingfield", "railroad", "river",
    "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent", "towel", "wall-brick", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "window-blind", "window-other", "tree-merged", "fence-merged", "ceiling-merged",
    "sky-other-merged", "cabinet-merged", "table-merged", "floor-other-merged", "pavement-merged", "mountain-merged",
    "grass-merged", "dirt-merged", "paper-merged", "food-other-merged", "building-other-merged", "rock-merged",
    "wall-other-merged", "rug-merged",
)
LAYOUT = ("ROOT/{train,val}2017/*.jpg, ROOT/annotations/panoptic_{train,val}2017.json and the PNGs in "
          "ROOT/annotations/panoptic_{train,val}2017/ (or ROOT/panoptic_{train,val}2017/)")


class COCOPanoptic(DenseDataset):
    """COCO panoptic, 133 classes in the order of their category ids (things, ids 1-90, come first:
    classes 0-79), ignore label 255.

    Items: ``image``, ``semantic`` ``(H, W)`` int64 (255 on unlabelled pixels and crowd regions, which
    panoptic quality leaves out too) and ``instance`` ``(H, W)`` int64 (each thing segment numbered
    from 1 in its image, 0 on stuff and unlabelled pixels), for :class:`dejavu.tasks.Panoptic`.
    Images differ in size: validate with ``batch_size`` 1 or resize them.

    Args:
        root: the folder holding ``train2017/``, ``val2017/`` and ``annotations/``.
        split: ``"train"`` or ``"val"``.
        transform: applied to each item.

    Raises:
        FileNotFoundError: a missing folder or annotation file (naming it and the expected layout).
        ValueError: an unknown split; an annotation file that is not COCO panoptic JSON, whose
            categories are not COCO's, that has no annotations or annotates unlisted images; on
            reading, an unreadable PNG or a segment id the JSON does not describe (naming the file).
    """

    classes = THING_NAMES + STUFF_NAMES
    num_classes, ignore_index = 133, 255
    things = tuple(range(len(THING_NAMES)))
    palette = tuple(distinct_palette(133))
    targets = ("semantic", "instance")

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "val"):
            raise ValueError(f"COCOPanoptic: split must be 'train' or 'val', got {split!r}")
        root = Path(root).expanduser()
        json_path = root / "annotations" / f"panoptic_{split}2017.json"
        png_dirs = [root / "annotations" / f"panoptic_{split}2017", root / f"panoptic_{split}2017"]
        image_dir = root / f"{split}2017"
        for need in (image_dir, json_path):
            if not need.exists():
                raise FileNotFoundError(f"COCOPanoptic: missing {need}; expected layout {LAYOUT}")
        png_dir = next((d for d in png_dirs if d.is_dir()), None)
        if png_dir is None:
            raise FileNotFoundError(f"COCOPanoptic: missing the PNG folder {png_dirs[0]} (or {png_dirs[1]}); unzip "
                                    f"panoptic_{split}2017.zip there; expected layout {LAYOUT}")
        meta = self._read_json(json_path)
        self.category = self._categories(meta["categories"], json_path)  # category id -> class
        files = {im["id"]: im["file_name"] for im in meta["images"]}
        if not meta["annotations"]:  # an empty dataset would train on nothing, or fail far from here
            raise ValueError(f"COCOPanoptic: {json_path} has no annotations; give the panoptic JSON of a split")
        unknown = [a["image_id"] for a in meta["annotations"] if a.get("image_id") not in files]
        if unknown:
            raise ValueError(f"COCOPanoptic: {json_path} annotates image_id {unknown[0]!r}, which its images do not "
                             f"list ({len(unknown)} such annotations)")
        self.json_path = json_path
        self.items = [(image_dir / files[a["image_id"]], png_dir / a["file_name"], a["segments_info"])
                      for a in sorted(meta["annotations"], key=lambda a: a["file_name"])]

    @staticmethod
    def _read_json(path: Path) -> dict:
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"COCOPanoptic: {path} is not JSON: {e}") from None
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise ValueError(f"COCOPanoptic: {path} is not COCO panoptic JSON: it has no {missing[0]!r} entry")
        return meta

    def _categories(self, categories: list[dict], path: Path) -> dict[int, int]:
        ordered = sorted(categories, key=lambda c: c["id"])
        names = tuple(c["name"] for c in ordered)
        things = tuple(i for i, c in enumerate(ordered) if c.get("isthing"))
        if names != self.classes or things != self.things:
            raise ValueError(f"COCOPanoptic: the categories of {path} are not COCO panoptic's 133 ({len(names)} "
                             "found, or another order or isthing); for another panoptic dataset in this format, "
                             "subclass COCOPanoptic with its classes and things")
        return {c["id"]: i for i, c in enumerate(ordered)}

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Item:
        image_path, png_path, segments = self.items[index]
        image = read_image(image_path, "COCOPanoptic")
        try:
            with Image.open(png_path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"COCOPanoptic: cannot read panoptic PNG {png_path}: {e}") from None
        ids = torch.from_numpy(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2])
        if image.shape[-2:] != ids.shape:
            raise ValueError(f"COCOPanoptic: image {image_path} and its PNG {png_path} differ in size")
        # (class, instance) per segment id: void (id 0) and crowds are ignored, things numbered from 1
        pairs = {0: (self.ignore_index, 0)}
        for number, seg in enumerate(segments, start=1):
            if seg.get("category_id") not in self.category:
                raise ValueError(f"COCOPanoptic: segment {seg.get('id')} of {png_path.name} has category_id "
                                 f"{seg.get('category_id')!r}, which the categories of {self.json_path} do not list")
            cls = self.category[seg["category_id"]]
            pairs[seg["id"]] = ((self.ignore_index, 0) if seg.get("iscrowd")
                                else (cls, number if cls in self.things else 0))
        present, inverse = torch.unique(ids, return_inverse=True)  # one pass over the pixels
        stray = [i for i in present.tolist() if i not in pairs]
        if stray:
            raise ValueError(f"COCOPanoptic: {png_path} has segment id {stray[0]}, which its segments_info in "
                             f"{self.json_path} does not describe")
        semantic, instance = torch.tensor([pairs[i] for i in present.tolist()])[inverse].unbind(-1)
        return {"image": image, "semantic": semantic, "instance": instance}
