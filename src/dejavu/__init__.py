"""dejavu-dense: regenerative learning (DejaVu, DDeP) for dense prediction in PyTorch.

The core (``dct``, ``redaction``, ``regeneration``, ``losses``) depends on PyTorch alone::

    import dejavu
    loss_fn = dejavu.DejaVuLoss.from_preset("cityscapes", pred_channels=19)
    out = loss_fn(images, logits)          # out.loss, out.redacted, out.regenerated
    (task_loss + out.loss).backward()
"""

from pathlib import Path

import torch

from . import dct, redaction, regeneration
from .losses import DejaVuLoss, DejaVuOutput
from .regeneration import ForwardCRM, RecursiveCRM

__all__ = ["DejaVuLoss", "DejaVuOutput", "ForwardCRM", "RecursiveCRM", "dct", "load_model", "redaction",
           "regeneration"]
__version__ = "0.1.0"


def load_model(run: str | Path) -> torch.nn.Module:
    """The trained network of a run folder (``dejavu fit --run_dir RUN``, or its ``model.safetensors``):
    the network alone, without the CRM, in eval mode on the CPU, built from ``RUN/model.json``.

    Raises:
        FileNotFoundError: not a finished run folder (the message says what it lacks).
        ValueError: an unreadable ``model.json`` or weights that do not fit it (each named).

    Example (a run of ``dejavu fit --config synthetic/segmentation_dejavu.yaml``)::

        net = dejavu.load_model("runs/synthetic/segmentation_dejavu")
        logits = net(images)                    # (B, 6, H, W) for (B, 3, H, W) images in [0, 1]
    """
    from .models.run import load_run  # the networks' libraries (timm, smp) only when a model is loaded

    return load_run(run)[0]
