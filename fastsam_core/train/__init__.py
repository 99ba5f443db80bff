"""Fine-tuning YOLOv8-seg / FastSAM: loss (spec §6), data, augmentations and the trainer."""
