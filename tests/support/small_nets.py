"""Real photos made small, and random YOLOv8-seg nets calibrated on them (fast unit tests).

A random-init network gives 0 or 300 detections; recalibrating BatchNorm on real photos and
shifting the class bias makes `conf` pass a realistic few (the oracle-pitfall recipe, in-process).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from fastsam_core.model.yolov8_seg import YoloV8Seg
from tests.support.photos import photo_paths


@functools.lru_cache(maxsize=8)
def _load(count: int, long_side: int) -> tuple[torch.Tensor, ...]:
    out = []
    for p in photo_paths()[:count]:
        with Image.open(p) as img:
            r = long_side / max(img.size)
            small = img.convert("RGB").resize((round(img.width * r), round(img.height * r)))
        out.append(torch.from_numpy(np.asarray(small).copy()))
    return tuple(out)


def small_photos(count: int, long_side: int) -> list[torch.Tensor]:
    """The first `count` bundled photos (tests/support/photos.py), long side `long_side` px
    (sizes differ), as (H, W, 3) uint8 RGB tensors (cached; callers get their own list)."""
    if len(photo_paths()) < count:
        raise ValueError(f"asked for {count} photos, {len(photo_paths())} are bundled")
    return list(_load(count, long_side))


def calibrate_random_net(
    net: YoloV8Seg, inputs: list[torch.Tensor], detections: int = 20, conf: float = 0.4
) -> YoloV8Seg:
    """BatchNorm statistics from `inputs` ((1, 3, H, W) float [0, 1] each), then a class bias so
    every input has >= `detections` anchors above `conf`. Returns `net` in eval mode."""
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the photos
        net.train()
        for x in inputs:
            net(x)
        net.eval()
        kth = min(float(net(x).class_logits.flatten().topk(detections).values[-1]) for x in inputs)
        for branch in net.head.class_branch:
            branch[-1].bias.add_(float(np.log(conf / (1 - conf))) - kth + 1e-3)
    return net
