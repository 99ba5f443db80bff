"""Datasets shared by training and evaluation: COCO / YOLO-seg parsing, rasterised labels, images.

`train/` and `eval/` both read data through here (neither imports the other); images are decoded by
`fastsam_core.io.images`, the decoder inference uses.
"""

from fastsam_core.data.datasets import (
    DatasetIndex,
    ImageRecord,
    Instance,
    load_coco,
    load_dataset,
    load_rgb,
    load_yolo_seg,
    rasterize_instances,
)
from fastsam_core.data.synthetic import make_synthetic_dataset

__all__ = [
    "DatasetIndex",
    "ImageRecord",
    "Instance",
    "load_coco",
    "load_dataset",
    "load_rgb",
    "load_yolo_seg",
    "make_synthetic_dataset",
    "rasterize_instances",
]
