"""Fine-tuning YOLOv8-seg / FastSAM: loss (spec §6), data, augmentations and the trainer."""

from fastsam_core.train.augment import NO_AUGMENT, AugmentConfig
from fastsam_core.train.dataset import DatasetIndex, load_dataset
from fastsam_core.train.loss import LossOutput, SegTargets, YoloSegLoss
from fastsam_core.train.synthetic import make_synthetic_dataset
from fastsam_core.train.trainer import TrainConfig, Trainer

__all__ = [
    "NO_AUGMENT",
    "AugmentConfig",
    "DatasetIndex",
    "LossOutput",
    "SegTargets",
    "TrainConfig",
    "Trainer",
    "YoloSegLoss",
    "load_dataset",
    "make_synthetic_dataset",
]
