"""ADE20K (the SceneParsing challenge release, ``ADEChallengeData2016``): 150 classes; stored label 0
("other") is ignored and the rest shifted down by one, as mmsegmentation's ``reduce_zero_label``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Item, LabelPairs, distinct_palette, id_table

__all__ = ["ADE20K"]

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand",
    "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier",
    "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
LAYOUT = "ROOT/images/{training,validation}/*.jpg and ROOT/annotations/{training,validation}/*.png"


class ADE20K(LabelPairs):
    """ADE20K SceneParsing, 150 classes, ignore label 255. Images differ in size: validate with
    ``batch_size`` 1 or resize them (see :mod:`dejavu.data.transforms`).

    Args:
        root: ``ADEChallengeData2016`` or the folder holding it.
        split: ``"train"`` (``training/``) or ``"val"`` (``validation/``).
        transform: applied to each item.

    Raises:
        FileNotFoundError: a missing folder, a split without images, an image without its label.
        ValueError: an unknown split; on reading, an unreadable file or a stored label above 150.
    """

    classes, num_classes, palette, ignore_index = CLASSES, 150, tuple(distinct_palette(150)), 255
    id_map = id_table(151, {i: i - 1 for i in range(1, 151)}, 255)

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None) -> None:
        super().__init__(transform)
        folders = {"train": "training", "val": "validation"}
        if split not in folders:
            raise ValueError(f"ADE20K: split must be 'train' or 'val', got {split!r}")
        root = Path(root).expanduser()
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        labels = root / "annotations" / folders[split]
        self.pairs = self.pair_by_stem(self.image_files(root / "images" / folders[split], labels, LAYOUT), labels)
