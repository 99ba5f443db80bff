"""YOLOv8-seg network modules."""

from fastsam_core.model.fuse import fuse_conv_bn
from fastsam_core.model.head import SegOutput
from fastsam_core.model.yolov8_seg import (
    MODEL_REGISTRY,
    YoloV8Seg,
    build_model,
    fastsam_s,
    fastsam_x,
)

__all__ = [
    "MODEL_REGISTRY",
    "SegOutput",
    "YoloV8Seg",
    "build_model",
    "fastsam_s",
    "fastsam_x",
    "fuse_conv_bn",
]
