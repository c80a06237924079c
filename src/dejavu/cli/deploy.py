"""``dejavu predict`` and ``dejavu export``: from a trained run to prediction files and to the programs
deployment runtimes take. Both read the run's inference model (``model.json`` + ``model.safetensors``:
the network alone, never the CRM)."""

from __future__ import annotations

import argparse
import glob
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn
from tqdm import tqdm

from ..arguments import matches
from ..data.io import IMAGE_SUFFIXES, list_images, read_image
from ..models import QueryPrediction, input_size_named
from ..runs import load_run, run_folder
from ..tasks import Task
from ..tasks.views import FileContent, to_uint8
from ..training.callbacks import atomic_write, file_in_the_way
from ..weights import verify_file

__all__ = ["export_main", "load_run", "predict_main"]

FORMATS = {"onnx": "model.onnx", "exported-program": "model.pt2"}
ONNX_ONE_FILE_BYTES = 1_800_000_000  # below protobuf's 2 GB message limit, with room for the graph
# what a phone, a scanner or a web page gives, beside the datasets' PNG and JPEG; all read by Pillow
PREDICT_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp", ".tif", ".tiff", ".webp")
RUN_FILES = ("model.json", "model.safetensors", "model.pt", "crm.safetensors", "config.yaml", "metrics.json")


def _at_least(least: int, what: str) -> Callable[[str], int]:
    """An argparse type: an int of at least ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{what} must be at least {least}, got {value}")
        return value
    return parse


# ---------------------------------------------------------------------------------- export
def export(run: str | Path, fmt: str, out: Path | None = None, size: tuple[int, int] = (256, 256),
           batch: int = 2) -> tuple[Path, float]:
    """Export a run's network to ``fmt`` (``"onnx"`` or ``"exported-program"``) with a dynamic batch,
    height and width, and check it against the eager network on a random input of ``batch x 3 x size``.

    Returns:
        the file written (``RUN/model.onnx`` or ``RUN/model.pt2`` by default) and the largest absolute
        difference from the eager output.
    """
    if fmt not in FORMATS:
        raise ValueError(f"dejavu export: --format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if min(size) < 2:  # torch.export fixes a side of 1 as a constant: the program would take nothing else
        raise ValueError(f"dejavu export: --size must be at least 2 2 (a side of 1 is specialised by torch.export "
                         f"and the program would only take that size), got {' '.join(map(str, size))}")
    net, task, _ = load_run(run)
    out = Path(out) if out else run_folder(run) / FORMATS[fmt]
    _check_export_path(run_folder(run), out)
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    # by position: the network's forward may name its input anything
    dynamic = ({0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},)
    with torch.no_grad():
        try:
            output = net(x)
        except RuntimeError as e:
            raise ValueError(f"dejavu export: the network cannot run on an example of --size {size[0]} {size[1]} "
                             f"({str(e).splitlines()[0]}); give a larger --size, e.g. 256 256") from None
        expected = _tensors(output)
        if fmt == "exported-program":
            program = torch.export.export(net, (x,), dynamic_shapes=dynamic)
            atomic_write(out, lambda tmp: torch.export.save(program, tmp))
            verify_file(out, "exported program")  # a zip archive: every record against its CRC-32
            got = _tensors(torch.export.load(out).module()(x))
        else:
            try:
                import onnxruntime
            except ImportError:
                raise SystemExit("dejavu export --format onnx needs onnx, onnxscript and onnxruntime: "
                                 "pip install 'dejavu-dense[export]'") from None
            # one file when the weights fit protobuf's 2 GB limit; beyond it, the weights go to OUT.data
            # beside it (the file names that one, so both move together)
            one_file = sum(t.numel() * t.element_size() for t in net.state_dict().values()) < ONNX_ONE_FILE_BYTES
            try:
                atomic_write(out, lambda tmp: torch.onnx.export(
                    net, (x,), tmp, dynamo=True, dynamic_shapes=dynamic, input_names=["image"],
                    output_names=list(task.output_names), verbose=False, external_data=not one_file))
            except torch.onnx.errors.OnnxExporterError as e:  # its ConversionError names the operator it failed at
                op = re.search(r"target=(torch\.ops\.[\w.]+)", str(e))
                raise ValueError(f"dejavu export: the network does not convert to ONNX with a dynamic batch, height "
                                 f"and width{f' (at {op.group(1)})' if op else ''}: {_gist(e)}; --format "
                                 "exported-program keeps PyTorch's own operators") from None
            session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = tuple(torch.from_numpy(y) for y in session.run(None, {"image": x.numpy()}))
    return out, max(float((g - e).abs().max()) for g, e in zip(got, expected, strict=True))


def _gist(error: Exception) -> str:
    """The exception summary of the ONNX exporter's report, or its first line."""
    text = str(error)
    summary = re.search(r"Exception summary\s+(.+)", text)
    return (summary.group(1) if summary else text.splitlines()[0])[:300]


def _tensors(output: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """A network's output as a tuple of tensors: one for a dense network, two for a :class:`QueryPrediction`."""
    return tuple(output) if isinstance(output, tuple) else (output,)


def _check_export_path(run: Path, out: Path) -> None:
    """Refuse an ``--out`` that would replace the run's own files or cannot be a file."""
    if out.resolve().parent == run.resolve() and out.name in RUN_FILES:
        raise ValueError(f"dejavu export: --out {out} would replace the run's own {out.name}; choose another name, "
                         f"e.g. {run / 'model.onnx'}")
    if out.is_dir():
        raise ValueError(f"dejavu export: --out {out} is a folder; give a file name, e.g. {out / 'model.onnx'}")
    _check_under_folders("dejavu export", out)
    out.parent.mkdir(parents=True, exist_ok=True)


def _check_under_folders(command: str, out: Path) -> None:
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise ValueError(f"{command}: --out {out} lies under {blocking}, which is a file, not a folder")


def export_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="dejavu export", description="Export a run's inference network (no CRM) "
                                "with a dynamic batch, height and width, checked against the eager network.")
    p.add_argument("run", help="a finished run folder (holding model.json and model.safetensors)")
    p.add_argument("--format", default="onnx", choices=sorted(FORMATS),
                   help="onnx (runs in onnxruntime, TensorRT...) or exported-program (torch.export's .pt2)")
    p.add_argument("--out", type=Path, help="output file (default RUN/model.onnx or RUN/model.pt2)")
    p.add_argument("--size", type=_at_least(2, "--size"), nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="the example input's size, at least 2 2 (the exported program accepts other sizes)")
    a = p.parse_args(argv)
    out, diff = export(a.run, a.format, a.out, tuple(a.size))
    print(f"wrote {out}; largest difference from the eager network on a random input: {diff:.2e}")


# ---------------------------------------------------------------------------------- predict
def _inputs(source: str) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_dir():
        files = list_images(path, PREDICT_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(f) for f in glob.glob(source) if Path(f).suffix.lower() in PREDICT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"dejavu predict: no image in {source} (a folder, a file or a glob of "
                                f"{'/'.join(PREDICT_SUFFIXES)} files)")
    return files


def _outputs(task: Task, stem: str, overlay: bool, raw_ids: bool) -> list[str]:
    names = [name for t in task.subtasks for name in t.prediction_files(stem, raw_ids)]
    return names + ([f"{stem}_overlay.png"] if overlay else [])


def _write(content: FileContent, path: Path) -> None:
    """Save under a temporary name, then rename: a killed predict leaves no truncated file under ``path``."""
    if isinstance(content, np.ndarray):
        atomic_write(path, lambda tmp: np.save(tmp, content))
    else:
        atomic_write(path, content.save)


def _save(task: Task, raw: Tensor | QueryPrediction, stem: str, out: Path, meta: dict[str, Any], raw_ids: bool
          ) -> list[np.ndarray]:
    """Write one image's prediction files (``raw``: a batch of one); returns each subtask's view for an overlay."""
    views, palette = [], meta.get("palette")
    for t, part in zip(task.subtasks, task.split(raw), strict=True):
        value = t.predicted_map(part)[0]
        for name, content in t.predicted_files(value, stem, palette, raw_ids).items():
            _write(content, out / name)
        views.append(to_uint8(t.view(value, palette)))
    return views


def _overlay(rgb: np.ndarray, views: list[np.ndarray], task: Task, meta: dict[str, Any]) -> Image.Image:
    """The image with its classes blended in (half and half: the first subtask with a legend), beside the
    other subtasks' views, over a legend of the classes; the image beside its views when nothing has classes."""
    palette = meta.get("palette")
    legends = [t.legend(palette, meta.get("classes")) for t in task.subtasks]
    blended = next((i for i, legend in enumerate(legends) if legend), None)
    if blended is None:
        return Image.fromarray(np.concatenate([rgb, *views], axis=1))
    blend = (rgb.astype(np.float32) + views[blended]) / 2
    panels = [blend.astype(np.uint8), *(v for i, v in enumerate(views) if i != blended)]
    picture = Image.fromarray(np.concatenate(panels, axis=1))
    names = [name or f"class{i}" for i, (name, _) in enumerate(legends[blended])]
    return _with_legend(picture, names, [colour for _, colour in legends[blended]])


def _with_legend(picture: Image.Image, names: list[str], colours: list[tuple]) -> Image.Image:
    """``picture`` over rows of colour boxes and class names, as many to a row as its width holds."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(picture)
    widths = [16 + int(measure.textlength(name, font=font)) + 10 for name in names]
    rows, x = [[]], 0
    for i, width in enumerate(widths):
        if x + width > max(picture.width, width) and rows[-1]:
            rows, x = [*rows, []], 0
        rows[-1].append((i, x))
        x += width
    legend = Image.new("RGB", (picture.width, picture.height + 16 * len(rows) + 4), "white")
    legend.paste(picture, (0, 0))
    draw = ImageDraw.Draw(legend)
    for r, row in enumerate(rows):
        y = picture.height + 4 + 16 * r
        for i, x in row:
            draw.rectangle((x + 2, y + 2, x + 12, y + 12), fill=tuple(colours[i]))
            draw.text((x + 16, y + 1), names[i], fill="black", font=font)
    return legend


def predict(run: str | Path, source: str, out: str | Path, size: tuple[int, int] | None = None,
            batch_size: int = 4, device: str = "cpu", overwrite: bool = False, overlay: bool = False,
            raw_ids: bool = False) -> list[Path]:
    """Run a trained network over images and write, per image ``STEM``: segmentation as ``STEM.png``
    (indexed with the dataset's palette; ``STEM_ids.png`` the class ids when ``raw_ids``), depth as
    ``STEM_depth.png`` (uint16, metres x 256) and ``STEM_depth.npy`` (float32 metres), normals as
    ``STEM_normals.png`` (RGB = (n + 1) / 2), panoptic maps as ``STEM_panoptic.png`` (ids ``class x 1000
    + instance``, RGB-encoded as COCO's: ``R + 256 G + 256^2 B``); ``STEM_overlay.png`` when ``overlay``:
    the image with its segmentation blended in, beside the other tasks' views, over a legend of the classes.

    Every image is resized to ``size`` (default: the size the run evaluated at, from ``model.json``;
    ``None`` there: each image's own size, the images of one size in a batch run together) for the
    network, and the prediction resized back to the image's size (bilinear on the raw output).

    Raises:
        FileNotFoundError: a run folder that is not one, no image found.
        FileExistsError: an output that exists, without ``overwrite`` (named; nothing is written).
        ValueError: an unreadable image (named).
    """
    if not matches(batch_size, int) or batch_size < 1:
        raise ValueError(f"dejavu predict: --batch-size must be at least 1, got {batch_size!r}")
    if size is not None and min(size) < 1:
        raise ValueError(f"dejavu predict: --size must be at least 1 1, got {' '.join(map(str, size))}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"dejavu predict: --out {out} is a file; give a folder for the prediction files")
    _check_under_folders("dejavu predict", out)
    device = checked_device(device, "dejavu predict")
    net, task, meta = load_run(run)
    net = net.to(device)
    files = _inputs(str(source))
    size = tuple(size) if size else (tuple(meta["input_size"]) if meta.get("input_size") else None)
    expected = [out / name for f in files for name in _outputs(task, f.stem, overlay, raw_ids)]
    if len({p.name for p in expected}) != len(expected):
        raise ValueError("dejavu predict: two input images share a file stem; their outputs would collide")
    existing = [p for p in expected if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"dejavu predict: {existing[0]} exists ({len(existing)} outputs do); pass --overwrite "
                              "to replace them or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # a bar on a terminal only: in a log file it would be one long line of carriage returns
    for start in tqdm(range(0, len(files), batch_size), desc="dejavu predict", unit="batch", disable=None):
        chunk = files[start:start + batch_size]
        images = [read_image(f, "dejavu predict", exif=True) for f in chunk]
        if size:
            images_in = [F.interpolate(im[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
                         for im in images]
        else:  # each image at its own size: one pass per size in the batch
            images_in = images
        raw = _batched(net, images_in, device)
        for f, image, r in zip(chunk, images, raw, strict=True):
            if isinstance(r, QueryPrediction):
                r = r.resized(image.shape[-2:])
            else:
                r = F.interpolate(r, size=image.shape[-2:], mode="bilinear", align_corners=False)
            views = _save(task, r, f.stem, out, meta, raw_ids)
            if overlay:
                rgb = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                _write(_overlay(rgb, views, task, meta), out / f"{f.stem}_overlay.png")
    return expected


def checked_device(device: str, command: str) -> torch.device:
    """``device`` as a ``torch.device``, or a ``ValueError`` when it is malformed or this machine lacks it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{command}: --device {device!r} is not a device; give cpu, cuda, cuda:1, mps...") from None
    count = {"cuda": torch.cuda.device_count, "mps": lambda: int(torch.backends.mps.is_available())}.get(parsed.type)
    if count is not None and (parsed.index or 0) >= count():
        have = f"{count()} {parsed.type.upper()} device(s)"
        raise ValueError(f"{command}: --device {device}: this machine has {have}; use --device cpu, or install "
                         f"a PyTorch build for that device")
    return parsed


@torch.no_grad()
def _batched(net: nn.Module, images: list[Tensor], device: str) -> list[Tensor | QueryPrediction]:
    """The network's raw output for each image (a batch of one), the images of one size run together."""
    outputs: list[Tensor | QueryPrediction | None] = [None] * len(images)
    for shape in dict.fromkeys(im.shape for im in images):
        indices = [i for i, im in enumerate(images) if im.shape == shape]
        batch = torch.stack([images[i] for i in indices]).to(device)
        with input_size_named(batch, "give a larger --size"):
            raw = net(batch)
        raw = raw.apply(_on_cpu).images() if isinstance(raw, QueryPrediction) else _on_cpu(raw).split(1)
        for i, r in zip(indices, raw, strict=True):
            outputs[i] = r
    return outputs


def _on_cpu(x: Tensor) -> Tensor:
    return x.float().cpu()


def predict_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="dejavu predict", description="Run a trained network over images and "
                                "write its predictions (docs/training.md).")
    p.add_argument("run", help="a finished run folder (holding model.json and model.safetensors)")
    p.add_argument("input", help="a folder of images, one image, or a quoted glob ('photos/*.jpg')")
    p.add_argument("--out", required=True, help="folder for the prediction files")
    p.add_argument("--size", type=_at_least(1, "--size"), nargs=2, metavar=("H", "W"),
                   help="the size the network sees (default: the run's evaluation size)")
    p.add_argument("--batch-size", type=_at_least(1, "--batch-size"), default=4, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps...")
    p.add_argument("--overwrite", action="store_true", help="replace existing prediction files")
    p.add_argument("--overlay", action="store_true", help="also write STEM_overlay.png: the image with its "
                   "segmentation blended in, beside the other tasks' views, over a legend of the classes")
    p.add_argument("--raw-ids", action="store_true", help="also write segmentation class ids as a grey PNG")
    a = p.parse_args(argv)
    written = predict(a.run, a.input, a.out, a.size, a.batch_size, a.device, a.overwrite, a.overlay, a.raw_ids)
    print(f"wrote {len(written)} files to {a.out}")
