"""Extensions of DejaVu (the DejaVu paper, section 3.4) as auxiliary objectives: each is one
:class:`AuxiliaryLoss` that reads a :class:`TrainingStep` and returns its named losses. Registered as
``cyclic`` (DejaVu-CL), ``text`` (DejaVu-TS) and ``sa`` (DejaVu-SA's regeneration loss; its network
lives in :mod:`dejavu.models`); ``xtc``, MTPSL's cross-task consistency, makes the SegNet-XTC baseline
of the NYUD-v2 rows."""

from .base import AUXILIARIES, AuxiliaryLoss, TrainingStep, build_auxiliary, register_auxiliary
from .cyclic import CyclicConsistency, cyclic_consistency, frozen_norm_statistics
from .shared_attention import SharedAttentionRegeneration
from .text import TINY_CLIP, TextSupervision
from .xtc import CrossTaskConsistency

__all__ = ["AUXILIARIES", "TINY_CLIP", "AuxiliaryLoss", "CrossTaskConsistency", "CyclicConsistency",
           "SharedAttentionRegeneration", "TextSupervision", "TrainingStep", "build_auxiliary", "cyclic_consistency",
           "frozen_norm_statistics", "register_auxiliary"]
