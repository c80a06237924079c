"""Fake copies of the paper datasets in their official layouts: random images and valid labels, a few
per split, so a recipe can be smoke-tested end to end (``dejavu fake-data cityscapes /tmp/cs``, then
``dejavu fit --config cityscapes/dejavu.yaml --data.root /tmp/cs ...``) before the real download.
The numbers such a run reports mean nothing; that it runs, writes its files and exports is the point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..arguments import matches

__all__ = ["FAKE_LAYOUTS", "write_fake"]

Writer = Callable[[Path, int, tuple[int, int], np.random.Generator], None]


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _cityscapes(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    ids = np.arange(34, dtype=np.uint8)  # the label ids gtFine's labelIds PNGs store
    for split, city in (("train", "aachen"), ("val", "lindau"), ("test", "berlin")):
        for i in range(n):
            stem = f"{city}_000000_{i:06d}"
            _png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(rng, size))
            _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", rng.choice(ids, size))
    for i in range(n):  # the coarse train_extra images, and pseudo-labels (train ids) under ROOT/autolabelled
        stem = f"bamberg_000000_{i:06d}_leftImg8bit"
        _png(root / "leftImg8bit" / "train_extra" / "bamberg" / f"{stem}.png", _rgb(rng, size))
        coarse = np.where(rng.random(size) < 0.5, rng.choice(ids, size), 0).astype(np.uint8)  # 0: unlabelled
        _png(root / "gtCoarse" / "train_extra" / "bamberg" / f"{stem.replace('leftImg8bit', 'gtCoarse_labelIds')}.png",
             coarse)
        _png(root / "autolabelled" / "bamberg" / f"{stem}.png", rng.integers(0, 19, size, dtype=np.uint8))


def _ade20k(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    base = root / "ADEChallengeData2016"
    for split in ("training", "validation"):
        for i in range(n):
            _png(base / "images" / split / f"ADE_{split}_{i + 1:08d}.jpg", _rgb(rng, size))
            _png(base / "annotations" / split / f"ADE_{split}_{i + 1:08d}.png",
                 rng.integers(0, 151, size, dtype=np.uint8))


def _camvid(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    for split, sequence in (("train", "0001TP"), ("val", "0016E5"), ("test", "Seq05VD")):
        for i in range(n):
            _png(root / split / f"{sequence}_{i:05d}.png", _rgb(rng, size))
            _png(root / f"{split}annot" / f"{sequence}_{i:05d}.png", rng.integers(0, 12, size, dtype=np.uint8))


def _coco_panoptic(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    from .coco import STUFF_NAMES, THING_NAMES

    categories = [{"id": i + 1, "name": name, "isthing": int(i < len(THING_NAMES))}
                  for i, name in enumerate(THING_NAMES + STUFF_NAMES)]
    for split in ("train", "val"):
        images, annotations = [], []
        for i in range(n):
            name = f"{i:012d}"
            _png(root / f"{split}2017" / f"{name}.jpg", _rgb(rng, size))
            classes = rng.choice(len(categories), 4, replace=False)  # four segments in vertical stripes
            ids = np.repeat(np.arange(1, 5), -(-size[1] // 4))[: size[1]][None].repeat(size[0], 0)
            _png(root / "annotations" / f"panoptic_{split}2017" / f"{name}.png",
                 np.stack([ids, 0 * ids, 0 * ids], -1).astype(np.uint8))
            images.append({"id": i, "file_name": f"{name}.jpg", "height": size[0], "width": size[1]})
            annotations.append({"image_id": i, "file_name": f"{name}.png", "segments_info": [
                {"id": s + 1, "category_id": int(c) + 1, "iscrowd": 0} for s, c in enumerate(classes)]})
        (root / "annotations" / f"panoptic_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def _nyud(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    for split in ("train", "val"):
        for i in range(n):
            normal = rng.normal(size=(*size, 3)).astype(np.float32)
            arrays = {"image": rng.random((*size, 3), np.float32), "depth": rng.random((*size, 1), np.float32) * 5,
                      "label": rng.integers(-1, 13, size).astype(np.float32),
                      "normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True)}
            for folder, array in arrays.items():
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                np.save(root / split / folder / f"{i}.npy", array)


def _kitti(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    """The Eigen split with annotated depth (``kitti``) and monodepth2's video split files (``kitti_raw``)."""
    date, drive = "2011_09_26", "2011_09_26_drive_0002_sync"
    lines = []
    for frame in range(n + 2):  # video needs a frame on either side of each listed one
        name = f"{frame:010d}.png"
        _png(root / "raw" / date / drive / "image_02" / "data" / name, _rgb(rng, size))
        depth = np.where(rng.random(size) < 0.2, rng.integers(256, 80 * 256, size), 0).astype(np.uint16)
        _png(root / "gt" / drive / "proj_depth" / "groundtruth" / "image_02" / name, depth)
        lines.append(f"{date}/{drive}/image_02/data/{name} {drive}/proj_depth/groundtruth/image_02/{name} 721.5377")
    (root / "raw" / date / "calib_cam_to_cam.txt").write_text(
        f"S_rect_02: {size[1]} {size[0]}\nP_rect_02: 721.5 0 {size[1] / 2} 0 0 721.5 {size[0] / 2} 0 0 0 1 0\n")
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (root / "splits" / f"eigen_{split}_files_with_gt.txt").write_text("\n".join(lines[:n]) + "\n")
    for split in ("train", "val"):
        (root / "splits" / f"{split}_files.txt").write_text("".join(f"{date}/{drive} {f} l\n" for f in range(1, n + 1)))


def _pascal_context(root: Path, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    """VOC2010's images and split lists, the Context label maps (``.mat``) over 459 classes and their names."""
    from scipy.io import savemat

    from .pascal_context import CLASSES

    names = [f"other{i}" for i in range(1, 460)]
    kept = rng.choice(459, 59, replace=False)  # where the 59 benchmark classes sit among the 459
    for place, name in zip(kept, CLASSES[1:], strict=True):
        names[place] = name
    (root / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("".join(f"{i + 1}: {name}\n" for i, name in enumerate(names)))
    (root / "59_labels.txt").write_text("".join(f"{place + 1}: {name}\n" for place, name in zip(kept, CLASSES[1:],
                                                                                             strict=True)))
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "trainval").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        stems = [f"2008_{split == 'val':01d}{i:05d}" for i in range(n)]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems))
        for stem in stems:
            _png(root / "JPEGImages" / f"{stem}.jpg", _rgb(rng, size))
            savemat(root / "trainval" / f"{stem}.mat", {"LabelMap": rng.integers(1, 460, size).astype(np.uint16)})


FAKE_LAYOUTS: dict[str, tuple[Writer, tuple[int, int]]] = {  # name: writer, its images' default (H, W)
    "cityscapes": (_cityscapes, (128, 256)), "ade20k": (_ade20k, (128, 128)), "camvid": (_camvid, (90, 120)),
    "coco_panoptic": (_coco_panoptic, (128, 128)), "nyud": (_nyud, (96, 128)), "kitti": (_kitti, (96, 320)),
    "pascal_context": (_pascal_context, (96, 128)),
}


def write_fake(name: str, root: str | Path, images: int = 4, size: tuple[int, int] | None = None,
               seed: int = 0) -> Path:
    """Write a fake copy of dataset ``name`` (:data:`FAKE_LAYOUTS`) under ``root``, ``images`` per split at
    ``size`` ``(H, W)`` (default: the layout's own); return ``root``, which ``--data.root`` then takes.

    Raises:
        ValueError: an unknown name, fewer than 1 image, a side below 8, or a ``root`` that holds files.

    Example:
        >>> import tempfile
        >>> from dejavu.data import Cityscapes
        >>> root = write_fake("cityscapes", tempfile.mkdtemp(), images=2, size=(16, 32))
        >>> len(Cityscapes(root, "val")), tuple(Cityscapes(root, "val")[0]["image"].shape)
        (2, (3, 16, 32))
    """
    if name not in FAKE_LAYOUTS:
        raise ValueError(f"write_fake: unknown dataset {name!r}; choose from {sorted(FAKE_LAYOUTS)}")
    writer, default = FAKE_LAYOUTS[name]
    size = tuple(size) if size is not None else default
    if not matches(images, int) or images < 1:
        raise ValueError(f"write_fake: images must be an int >= 1, got {images!r}")
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"write_fake: size must be (H, W) with sides of at least 8, got {size!r}")
    root = Path(root).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"write_fake: {root} exists and is not an empty folder; give a new folder")
    writer(root, images, size, np.random.default_rng(seed))
    return root
