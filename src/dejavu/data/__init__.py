"""Datasets with dense ground truth: procedural scenes (no download) and CamVid."""

from .camvid import CAMVID_CLASSES, CamVid
from .synthetic import CLASSES, SyntheticScenes, render_scene

__all__ = ["CAMVID_CLASSES", "CLASSES", "CamVid", "SyntheticScenes", "render_scene"]
