"""Extensions of the DejaVu loss (CVPR 2023, section 4): auxiliary objectives computed from its
regeneration. DejaVu-SA is a network and lives in :mod:`dejavu.models`."""

from .cyclic import CyclicConsistency, cyclic_consistency, frozen_norm_statistics
from .text import TINY_CLIP, TextSupervision

__all__ = ["TINY_CLIP", "CyclicConsistency", "TextSupervision", "cyclic_consistency", "frozen_norm_statistics"]
