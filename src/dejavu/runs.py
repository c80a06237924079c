"""A finished run folder (``dejavu fit --run_dir``) as its network: ``model.json`` says how to build it,
``model.safetensors`` holds its weights. :func:`load_model` is the one-line form.

It sits above the tasks and the networks (it needs both), beside the extensions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from .models import create_model, load_weights
from .tasks import Task, create_task

__all__ = ["load_model", "load_run", "read_model_json", "run_folder"]


def run_folder(path: str | Path) -> Path:
    """The run folder of ``path``: the folder itself, or the one holding a ``model.json`` /
    ``model.safetensors`` path."""
    run = Path(path).expanduser()
    return run.parent if run.suffix in (".json", ".safetensors") else run


def load_model(run: str | Path) -> nn.Module:
    """The trained network of a run folder (``dejavu fit --run_dir RUN``, or its ``model.safetensors``):
    the network alone, without the CRM, in eval mode on the CPU, built from ``RUN/model.json``.

    Raises:
        FileNotFoundError: not a finished run folder (the message says what it lacks).
        ValueError: an unreadable ``model.json`` or weights that do not fit it (each named).

    Example (a run of ``dejavu fit --config synthetic/segmentation_dejavu.yaml``)::

        net = load_model("runs/synthetic/segmentation_dejavu")
        logits = net(images)                    # (B, 6, H, W) for (B, 3, H, W) images in [0, 1]
    """
    return load_run(run)[0]


def load_run(path: str | Path) -> tuple[nn.Module, Task, dict[str, Any]]:
    """The inference network (eval mode, on the CPU), its task and ``model.json`` of a run folder (or
    of a ``model.json`` / ``model.safetensors`` path inside one).

    Raises:
        FileNotFoundError: no such folder, or one without ``model.json`` and ``model.safetensors``
            (not a finished run: the message says what is missing).
    """
    run = run_folder(path)
    missing = [name for name in ("model.json", "model.safetensors") if not (run / name).is_file()]
    if not run.is_dir() or missing:
        raise FileNotFoundError(f"{run} is not a finished run folder: it lacks {' and '.join(missing) or 'itself'}; "
                                "give the --run_dir of a `dejavu fit` that completed")

    meta = read_model_json(run / "model.json")
    task = create_task(**meta["task"])
    heads = task.head_channels
    spec = dict(meta["network"])
    net = create_model(spec.pop("name"), heads, **{k: v for k, v in spec.items() if k != "encoder_weights"})
    load_weights(net, run / "model.safetensors")
    return net.eval(), task, meta


def read_model_json(path: Path) -> dict[str, Any]:
    """A run's ``model.json``: how to rebuild its network.

    Raises:
        ValueError: a file that is not JSON (truncated...) or lacks ``network`` or ``task``, naming it.
    """
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not readable JSON ({e}); it is written when a run ends: run `dejavu fit` with "
                         "--ckpt_path last to write it again, or restore the file") from None
    missing = [k for k in ("network", "task") if not isinstance(meta, dict) or not isinstance(meta.get(k), dict)]
    if missing:
        raise ValueError(f"{path} lacks its {missing[0]!r} entry (how to rebuild the network); it is not a dejavu "
                         "run's model.json, or was cut short")
    return meta
