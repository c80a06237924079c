"""Extensions of DejaVu (the DejaVu paper, section 3.4) as auxiliary objectives: each is one
:class:`AuxiliaryLoss` that reads a :class:`TrainingStep` and returns its named losses. DejaVu-SA's
network lives in :mod:`dejavu.models`; its loss is here."""

from .base import AuxiliaryLoss, TrainingStep
from .cyclic import CyclicConsistency, cyclic_consistency, frozen_norm_statistics
from .shared_attention import SharedAttentionRegeneration
from .text import TINY_CLIP, TextSupervision

__all__ = ["TINY_CLIP", "AuxiliaryLoss", "CyclicConsistency", "SharedAttentionRegeneration", "TextSupervision",
           "TrainingStep", "cyclic_consistency", "frozen_norm_statistics"]
