"""Datasets with dense ground truth: procedural scenes (no download), and CamVid, Cityscapes, ADE20K,
COCO panoptic, NYUD-v2, PASCAL-Context, KITTI depth and a folder of your own read from their official
layouts on disk."""

from .ade20k import ADE20K
from .base import DenseDataset, LabelPairs, distinct_palette
from .camvid import CAMVID_CLASSES, CamVid
from .cityscapes import Cityscapes
from .coco import COCOPanoptic
from .folder import ImageFolder
from .kitti import KITTIDepth, KITTIRaw
from .nyud import NYUDv2
from .pascal_context import PascalContext
from .synthetic import CLASSES, SyntheticScenes, SyntheticVideo, render_scene

__all__ = ["ADE20K", "CAMVID_CLASSES", "CLASSES", "COCOPanoptic", "CamVid", "Cityscapes", "DenseDataset", "ImageFolder",
           "KITTIDepth", "KITTIRaw", "LabelPairs", "NYUDv2", "PascalContext", "SyntheticScenes", "SyntheticVideo",
           "distinct_palette", "render_scene"]
