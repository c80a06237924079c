"""Training on Lightning: the module, the data module, run artifacts and the ``dejavu`` command.

Importing this package imports Lightning; the core (``import dejavu``) does not.
"""

from .datamodule import DenseDataModule, label_subset
from .module import DejaVuModule

__all__ = ["DejaVuModule", "DenseDataModule", "label_subset"]
