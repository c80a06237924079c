"""dejavu-dense: regenerative learning (DejaVu, DDeP) for dense prediction in PyTorch.

The core (``dct``, ``redaction``, ``regeneration``, ``losses``) depends on PyTorch alone::

    import dejavu
    loss_fn = dejavu.DejaVuLoss.from_preset("cityscapes", pred_channels=19)
    out = loss_fn(images, logits)          # out.loss, out.redacted, out.regenerated
    (task_loss + out.loss).backward()
"""

from . import dct, redaction, regeneration
from .losses import DejaVuLoss, DejaVuOutput
from .regeneration import ForwardCRM, RecursiveCRM

__all__ = ["DejaVuLoss", "DejaVuOutput", "ForwardCRM", "RecursiveCRM", "dct", "redaction", "regeneration"]
__version__ = "0.1.0"
