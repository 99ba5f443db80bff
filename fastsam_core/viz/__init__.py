"""Pictures of what the model computes (`fastsam explain`); Pillow only."""
