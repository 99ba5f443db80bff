"""Complete IoU (CIoU) between paired boxes, used by the assigner and the box loss (spec §6)."""

from __future__ import annotations

import math

import torch


def complete_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v, for paired xyxy boxes.

    `v` measures aspect-ratio disagreement, `v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2`, and its
    weight `alpha = v / (1 - IoU + v + eps)` is treated as a constant (no gradient), as in the CIoU
    paper. `eps` is added to the heights (not widths) and to the union, matching the training
    reference.

    Args:
        boxes1: (..., 4) xyxy.
        boxes2: (..., 4) xyxy, broadcastable with `boxes1`.

    Returns:
        (..., 1) CIoU in [-1.5, 1].
    """
    b1_x1, b1_y1, b1_x2, b1_y2 = boxes1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = boxes2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps

    inter_w = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0)
    inter_h = (b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)).clamp(0)
    inter = inter_w * inter_h
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union

    enclose_w = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    enclose_h = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    diagonal2 = enclose_w.pow(2) + enclose_h.pow(2) + eps
    # Squared distance between centres: ((x1 + x2) / 2 difference)^2, with one division by 4.
    centre2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    v = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return iou - (centre2 / diagonal2 + v * alpha)
