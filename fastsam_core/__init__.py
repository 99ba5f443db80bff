"""fastsam-core: a clean, modular PyTorch reimplementation of FastSAM."""

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.config import FASTSAM_S, FASTSAM_X, SCALES, YoloSegConfig, yolov8_seg_config
from fastsam_core.model import (
    MODEL_REGISTRY,
    SegOutput,
    YoloV8Seg,
    build_model,
    fastsam_s,
    fastsam_x,
    fuse_conv_bn,
)
from fastsam_core.predictor import Predictor
from fastsam_core.results import Results
from fastsam_core.weights import load_config, load_model

__version__ = "0.1.0"

__all__ = [
    "FASTSAM_S",
    "FASTSAM_X",
    "MODEL_REGISTRY",
    "SCALES",
    "CompactMasks",
    "Predictor",
    "Results",
    "SegOutput",
    "YoloSegConfig",
    "YoloV8Seg",
    "build_model",
    "fastsam_s",
    "fastsam_x",
    "fuse_conv_bn",
    "load_config",
    "load_model",
    "yolov8_seg_config",
]
