"""Parameter and FLOP counts of a YoloV8Seg, per part (backbone, neck, head) and in total."""

from __future__ import annotations

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig
from fastsam_core.model.yolov8_seg import YoloV8Seg

PARTS = ("backbone", "neck", "head")


def count_parameters(model: YoloV8Seg | nn.Module) -> dict[str, int]:
    """Parameters per part (backbone, neck, head) and in total."""
    counts = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in PARTS}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def count_flops(cfg: YoloSegConfig, imgsz: int) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one (1, 3, imgsz, imgsz) forward, per part and in total.

    Runs on the meta device: shapes only, no compute and no memory.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if imgsz <= 0 or imgsz % 32:
        raise ValueError(f"--imgsz must be a positive multiple of 32, got {imgsz}")
    with torch.device("meta"):
        model = YoloV8Seg(cfg).eval()
        images = torch.zeros(1, 3, imgsz, imgsz)  # (1, 3, S, S)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    per_module = counter.get_flop_counts()
    flops = {part: int(sum(per_module.get(f"YoloV8Seg.{part}", {}).values())) for part in PARTS}
    flops["total"] = int(counter.get_total_flops())
    return flops
