"""Resampling of `NumpyCompactMasks` to another frame: the numpy twin of
`fastsam_core.compact_resample.resize_masks` (same index arithmetic, float32 like ATen), tested
against it in `tests/unit/test_onnxrt_results.py`. Non-retina masks live in the letterbox frame;
this maps them to the original image crop by crop, never densifying.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from fastsam_core.onnxrt.compact import NumpyCompactMasks, as_hw

ResizeMode = Literal["nearest", "bilinear"]
AxisMap = tuple[np.ndarray, np.ndarray, np.ndarray]  # per output index: low, high, high weight


def resize_masks(
    masks: NumpyCompactMasks,
    out_hw: Sequence[int],
    window: Sequence[int] | None = None,
    mode: ResizeMode = "nearest",
) -> NumpyCompactMasks:
    """Take `window` (top, left, height, width) of the masks' frame and resize it to `out_hw`
    ("nearest": floor(dst * in / out); "bilinear": align_corners=False, then > 0.5)."""
    out_h, out_w = as_hw(out_hw)
    height, width = masks.image_hw
    top, left, win_h, win_w = (0, 0, height, width) if window is None else map(int, window)
    if (
        top < 0
        or left < 0
        or win_h <= 0
        or win_w <= 0
        or top + win_h > height
        or left + win_w > width
    ):
        raise ValueError(
            f"window (top, left, height, width) must lie inside the {masks.image_hw} frame "
            f"with positive size, got {tuple(window) if window is not None else None}"
        )
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    if len(masks) == 0 or out_h == 0 or out_w == 0:
        return NumpyCompactMasks.empty((out_h, out_w))
    rows, cols = _axis_map(win_h, out_h, mode), _axis_map(win_w, out_w, mode)
    regions, crops = [], []
    for i, (x0, y0, x1, y1) in enumerate(masks.regions.tolist()):
        region = (x0 - left, y0 - top, x1 - left, y1 - top)  # window coordinates
        region_out, crop_out = _resize_crop(masks.crop(i), region, rows, cols, mode)
        regions.append(region_out)
        crops.append(crop_out)
    return NumpyCompactMasks.from_crops(np.array(regions, np.int64), crops, (out_h, out_w))


def _axis_map(in_size: int, out_size: int, mode: str) -> AxisMap:
    """ATen's source indices in float32 with scale = in / out (equal to F.interpolate)."""
    dst = np.arange(out_size, dtype=np.float32)
    scale = np.float32(in_size / out_size)
    if mode == "nearest":
        low = np.minimum(np.floor(dst * scale).astype(np.int64), in_size - 1)
        return low, low, np.zeros_like(dst)
    src = np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, src - low.astype(np.float32)


def _output_span(axis: AxisMap, lo: int, hi: int) -> tuple[int, int]:
    """Output index range [a, b) whose source samples touch source range [lo, hi)."""
    hits = np.flatnonzero((axis[1] >= lo) & (axis[0] < hi))
    return (0, 0) if hits.size == 0 else (int(hits[0]), int(hits[-1]) + 1)


def _resize_crop(
    crop: np.ndarray, region: tuple[int, int, int, int], rows: AxisMap, cols: AxisMap, mode: str
) -> tuple[list[int], np.ndarray]:
    x0, y0, x1, y1 = region
    oy0, oy1 = _output_span(rows, y0, y1)
    ox0, ox1 = _output_span(cols, x0, x1)
    if oy1 <= oy0 or ox1 <= ox0 or crop.size == 0:
        return [0, 0, 0, 0], np.zeros((0, 0), dtype=bool)
    if mode == "nearest":
        src_y, src_x = rows[0][oy0:oy1] - y0, cols[0][ox0:ox1] - x0  # (h_out,), (w_out,)
        return [ox0, oy0, ox1, oy1], crop[src_y][:, src_x]
    h, w = crop.shape
    # One zero of padding on each side: samples just outside the region read background.
    padded = np.zeros((h + 2, w + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = crop
    y_lo = (rows[0][oy0:oy1] - y0 + 1).clip(0, h + 1)  # (h_out,) padded-crop rows
    y_hi = (rows[1][oy0:oy1] - y0 + 1).clip(0, h + 1)
    wy = rows[2][oy0:oy1, None]  # (h_out, 1)
    x_lo = (cols[0][ox0:ox1] - x0 + 1).clip(0, w + 1)  # (w_out,)
    x_hi = (cols[1][ox0:ox1] - x0 + 1).clip(0, w + 1)
    wx = cols[2][None, ox0:ox1]  # (1, w_out)
    top, bottom = padded[y_lo], padded[y_hi]  # (h_out, w + 2)
    one = np.float32(1)
    # ATen's order: h0*(w0*a + w1*b) + h1*(w0*c + w1*d), all float32.
    value = (one - wy) * ((one - wx) * top[:, x_lo] + wx * top[:, x_hi]) + wy * (
        (one - wx) * bottom[:, x_lo] + wx * bottom[:, x_hi]
    )  # (h_out, w_out)
    return [ox0, oy0, ox1, oy1], value > 0.5
