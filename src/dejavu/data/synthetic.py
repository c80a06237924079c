"""Procedural 3-D scenes rendered by ray casting, with exact dense ground truth.

A room (floor, three walls of finite height, a distant backdrop above them) holds 3 to 6 primitives
(spheres, boxes turned about the vertical, upright cylinders) standing on the floor. Every surface
has its own solid procedural texture (flat, checker, stripes or wavy noise) in two colours; a
directional light shades the scene and the primitives cast shadows. Camera height, yaw, pitch and
field of view vary. One cast per pixel gives the colour and, from the same hit, the class, the
instance, the z-depth and the normal, so the labels are exactly those of the rendered geometry.
Panoptic view: the primitives are things (each one its own instance), background, floor and walls
are stuff.

Camera frame (depth and normals): x right, y down, z forward; depth is the hit's z coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from ..arguments import matches

__all__ = ["CLASSES", "THINGS", "SyntheticScenes", "SyntheticVideo", "render_scene", "render_sequence"]

CLASSES = ("background", "floor", "wall", "sphere", "box", "cylinder")
BACKGROUND, FLOOR, WALL, SPHERE, BOX, CYLINDER = range(6)
THINGS = (SPHERE, BOX, CYLINDER)  # countable: each primitive is an instance; the rest is stuff
_ROOM = 4  # surfaces 0..3 are the floor and the three walls, the primitives follow
_FAR = 40.0  # radius of the backdrop dome around the camera (metres)
_EPS = 1e-4

# An intersector maps ray origins (3, 1) or (3, N) and unit directions (3, N) to the hit distance
# (N,), inf where missed, and the outward unit normal (3, N) in the world frame (y up), or None when
# called with normals=False (shadow rays need the distance alone). Rays are
# stored as (3, N), so every coordinate is a contiguous row.
Intersector = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _plane(axis: int, value: float, normal: tuple[float, float, float]) -> Intersector:
    n = np.array(normal, np.float32)[:, None]

    def hit(o, d, normals=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - o[axis]) / d[axis]
        return np.where(t > _EPS, t, np.inf), np.broadcast_to(n, d.shape)
    return hit


def _sphere(c: np.ndarray, r: float) -> Intersector:
    c = c[:, None]

    def hit(o, d, normals=True):
        oc = o - c
        b = _dot(d, oc)
        disc = b * b - (_dot(oc, oc) - r * r)
        with np.errstate(invalid="ignore"):
            t = -b - np.sqrt(disc)
        t = np.where((disc > 0) & (t > _EPS), t, np.inf)
        return t, (oc + np.where(t < np.inf, t, 0) * d) / r if normals else None
    return hit


def _box(c: np.ndarray, half: np.ndarray, angle: float) -> Intersector:
    """A box turned by ``angle`` about the vertical: the slab method in its own frame."""
    cs, sn = math.cos(angle), math.sin(angle)
    rot = np.array([[cs, 0, -sn], [0, 1, 0], [sn, 0, cs]], dtype=np.float32)  # world -> box
    c, half = c[:, None], half[:, None]

    def hit(o, d, normals=True):
        lo, dl = rot @ (o - c), rot @ d
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl
            t1, t2 = (-half - lo) * inv, (half - lo) * inv
        tmin, tmax = np.fmin(t1, t2), np.fmax(t1, t2)  # fmin/fmax drop the NaN of a ray in a slab's plane
        entry = np.fmax(np.fmax(tmin[0], tmin[1]), tmin[2])
        exit_ = np.fmin(np.fmin(tmax[0], tmax[1]), tmax[2])
        t = np.where((entry < exit_) & (entry > _EPS), entry, np.inf)
        if not normals:
            return t, None
        local = np.where(tmin == entry, -np.sign(dl), 0).astype(np.float32)
        return t, rot.T @ local  # box -> world
    return hit


def _cylinder(c: np.ndarray, r: float, h: float) -> Intersector:
    """An upright cylinder standing on the floor at ``c = (x, 0, z)``, with a top cap."""
    cap = _plane(1, h, (0, 1, 0))
    top = np.array([0, 1, 0], np.float32)[:, None]

    def hit(o, d, normals=True):
        ox, oy, oz = o[0] - c[0], o[1], o[2] - c[2]
        a = d[0] ** 2 + d[2] ** 2
        b = ox * d[0] + oz * d[2]
        disc = b * b - a * (ox * ox + oz * oz - r * r)
        with np.errstate(invalid="ignore", divide="ignore"):
            ts = (-b - np.sqrt(disc)) / a
        y = oy + ts * d[1]
        ts = np.where((disc > 0) & (ts > _EPS) & (y >= 0) & (y <= h), ts, np.inf)
        tc, _ = cap(o, d, False)
        with np.errstate(invalid="ignore"):
            px, pz = ox + tc * d[0], oz + tc * d[2]
            tc = np.where((d[1] < 0) & (px * px + pz * pz <= r * r), tc, np.inf)
        if not normals:
            return np.minimum(ts, tc), None
        side = ts <= tc
        tt = np.where(ts < np.inf, ts, 0)
        normal = np.stack([(ox + tt * d[0]) / r, np.zeros_like(tt), (oz + tt * d[2]) / r])
        return np.minimum(ts, tc), np.where(side, normal, top)
    return hit


def _bounded(inner: Intersector, axis: int, lo: float, hi: float) -> Intersector:
    """Keep only hits whose coordinate on ``axis`` lies in ``[lo, hi]`` (walls of finite height)."""
    def hit(o, d, normals=True):
        t, n = inner(o, d, normals)
        with np.errstate(invalid="ignore"):
            y = o[axis] + t * d[axis]
        return np.where((y >= lo) & (y <= hi), t, np.inf), n
    return hit


_KINDS = ("flat", "checker", "stripes", "noise")


def _texture(rng: np.random.Generator, c1: np.ndarray | None = None) -> dict:
    """Random texture; ``c1`` given: a colour near it (the walls of a room share a hue)."""
    u = rng.random(14, dtype=np.float32)  # one draw for all of it: rng calls dominate otherwise
    first = 0.1 + 0.85 * u[:3] if c1 is None else np.clip(c1 + 0.16 * (u[:3] - 0.5), 0, 1)
    return {"kind": _KINDS[int(u[3] * 4)], "c1": first, "c2": 0.05 + 0.9 * u[4:7], "scale": 1.5 + 3.5 * u[7],
            "axis": u[8:11] - 0.5, "phase": 6.3 * u[11:14]}


def _albedo(tex: dict, p: np.ndarray) -> np.ndarray:
    """Solid texture of the hit points ``p`` (3, M): a blend of the texture's two colours, (3, M)."""
    kind, s = tex["kind"], tex["scale"]
    if kind == "flat":
        return np.broadcast_to(tex["c1"][:, None], p.shape)
    if kind == "checker":
        w = np.floor(p * s + 1e-3).sum(axis=0) % 2
    elif kind == "stripes":
        w = 0.5 + 0.5 * np.sin(2 * s * (tex["axis"] @ p))
    else:
        ph = tex["phase"]
        w = (np.sin(s * p[0] + ph[0]) * np.sin(s * p[1] + ph[1]) + np.sin(1.7 * s * p[2] + ph[2])) / 4 + 0.5
    return tex["c1"][:, None] + (tex["c2"] - tex["c1"])[:, None] * w


@lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """Pixel centres relative to the image centre, with a third row of ones, (3, H*W)."""
    v, u = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
    grid = np.stack([u - w / 2, v - h / 2, np.ones_like(u)]).reshape(3, -1)
    grid.flags.writeable = False
    return grid


def _camera(rng: np.random.Generator, h: int, w: int, motion: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    """Unit ray directions (3, N) in the camera and world frames, the origin (3, 1), the rotation and
    the intrinsics; ``motion`` = (sideways, forward, yaw) moves the drawn camera (video frames)."""
    f = 0.5 * w / math.tan(math.radians(rng.uniform(50, 70)) / 2)
    d_cam = _pixel_grid(h, w) / np.array([[f], [f], [1.0]], np.float32)
    d_cam /= np.sqrt(_dot(d_cam, d_cam))
    yaw, pitch = rng.uniform(-0.4, 0.4), rng.uniform(0.15, 0.5)  # pitch > 0 looks down
    x, height = rng.uniform(-1, 1), rng.uniform(1.2, 1.9)
    sideways, forward, turn = motion
    cy, sy = math.cos(yaw), math.sin(yaw)  # the move follows the heading the camera starts with
    origin = np.array([[x + sideways * cy + forward * sy], [height], [forward * cy - sideways * sy]], np.float32)
    yaw += turn
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    cam_to_world = (r_yaw @ r_pitch @ np.diag([1.0, -1.0, 1.0])).astype(np.float32)  # y down -> y up
    intrinsics = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=np.float32)
    return origin, d_cam, cam_to_world @ d_cam, cam_to_world, intrinsics


def _layout(rng: np.random.Generator) -> tuple[list[tuple[int, Intersector, dict]], list[Intersector]]:
    """The scene's surfaces (class, intersector, texture) and the primitives that cast shadows."""
    back, side, wall_h = rng.uniform(7, 11), rng.uniform(3.5, 5.5), rng.uniform(2.2, 3.5)
    surfaces = [(FLOOR, _plane(1, 0.0, (0, 1, 0)), _texture(rng))]
    wall = _texture(rng)
    for axis, value, normal in ((2, back, (0, 0, -1)), (0, -side, (1, 0, 0)), (0, side, (-1, 0, 0))):
        surfaces.append((WALL, _bounded(_plane(axis, value, normal), 1, 0.0, wall_h), _texture(rng, wall["c1"])))
    primitives = []
    for _ in range(rng.integers(3, 7)):
        kind = (SPHERE, BOX, CYLINDER)[rng.integers(3)]
        x, z, s = rng.uniform(-side + 1, side - 1), rng.uniform(2.5, back - 1), rng.uniform(0.3, 0.9)
        if kind == SPHERE:
            shape = _sphere(np.array([x, s, z], np.float32), s)
        elif kind == BOX:
            half = np.array([s, rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.9)], np.float32)
            shape = _box(np.array([x, half[1], z], np.float32), half, rng.uniform(0, math.pi))
        else:
            shape = _cylinder(np.array([x, 0, z], np.float32), s, rng.uniform(0.5, 2.0))
        surfaces.append((kind, shape, _texture(rng)))
        primitives.append(shape)
    return surfaces, primitives


def render_scene(seed: int, index: int, size: tuple[int, int],
                 motion: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict[str, np.ndarray]:
    """Render scene ``index`` of ``seed`` at ``size=(H, W)`` as NumPy arrays (see :class:`SyntheticScenes`),
    the camera moved by ``motion`` = (sideways, forward, yaw) in metres and radians (a video frame:
    the same scene, light and camera otherwise). Adds ``pose``, the camera-to-world ``(4, 4)`` matrix."""
    rng = np.random.default_rng((seed, index))
    h, w = size
    origin, d_cam, d, cam_to_world, intrinsics = _camera(rng, h, w, motion)
    surfaces, primitives = _layout(rng)

    t_best = np.full(h * w, _FAR, dtype=np.float32)
    normal = -d  # the backdrop dome faces the camera
    which = np.full(h * w, -1)
    for i, (_, shape, _) in enumerate(surfaces):
        t, n = shape(origin, d)
        closer = t < t_best
        t_best = np.where(closer, t, t_best)
        normal = np.where(closer, n, normal)
        which[closer] = i

    p = origin + t_best * d
    sky = which < 0
    # colour each surface's pixels as one contiguous run: sort the pixels by surface once
    order = np.argsort(which, kind="stable")
    bounds = np.cumsum(np.bincount(which + 1, minlength=len(surfaces) + 1))
    p_sorted, colour_sorted = p[:, order], np.empty((3, h * w), dtype=np.float32)
    colour_sorted[:, : bounds[0]] = np.array([[0.55], [0.7], [0.95]]) * (0.75 + 0.25 * d[1, order[: bounds[0]]])
    for i, (_, _, tex) in enumerate(surfaces):
        colour_sorted[:, bounds[i]: bounds[i + 1]] = _albedo(tex, p_sorted[:, bounds[i]: bounds[i + 1]])
    colour = np.empty_like(colour_sorted)
    colour[:, order] = colour_sorted
    classes = np.array([BACKGROUND] + [cls for cls, _, _ in surfaces])[which + 1]
    instance = np.maximum(which - (_ROOM - 1), 0)  # primitive k (from 0) is instance k + 1; stuff is 0

    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(0.5, 1.0), rng.uniform(-1.0, -0.3)], np.float32)
    light /= np.linalg.norm(light)
    solid = ~sky
    start = p[:, solid] + 1e-3 * normal[:, solid]
    towards = np.broadcast_to(light[:, None], start.shape)
    lit = np.ones(start.shape[1], dtype=bool)
    for shape in primitives:
        lit &= shape(start, towards, False)[0] == np.inf
    shade = np.ones(h * w, dtype=np.float32)
    shade[solid] = 0.4 + 0.6 * np.clip(light @ normal[:, solid], 0, None) * lit
    image = np.clip(colour * shade, 0, 1)

    normals_cam = cam_to_world.T @ normal  # world -> camera: cam_to_world is orthonormal
    normals_cam /= np.sqrt(_dot(normals_cam, normals_cam))
    return {
        "image": image.reshape(3, h, w),
        "semantic": classes.reshape(h, w),
        "instance": instance.reshape(h, w),
        "depth": (t_best * d_cam[2]).reshape(1, h, w).astype(np.float32),
        "normals": normals_cam.reshape(3, h, w).astype(np.float32),
        "intrinsics": intrinsics,
        "pose": np.block([[cam_to_world, origin], [np.zeros((1, 3), np.float32), np.ones((1, 1), np.float32)]]),
    }


def render_sequence(seed: int, index: int, size: tuple[int, int], frames: int = 3) -> list[dict[str, np.ndarray]]:
    """``frames`` consecutive views of scene ``index`` from a camera moving smoothly (a steady step
    forward and sideways and a slow turn, drawn per scene), the middle one the scene as
    :func:`render_scene` draws it. Each frame has its exact depth, normals, labels and ``pose``."""
    rng = np.random.default_rng((seed, index, 1))  # a stream of its own: the still scene is unchanged
    step = (rng.uniform(-0.1, 0.1), rng.uniform(0.1, 0.25), rng.uniform(-0.04, 0.04))
    offsets = range(-(frames // 2), frames - frames // 2)
    return [render_scene(seed, index, size, tuple(k * s for s in step)) for k in offsets]


class SyntheticScenes(Dataset):
    """Procedural ray-cast scenes with semantic, depth and normal ground truth; no files, no download.

    Args:
        length: number of scenes.
        size: ``(H, W)`` of every image; any resolution.
        seed: scene ``i`` is a pure function of ``(seed, i)``; use different seeds for train and val.

    Item ``i`` is a dict of tensors: ``image`` ``(3, H, W)`` float32 in ``[0, 1]``; ``semantic``
    ``(H, W)`` int64 with classes :data:`CLASSES`; ``instance`` ``(H, W)`` int64, each primitive
    (the classes :data:`THINGS`) numbered from 1 in its scene, 0 on stuff; ``depth`` ``(1, H, W)``
    float32, metric z-depth ``> 0``; ``normals`` ``(3, H, W)`` float32 unit vectors in the camera
    frame (x right, y down, z forward), facing the camera; ``intrinsics`` ``(3, 3)`` float32, the pinhole camera matrix
    (pixel centres at half-integers), so ``depth * K^-1 [u, v, 1]`` gives each pixel's 3-D point.

    Raises:
        ValueError: ``length < 0`` or a side ``< 1``.

    Example:
        >>> item = SyntheticScenes(10, size=(48, 64))[3]
        >>> item["image"].shape, item["semantic"].shape, item["depth"].shape, item["normals"].shape
        (torch.Size([3, 48, 64]), torch.Size([48, 64]), torch.Size([1, 48, 64]), torch.Size([3, 48, 64]))
    """

    classes = CLASSES
    num_classes = len(CLASSES)
    things = THINGS
    targets = ("semantic", "depth", "normals")
    ignore_index = -100  # nothing is unlabelled here; kept for a uniform dataset interface

    def __init__(self, length: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> None:
        if not matches(length, int) or length < 0:
            raise ValueError(f"SyntheticScenes: length must be an int >= 0, got {length!r}")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"SyntheticScenes: size must be (H, W) with sides >= 1, got {size!r}")
        self.length, self.size, self.seed = length, (int(size[0]), int(size[1])), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"SyntheticScenes: index {index} out of range for length {self.length}")
        scene = render_scene(self.seed, index % self.length, self.size)
        return {k: torch.from_numpy(v) for k, v in scene.items() if k != "pose"}


class SyntheticVideo(SyntheticScenes):
    """Short clips of the procedural scenes for self-supervised depth: ``frames`` views (default 3) of
    each scene from a camera that moves smoothly (:func:`render_sequence`); no files, no download.

    Item ``i`` is the middle frame as :class:`SyntheticScenes` gives it (``image``, ``semantic``,
    ``depth``, ``normals``, ``intrinsics``), plus ``sources`` ``(frames - 1, 3, H, W)``, the other
    frames in time order, and ``source_poses`` ``(frames - 1, 4, 4)``, the true rigid transforms from
    the middle camera's frame to each source camera's (for training with known poses, and to check a
    pose network).

    Example:
        >>> item = SyntheticVideo(4, size=(24, 32))[1]
        >>> item["sources"].shape, item["source_poses"].shape
        (torch.Size([2, 3, 24, 32]), torch.Size([2, 4, 4]))
    """

    def __init__(self, length: int, size: tuple[int, int] = (64, 64), seed: int = 0, frames: int = 3) -> None:
        super().__init__(length, size, seed)
        if not matches(frames, int) or frames < 2:
            raise ValueError(f"SyntheticVideo: frames must be an int >= 2, got {frames!r}")
        self.frames = frames

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"SyntheticVideo: index {index} out of range for length {self.length}")
        views = render_sequence(self.seed, index % self.length, self.size, self.frames)
        middle = self.frames // 2
        target, sources = views[middle], views[:middle] + views[middle + 1:]
        item = {k: torch.from_numpy(v) for k, v in target.items() if k != "pose"}
        item["sources"] = torch.from_numpy(np.stack([v["image"] for v in sources]).astype(np.float32))
        to_source = [np.linalg.inv(v["pose"]) @ target["pose"] for v in sources]
        item["source_poses"] = torch.from_numpy(np.stack(to_source).astype(np.float32))
        return item
