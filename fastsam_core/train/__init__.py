"""Fine-tuning YOLOv8-seg / FastSAM: loss (spec §6), augmentations and the trainer.

Datasets live in `fastsam_core.data` (shared with `fastsam_core.eval`).
"""

from fastsam_core.train.augment import NO_AUGMENT, AugmentConfig
from fastsam_core.train.loss import LossOutput, SegTargets, YoloSegLoss
from fastsam_core.train.trainer import TrainConfig, Trainer

__all__ = [
    "NO_AUGMENT",
    "AugmentConfig",
    "LossOutput",
    "SegTargets",
    "TrainConfig",
    "Trainer",
    "YoloSegLoss",
]
