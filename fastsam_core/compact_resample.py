"""Resampling of `CompactMasks` to another frame, crop by crop (spec §3.8, §4.1, §4.2).

Non-retina masks live in the letterbox frame; `resize_masks` maps them to the original image
without densifying: each output crop is computed from its own input crop only, with the index
arithmetic of `torch.nn.functional.interpolate` so the result equals interpolating the dense
window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from fastsam_core.compact_masks import CompactMasks, as_hw

ResizeMode = Literal["nearest", "bilinear"]


def resize_masks(
    masks: CompactMasks,
    out_hw: Sequence[int],
    window: Sequence[int] | None = None,
    mode: ResizeMode = "nearest",
) -> CompactMasks:
    """Map masks to another frame: take `window` of their frame and resize it to `out_hw`.

    Used to bring letterbox-resolution masks (retina off) to the original image: `window` is
    the content area (top, left, height, width) inside the letterbox; pixels outside it are
    dropped. Sampling matches `torch.nn.functional.interpolate` on the dense window:
    "nearest" (source index floor(dst * in / out), as cv2 INTER_NEAREST) or "bilinear"
    (align_corners=False on 0/1 values, then > 0.5, as ultralytics' `scale_masks`).

    Args:
        masks: N masks in an (H, W) frame.
        out_hw: (H0, W0) target frame.
        window: (top, left, height, width) inside (H, W); default the whole frame.
        mode: "nearest" or "bilinear".
    Returns:
        CompactMasks in the (H0, W0) frame, each crop computed from its own region only.
    """
    out_h, out_w = as_hw(out_hw)
    height, width = masks.image_hw
    top, left, win_h, win_w = (0, 0, height, width) if window is None else map(int, window)
    if (
        top < 0
        or left < 0
        or win_h <= 0
        or win_w <= 0
        or top + win_h > height
        or (left + win_w > width)
    ):
        raise ValueError(
            f"window (top, left, height, width) must lie inside the {masks.image_hw} frame "
            f"with positive size, got {tuple(window) if window is not None else None}"
        )
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    if len(masks) == 0 or out_h == 0 or out_w == 0:
        return CompactMasks.empty((out_h, out_w), masks.device)
    sample = _resize_nearest_crop if mode == "nearest" else _resize_bilinear_crop
    rows = _axis_map(win_h, out_h, mode, masks.device)  # per output row: source rows/weights
    cols = _axis_map(win_w, out_w, mode, masks.device)
    regions, crops = [], []
    for i, (x0, y0, x1, y1) in enumerate(masks.regions.tolist()):  # one host sync
        crop = masks.crop(i)
        # Region in window coordinates (may be partly outside the window).
        region_out, crop_out = sample(crop, (x0 - left, y0 - top, x1 - left, y1 - top), rows, cols)
        regions.append(region_out)
        crops.append(crop_out)
    region_tensor = torch.tensor(regions, dtype=torch.int64, device=masks.device)
    return CompactMasks.from_crops(region_tensor, crops, (out_h, out_w))


def _axis_map(
    in_size: int, out_size: int, mode: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each output index along one axis: (low source index, high source index, high weight).

    Mirrors ATen's index arithmetic in float32 with scale = in / out so results equal
    F.interpolate on the dense window. Nearest uses low only (weight 0).
    """
    dst = torch.arange(out_size, dtype=torch.float32, device=device)
    scale = torch.tensor(in_size / out_size, dtype=torch.float32, device=device)
    if mode == "nearest":
        low = torch.floor(dst * scale).long().clamp(max=in_size - 1)
        return low, low, torch.zeros_like(dst)
    src = ((dst + 0.5) * scale - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    return low, high, src - low.float()


def _output_span(
    axis: tuple[torch.Tensor, torch.Tensor, torch.Tensor], lo: int, hi: int
) -> tuple[int, int]:
    """Output index range [a, b) whose source samples touch source range [lo, hi)."""
    low, high, _ = axis
    touches = (high >= lo) & (low < hi)
    hits = touches.nonzero().flatten()
    if hits.numel() == 0:
        return 0, 0
    return int(hits[0]), int(hits[-1]) + 1


def _resize_nearest_crop(
    crop: torch.Tensor,
    region: tuple[int, int, int, int],
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cols: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[list[int], torch.Tensor]:
    x0, y0, x1, y1 = region
    oy0, oy1 = _output_span(rows, y0, y1)
    ox0, ox1 = _output_span(cols, x0, x1)
    if oy1 <= oy0 or ox1 <= ox0 or crop.numel() == 0:
        return [0, 0, 0, 0], crop.new_zeros((0, 0))
    src_y = rows[0][oy0:oy1] - y0  # (h_out,) rows inside the crop
    src_x = cols[0][ox0:ox1] - x0  # (w_out,)
    return [ox0, oy0, ox1, oy1], crop[src_y][:, src_x]  # (h_out, w_out)


def _resize_bilinear_crop(
    crop: torch.Tensor,
    region: tuple[int, int, int, int],
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cols: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[list[int], torch.Tensor]:
    x0, y0, x1, y1 = region
    oy0, oy1 = _output_span(rows, y0, y1)
    ox0, ox1 = _output_span(cols, x0, x1)
    h, w = crop.shape
    if oy1 <= oy0 or ox1 <= ox0 or crop.numel() == 0:
        return [0, 0, 0, 0], crop.new_zeros((0, 0))
    # Pad the crop by one zero on each side: samples just outside the region read background.
    padded = torch.zeros((h + 2, w + 2), dtype=torch.float32, device=crop.device)
    padded[1:-1, 1:-1] = crop
    y_lo = (rows[0][oy0:oy1] - y0 + 1).clamp(0, h + 1)  # (h_out,) padded-crop rows
    y_hi = (rows[1][oy0:oy1] - y0 + 1).clamp(0, h + 1)
    wy = rows[2][oy0:oy1, None]  # (h_out, 1)
    x_lo = (cols[0][ox0:ox1] - x0 + 1).clamp(0, w + 1)  # (w_out,)
    x_hi = (cols[1][ox0:ox1] - x0 + 1).clamp(0, w + 1)
    wx = cols[2][None, ox0:ox1]  # (1, w_out)
    top = padded[y_lo]  # (h_out, w + 2)
    bottom = padded[y_hi]
    # Same operation order as ATen's separable-weight sum: h0*(w0*a + w1*b) + h1*(w0*c + w1*d).
    value = (1 - wy) * ((1 - wx) * top[:, x_lo] + wx * top[:, x_hi]) + wy * (
        (1 - wx) * bottom[:, x_lo] + wx * bottom[:, x_hi]
    )  # (h_out, w_out)
    return [ox0, oy0, ox1, oy1], value > 0.5
