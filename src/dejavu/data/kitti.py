"""KITTI: supervised depth on the Eigen split (:class:`KITTIDepth`), and raw video for self-supervised
depth (:class:`KITTIRaw`). Depth on the Eigen split is read in the layout BTS and AdaBins distribute: raw images under
``ROOT/raw/`` and the annotated depth maps (uint16 PNG, metres x 256, 0 unknown) under ``ROOT/gt/``,
listed by ``ROOT/splits/eigen_{train,test}_files_with_gt.txt`` (``image depth focal`` per line,
``None`` for an image without ground truth, which is left out).

Both also read the official downloads as they unpack: ``ROOT`` may be the raw data itself (the date
folders ``2011_09_26/...`` directly under it, monodepth2's ``kitti_data``, its frames PNG as downloaded or
JPEG as monodepth2 converts them), and ``depth_root`` the annotated depth download
(``data_depth_annotated``: ``{train,val}/DRIVE/proj_depth/groundtruth/image_0X/*.png``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .base import DenseDataset, Item
from .io import read_image

__all__ = ["KITTIDepth", "KITTIRaw", "depth_file", "raw_folder", "read_calibration", "read_depth_png"]

LAYOUT = ("ROOT/splits/eigen_{train,test}_files_with_gt.txt listing 'IMAGE DEPTH FOCAL', IMAGE under ROOT/raw/ "
          "(e.g. 2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png), DEPTH under ROOT/gt/ "
          "(e.g. 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png)")


def raw_folder(root: Path) -> Path:
    """Where the raw date folders are: ``ROOT/raw`` in BTS's layout, else ``ROOT`` itself (the official
    download unpacked, as monodepth2 reads it)."""
    return root / "raw" if (root / "raw").is_dir() else root


def depth_file(depth_root: Path, relative: str | Path) -> Path:
    """An annotated depth map ``DRIVE/proj_depth/...`` under ``depth_root`` directly (BTS's merged ``gt/``)
    or under its ``train/`` or ``val/`` (the official download, which splits the drives between them).
    The first candidate when none exists."""
    candidates = [depth_root / relative, depth_root / "train" / relative, depth_root / "val" / relative]
    return next((path for path in candidates if path.is_file()), candidates[0])


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
        depth_root: the annotated depth maps (default ``ROOT/gt``), merged or as the official download
            splits them into ``train/`` and ``val/``.

    Raises:
        FileNotFoundError: a missing split file or folder, or a listed file that does not exist.
        ValueError: an unknown split, a malformed line (named with its number), a split file that lists
            no image with ground truth; on reading, an unreadable file.
    """

    targets = ("depth",)

    def __init__(self, root: str | Path, split: str = "train", split_file: str | Path | None = None,
                 transform: Callable[[Item], Item] | None = None, depth_root: str | Path | None = None) -> None:
        super().__init__(transform)
        if split not in ("train", "test"):
            raise ValueError(f"KITTIDepth: split must be 'train' or 'test', got {split!r}")
        root = Path(root).expanduser()
        raw, gt = raw_folder(root), Path(depth_root).expanduser() if depth_root else root / "gt"
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
                self.pairs.append((raw / fields[0], depth_file(gt, fields[1])))
        if not self.pairs:  # an empty dataset would train on nothing, or fail far from here
            raise ValueError(f"KITTIDepth: {listing} lists no image with ground truth (lines 'IMAGE DEPTH FOCAL' "
                             "whose DEPTH is not None); give a split file that lists some")
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


def read_calibration(path: Path) -> dict[str, np.ndarray]:
    """The ``KEY: numbers`` lines of a KITTI calibration file as arrays (``calib_cam_to_cam.txt``)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, numbers = line.partition(":")
        try:
            values[key.strip()] = np.array([float(x) for x in numbers.split()], dtype=np.float64)
        except ValueError:
            continue  # the date line
    return values


class KITTIRaw(DenseDataset):
    """KITTI raw video for self-supervised depth, listed as monodepth2's split files do
    (``{split}_files.txt``, lines ``DATE/DRIVE FRAME SIDE`` with side ``l`` or ``r``):
    the target frame, its neighbours ``frame + offset`` as ``sources``, and the rectified camera's
    intrinsics (``P_rect_02`` / ``P_rect_03`` of ``DATE/calib_cam_to_cam.txt``, scaled to the image,
    pixel centres moved to half-integers as :mod:`dejavu.tasks.reprojection` expects). Where the
    annotated ground truth exists (``depth_root``), ``depth`` too, for evaluation; elsewhere ``depth``
    is all zeros (unknown).

    Args:
        root: the raw data: the official download unpacked (``DATE/DRIVE/image_0X/data/*.png`` and
            ``DATE/calib_cam_to_cam.txt`` under it; JPEG frames too, as monodepth2 converts them), or a
            folder holding it as ``raw/`` beside ``splits/`` and ``gt/``.
        split: the split file's name: ``{splits}/{split}_files.txt`` (e.g. ``train``, ``val``, ``test``).
        splits: the folder of split files, e.g. monodepth2's ``splits/eigen_zhou`` as it comes
            (default ``ROOT/splits``).
        depth_root: the annotated depth maps (default ``ROOT/gt``): ``DRIVE/proj_depth/groundtruth/...``
            directly under it or in the official download's ``train/`` and ``val/``.
        offsets: the source frames relative to the target (monodepth2: -1 and +1).
        size: ``(H, W)`` the frames are resized to (bilinear; monodepth2: 192x640), the intrinsics
            scaled with them; the ground truth keeps its native size. ``None``: native frames.
        transform: applied to each item.

    Raises:
        FileNotFoundError: a missing split file, image (target or source) or calibration file.
        ValueError: a malformed line (named with its number), or a calibration without ``P_rect``.
    """

    targets = ("depth",)
    resizes_itself = True  # the intrinsics must follow the frames' size: dejavu.training passes `size` here

    def __init__(self, root: str | Path, split: str = "train", offsets: tuple[int, ...] = (-1, 1),
                 size: tuple[int, int] | None = None, transform: Callable[[Item], Item] | None = None,
                 splits: str | Path | None = None, depth_root: str | Path | None = None) -> None:
        super().__init__(transform)
        root = Path(root).expanduser()
        self.raw, self.offsets, self.size = raw_folder(root), tuple(offsets), size
        self.depth_root = Path(depth_root).expanduser() if depth_root else root / "gt"
        listing = (Path(splits).expanduser() if splits else root / "splits") / f"{split}_files.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"KITTIRaw: split file {listing} does not exist; expected lines "
                                    "'DATE/DRIVE FRAME SIDE' (monodepth2's split files: splits=monodepth2/splits/"
                                    "eigen_zhou)")
        self.items: list[tuple[str, int, str]] = []
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[2] not in ("l", "r") or not fields[1].isdigit():
                raise ValueError(f"KITTIRaw: {listing} line {number} is not 'DATE/DRIVE FRAME l|r': {line!r}")
            self.items.append((fields[0], int(fields[1]), {"l": "02", "r": "03"}[fields[2]]))
        if not self.items:
            raise ValueError(f"KITTIRaw: {listing} lists no frame (lines 'DATE/DRIVE FRAME l|r'); give a split file "
                             "that lists some")
        for folder, frame, camera in self.items:
            for offset in (0, *self.offsets):
                if not self._image(folder, frame + offset, camera).is_file():
                    raise FileNotFoundError(f"KITTIRaw: {self._image(folder, frame + offset, camera)} does not "
                                            f"exist (frame {frame}{offset:+d} of {folder}, listed in {listing})")

    def _image(self, folder: str, frame: int, camera: str) -> Path:
        png = self.raw / folder / f"image_{camera}" / "data" / f"{frame:010d}.png"
        jpg = png.with_suffix(".jpg")  # monodepth2's conversion
        return jpg if not png.is_file() and jpg.is_file() else png

    def _intrinsics(self, folder: str, camera: str, h: int, w: int) -> torch.Tensor:
        path = self.raw / folder.split("/")[0] / "calib_cam_to_cam.txt"
        if not path.is_file():
            raise FileNotFoundError(f"KITTIRaw: calibration file {path} does not exist")
        calibration = read_calibration(path)
        if f"P_rect_{camera}" not in calibration or f"S_rect_{camera}" not in calibration:
            raise ValueError(f"KITTIRaw: {path} has no P_rect_{camera} / S_rect_{camera}")
        k = calibration[f"P_rect_{camera}"].reshape(3, 4)[:, :3].copy()
        sw, sh = calibration[f"S_rect_{camera}"][:2]
        k[0] *= w / sw
        k[1] *= h / sh
        k[:2, 2] += 0.5  # KITTI's pixel centres are at integers; ours at half-integers
        return torch.from_numpy(k.astype(np.float32))

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Item:
        folder, frame, camera = self.items[index]
        paths = [self._image(folder, frame + o, camera) for o in (0, *self.offsets)]
        images = [read_image(path, "KITTIRaw") for path in paths]
        native = images[0].shape[-2:]
        drive = folder.split("/")[-1]
        gt = depth_file(self.depth_root, Path(drive, "proj_depth/groundtruth", f"image_{camera}", f"{frame:010d}.png"))
        depth = read_depth_png(gt, owner="KITTIRaw") if gt.is_file() else torch.zeros(1, *native)
        for path, array in [*zip(paths[1:], images[1:], strict=True), (gt, depth)]:
            if array.shape[-2:] != native:  # a frame of another drive or camera, or another depth map
                raise ValueError(f"KITTIRaw: {path} is {array.shape[-1]}x{array.shape[-2]} but the frame it belongs "
                                 f"to, {paths[0]}, is {native[1]}x{native[0]}")
        frames = torch.stack(images)
        if self.size is not None and tuple(self.size) != tuple(native):
            frames = F.interpolate(frames, size=tuple(self.size), mode="bilinear", antialias=True, align_corners=False)
        return {"image": frames[0], "sources": frames[1:], "depth": depth,
                "intrinsics": self._intrinsics(folder, camera, *frames.shape[-2:])}
