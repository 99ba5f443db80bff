"""Anchor points, DFL expectation and distance-to-box decoding of the YOLOv8 head (spec §1.5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def make_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int] = (8, 16, 32),
    offset: float = 0.5,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid-cell centres of every level, P3 first, row-major (y outer, x inner).

    Args:
        feature_sizes: (Hi, Wi) of each level, e.g. ``SegOutput.feature_sizes``.
        strides: input pixels per cell of each level.
        offset: cell-centre offset (0.5).
        device, dtype: of the returned tensors.

    Returns:
        points: (A, 2) (x, y) in grid units of their level, A = sum(Hi * Wi).
        stride_tensor: (A, 1) the stride of each point's level.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(
            f"got {len(feature_sizes)} feature sizes but {len(strides)} strides; pass one stride "
            "per level"
        )
    points, stride_list = [], []
    for (h, w), stride in zip(feature_sizes, strides):
        sx = torch.arange(w, device=device, dtype=dtype) + offset  # (Wi,)
        sy = torch.arange(h, device=device, dtype=dtype) + offset  # (Hi,)
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")  # (Hi, Wi) each
        points.append(torch.stack((xx, yy), -1).reshape(-1, 2))  # (Hi*Wi, 2)
        stride_list.append(torch.full((h * w, 1), stride, device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)  # (A, 2), (A, 1)


def dfl_decode(box_dist: torch.Tensor, reg_max: int) -> torch.Tensor:
    """DFL expectation: each box side's softmax over `reg_max` bins, times the bin values 0..R-1.

    Computed as the head's fixed 1x1 convolution with weights 0..R-1 (`model.head.DFL`), so the
    result is bit-identical to `model.head.dfl(box_dist)`.

    Args:
        box_dist: (B, 4 * R, A) DFL logits, side-major (left, top, right, bottom) x R bins.
        reg_max: R, the number of bins.

    Returns:
        (B, 4, A) ltrb distances in grid units, in [0, R - 1].
    """
    B, C, A = box_dist.shape
    if C != 4 * reg_max:
        raise ValueError(f"box_dist must be (B, 4 * {reg_max}, A), got {tuple(box_dist.shape)}")
    probs = box_dist.view(B, 4, reg_max, A).transpose(2, 1).softmax(1)  # (B, R, 4, A)
    bins = torch.arange(reg_max, dtype=probs.dtype, device=probs.device).view(1, reg_max, 1, 1)
    return F.conv2d(probs, bins).view(B, 4, A)  # (B, R, 4, A) -> (B, 1, 4, A) -> (B, 4, A)


def dist2bbox(distance: torch.Tensor, points: torch.Tensor, xywh: bool = True) -> torch.Tensor:
    """Turn (left, top, right, bottom) distances from anchor points into boxes.

    Args:
        distance: (B, 4, A) ltrb distances in grid units (the DFL expectation).
        points: (A, 2) anchor points from ``make_anchors``.
        xywh: return (cx, cy, w, h) if True, else (x1, y1, x2, y2).

    Returns:
        (B, 4, A) boxes in grid units (multiply by the stride tensor for pixels).
    """
    if distance.ndim != 3 or distance.shape[1] != 4 or points.shape != (distance.shape[2], 2):
        raise ValueError(
            f"expected distance (B, 4, A) and points (A, 2), got {tuple(distance.shape)} and "
            f"{tuple(points.shape)}"
        )
    anchors = points.T.unsqueeze(0)  # (A, 2) -> (1, 2, A)
    lt, rb = distance.chunk(2, dim=1)  # (B, 2, A) each
    x1y1 = anchors - lt
    x2y2 = anchors + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim=1)  # (B, 4, A)
    return torch.cat((x1y1, x2y2), dim=1)  # (B, 4, A)


def decode_boxes(
    distance: torch.Tensor, points: torch.Tensor, stride_tensor: torch.Tensor
) -> torch.Tensor:
    """Decode DFL distances to xywh boxes in letterboxed input pixels (spec §1.5).

    Args:
        distance: (B, 4, A) ltrb distances in grid units (``dfl_decode(box_dist, R)``).
        points: (A, 2) from ``make_anchors``.
        stride_tensor: (A, 1) from ``make_anchors``.

    Returns:
        (B, 4, A) (cx, cy, w, h) in input pixels.
    """
    return dist2bbox(distance, points, xywh=True) * stride_tensor.T  # (B, 4, A) * (1, A)
