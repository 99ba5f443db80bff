"""Index arithmetic of the `CompactMasks` flat layout: sizes, offsets, per-crop sums, tight boxes.

Crop i of N is stored row-major at `data[offsets[i]:offsets[i + 1]]`, its size given by its integer
region [x0, y0, x1, y1). These pure functions work on those tensors and on dense (N, H, W) masks.
"""

from __future__ import annotations

import numpy as np
import torch


def region_sizes(regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Heights and widths (N,) int64 of integer regions (N, 4) [x0, y0, x1, y1)."""
    heights = (regions[:, 3] - regions[:, 1]).clamp(min=0)
    widths = (regions[:, 2] - regions[:, 0]).clamp(min=0)
    return heights, widths


def offsets_from_sizes(numels: torch.Tensor) -> torch.Tensor:
    """(N,) element counts -> (N + 1,) int64 start offsets into the flat buffer."""
    offsets = torch.zeros(numels.numel() + 1, dtype=torch.int64, device=numels.device)
    torch.cumsum(numels, 0, out=offsets[1:])
    return offsets


def tight_boxes_dense(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) int64 [x0, y0, x1, y1) tight boxes; zeros for empty masks."""
    n, height, width = masks.shape
    if n == 0 or height == 0 or width == 0:
        return torch.zeros((n, 4), dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    nonempty = rows.any(dim=1)  # (N,)
    ar_h = torch.arange(height, device=masks.device)
    ar_w = torch.arange(width, device=masks.device)
    big = max(height, width) + 1
    y0 = torch.where(rows, ar_h, big).amin(dim=1)
    y1 = torch.where(rows, ar_h + 1, 0).amax(dim=1)
    x0 = torch.where(cols, ar_w, big).amin(dim=1)
    x1 = torch.where(cols, ar_w + 1, 0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)  # (N, 4)
    return torch.where(nonempty[:, None], boxes, torch.zeros_like(boxes)).long()


def tight_box_crop(crop: np.ndarray) -> tuple[int, int, int, int]:
    """(h, w) bool numpy crop -> (x0, y0, x1, y1) tight box of its true pixels; zeros if none.

    CPU fast path of `tight_boxes_dense` for one crop (tested equal): numpy's `any` over a bool
    axis is ~20x faster than torch's here (a 4000x5000 crop: 1.6 vs 56 ms), and the column pass
    reads only the rows between the first and last true row.
    """
    if crop.ndim != 2 or crop.dtype != np.bool_:
        raise ValueError(f"crop must be a (h, w) bool array, got {crop.dtype} {crop.shape}")
    rows = np.flatnonzero(crop.any(axis=1))  # (h,) -> indices of rows with a true pixel
    if rows.size == 0:
        return 0, 0, 0, 0
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(crop[y0:y1].any(axis=0))  # (w,) -> indices of columns
    return int(cols[0]), y0, int(cols[-1]) + 1, y1


def segment_sums(data: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N,) int64 sums of the bool segments data[offsets[i]:offsets[i+1]]."""
    n = offsets.numel() - 1
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=data.device)
    lengths = offsets[1:] - offsets[:-1]
    if data.device.type == "cpu":
        # count_nonzero on each bool view: no copy, SIMD, ~1 ms per 10 M pixels.
        arr = data.numpy()
        bounds = offsets.tolist()
        counts = [np.count_nonzero(arr[bounds[i] : bounds[i + 1]]) for i in range(n)]
        return torch.tensor(counts, dtype=torch.int64)
    # Accelerators: float64 sums are exact up to 2**53 pixels per mask.
    return torch.segment_reduce(data.double(), "sum", lengths=lengths).long()
