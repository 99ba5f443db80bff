"""Numpy mask assembly in the compact layout (spec §3.8): the torch-free twin of
`fastsam_core.ops.masks.assemble_masks` (semantics) computed like `fastsam_kernels.mask_assembly`'s
eager backend (separable, only inside each box's window, never N full frames).

Every reference path is "proto-resolution values S (logits; official: sigmoid first for the
"sigmoid" rule; official non-retina: zeroed outside the box at proto resolution) -> bilinear
resizes (align_corners=False) -> threshold -> crop to a box". A bilinear resize is separable:

    value[y, x] = sum_ty row.weight[ty, y] * (sum_tx col.weight[tx, x] * S[row.index, col.index])

with per-axis taps computed with ATen's float32 index arithmetic (so the two-tap paths use
F.interpolate's weights, x first then y, as ATen sums them). ultralytics' retina path (two resizes
in a row) is folded into one band of taps per axis, which differs from two rounded resizes by
float32 rounding only; the GEMV and sigmoid also round differently from torch's. So a pixel whose
reference value lies within float32 rounding of the threshold may differ; tests/unit/
test_onnxrt_masks.py bounds this against the torch reference.

Output: `onnxrt.compact.NumpyCompactMasks` (`CompactMasks`' layout in numpy); each region is the
mask's active window (the part of its crop box where it can be set), not its tight box.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.ops.geometry import LetterboxGeometry

_F32 = np.float32
BLOCK_PIXELS = 1 << 18  # y pass in blocks of rows of about this many pixels (cache-sized)


# ---------------------------------------------------------------------- taps of one axis
@dataclass(frozen=True)
class AxisTaps:
    """out[o] = sum_t weight[t, o] * src[index[t, o]] along one axis.

    Attributes:
        index: (T, S_out) int64 source indices; weight: (T, S_out) float32.
        lo, hi: (S_out,) int64 smallest / largest source index of each output (non-decreasing).
    """

    index: np.ndarray
    weight: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


Taps = tuple[np.ndarray, np.ndarray]  # (T, out) int64 indices, (T, out) float32 weights


def _linear(in_size: int, out_size: int, inv_scale: float | None) -> Taps:
    """ATen bilinear taps (align_corners=False), float32 arithmetic: ``scale = in / out`` (or
    ``1 / scale_factor``), ``src = max(scale * (dst + 0.5) - 0.5, 0)``, ``i0 = min(floor(src),
    in - 1)``, ``lam = clamp(src - i0, 0, 1)``, ``i1 = i0 + (i0 < in - 1)``; weights (1 - lam, lam).
    """
    scale = _F32(in_size) / _F32(out_size) if inv_scale is None else _F32(inv_scale)
    dst = np.arange(out_size, dtype=_F32)
    src = np.maximum(scale * (dst + _F32(0.5)) - _F32(0.5), _F32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(_F32), _F32(0), _F32(1))
    i1 = i0 + (i0 < in_size - 1)
    return np.stack([i0, i1]), np.stack([_F32(1) - lam, lam])


def _identity(size: int) -> Taps:
    """Taps of "no resize": one tap of weight 1 per output."""
    return np.arange(size, dtype=np.int64)[None], np.ones((1, size), dtype=_F32)


def _compose(outer: Taps, inner: Taps, in_size: int) -> Taps:
    """Taps of resize(inner) then resize(outer), merged into one band of consecutive indices."""
    o_idx, o_w = outer  # (T2, out) into the intermediate axis
    i_idx, i_w = inner  # (T1, mid) into the source axis
    idx = i_idx[:, o_idx].reshape(-1, o_idx.shape[1])  # (T1 * T2, out)
    w = (i_w[:, o_idx] * o_w[None]).reshape(-1, o_idx.shape[1])  # (T1 * T2, out)
    lo = idx.min(0)  # (out,)
    band = int((idx - lo).max()) + 1
    weight = np.zeros((band, idx.shape[1]), dtype=_F32)
    cols = np.arange(idx.shape[1])
    for t in range(idx.shape[0]):  # sequential sums, like torch's scatter_add_
        weight[idx[t] - lo, cols] += w[t]
    index = np.minimum(lo[None] + np.arange(band)[:, None], in_size - 1)
    return index, weight


@functools.lru_cache(maxsize=64)
def axis_taps(
    kind: str, proto: int, frame: int, crop_start: int, crop_size: int, factor: int
) -> AxisTaps:
    """Cached taps of one axis (as `fastsam_kernels.mask_assembly.plan.axis_taps`).

    kinds: "resize" proto -> frame; "crop_resize" proto[crop_start : crop_start + crop_size] ->
    frame (official retina); "ultralytics_native" proto x factor, then that crop -> frame
    (crop_size 0: the upsampled axis as is).
    """
    if kind == "resize":
        taps = _linear(proto, frame, None)
    elif kind == "crop_resize":
        index, weight = _linear(crop_size, frame, None)
        taps = (index + crop_start, weight)
    elif kind == "ultralytics_native":
        if crop_size == 0:
            outer = _identity(frame)
        else:
            index, weight = _linear(crop_size, frame, None)
            outer = (index + crop_start, weight)
        if factor > 1:
            taps = _compose(outer, _linear(proto, proto * factor, 1.0 / factor), proto)
        else:
            taps = outer
    else:
        raise ValueError(f"unknown axis kind {kind!r}")
    index, weight = taps
    return AxisTaps(index=index, weight=weight, lo=index.min(0), hi=index.max(0))


def native_upsample_factor(proto_hw: tuple[int, int], orig_hw: tuple[int, int]) -> int:
    """8.4.190's f in {1, 2, 4} that puts the letterbox padding crop on whole pixels (as
    `ops.masks._native_upsample_factor`)."""
    hp, wp = proto_hw
    h0, w0 = orig_hw
    gain = min(4 * hp / h0, 4 * wp / w0)
    pads = (4 * hp - max(round(h0 * gain), 1), 4 * wp - max(round(w0 * gain), 1))
    return max(1 if p % 8 == 0 else 2 if p % 4 == 0 else 4 for p in pads)


def _box_span(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixels p with lo <= p < hi (float bounds: the crop rule) as [a, b) in [0, size]."""
    a = np.clip(np.ceil(lo), 0, size).astype(np.int64)
    b = np.clip(np.ceil(hi), 0, size).astype(np.int64)
    return a, b


def _axes(
    proto_hw: tuple[int, int], geometry: LetterboxGeometry, retina: bool, official: bool
) -> tuple[tuple[int, int], AxisTaps, AxisTaps]:
    """(frame (H, W), row taps, column taps) of the reference path (spec §3.8)."""
    hp, wp = proto_hw
    if not retina:
        h, w = geometry.input_hw
        return (h, w), axis_taps("resize", hp, h, 0, 0, 1), axis_taps("resize", wp, w, 0, 0, 1)
    h0, w0 = geometry.orig_hw
    if official:  # padding removed at proto resolution with int(), then one resize
        gain = min(hp / h0, wp / w0)
        pad_x, pad_y = (wp - w0 * gain) / 2, (hp - h0 * gain) / 2
        top, left = int(pad_y), int(pad_x)
        rows = axis_taps("crop_resize", hp, h0, top, int(hp - pad_y) - top, 1)
        cols = axis_taps("crop_resize", wp, w0, left, int(wp - pad_x) - left, 1)
        return (h0, w0), rows, cols
    f = native_upsample_factor((hp, wp), (h0, w0))  # x f, then scale_masks unless shapes match
    h, w = f * hp, f * wp
    if (h, w) == (h0, w0):
        top = left = ch = cw = 0
    else:
        gain = min(h / h0, w / w0)
        ch, cw = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
        top, left = round((h - ch) / 2 - 0.1), round((w - cw) / 2 - 0.1)
    rows = axis_taps("ultralytics_native", hp, h0, top, ch, f)
    cols = axis_taps("ultralytics_native", wp, w0, left, cw, f)
    return (h0, w0), rows, cols


# ---------------------------------------------------------------------- assembly
def assemble_masks(
    protos: np.ndarray,
    coeffs: np.ndarray,
    boxes_input: np.ndarray,
    boxes_orig: np.ndarray,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    postprocess: str,
    mask_rule: str = "logit",
) -> NumpyCompactMasks:
    """Binary masks of one image in the chosen reference's order of operations, window by window
    (arguments and semantics of `fastsam_core.ops.masks.assemble_masks`).

    Args:
        protos: (K, Hp, Wp) float32 prototypes of this image's own letterbox area.
        coeffs: (N, K) float32 mask coefficients.
        boxes_input: (N, 4) xyxy letterbox pixels (official: after the full-box step).
        boxes_orig: (N, 4) the same boxes in original pixels (`boxes.scale_boxes`).
        geometry: the image's letterbox geometry.
        retina: masks at the original size (True) or at the letterbox input size (False).
        postprocess: "official" or "ultralytics".
        mask_rule: official only: "logit" (> 0) or "sigmoid" (> 0.5); ultralytics is always logit.

    Returns:
        `NumpyCompactMasks` in the (H0, W0) frame if retina else (H, W); empty masks kept.
    """
    if protos.ndim != 3:
        raise ValueError(f"protos must be (K, Hp, Wp) for one image, got {tuple(protos.shape)}")
    k, hp, wp = protos.shape
    n = coeffs.shape[0] if coeffs.ndim == 2 else -1
    if n < 0 or coeffs.shape[1] != k:
        raise ValueError(f"coeffs must be (N, K) with K = {k} (protos), got {tuple(coeffs.shape)}")
    for name, boxes in (("boxes_input", boxes_input), ("boxes_orig", boxes_orig)):
        if boxes.shape != (n, 4):
            raise ValueError(f"{name} must be (N, 4) with N = {n}, got {tuple(boxes.shape)}")
    if postprocess not in ("official", "ultralytics"):
        raise ValueError(f"postprocess must be 'official' or 'ultralytics', got {postprocess!r}")
    if mask_rule not in ("logit", "sigmoid"):
        raise ValueError(f"mask_rule must be 'logit' or 'sigmoid', got {mask_rule!r}")
    official = postprocess == "official"
    sigmoid = official and mask_rule == "sigmoid"
    threshold = 0.5 if sigmoid else 0.0
    frame, rows, cols = _axes((hp, wp), geometry, retina, official)
    boxes = (boxes_orig if retina else boxes_input).astype(_F32)
    keep = None
    if official and not retina:
        # the reference scales boxes to proto pixels (float32 * python float), zeroes outside
        in_h, in_w = geometry.input_hw
        x = boxes[:, 0::2] * _F32(wp / in_w)  # (N, 2)
        y = boxes[:, 1::2] * _F32(hp / in_h)  # (N, 2)
        c0, c1 = _box_span(x[:, 0], x[:, 1], wp)
        r0, r1 = _box_span(y[:, 0], y[:, 1], hp)
        keep = np.stack([c0, r0, c1, r1], axis=1)  # (N, 4) proto box
        # output pixels whose taps touch the kept proto box: hi[o] >= start and lo[o] < stop
        oy0, oy1 = np.searchsorted(rows.hi, r0), np.searchsorted(rows.lo, r1)
        ox0, ox1 = np.searchsorted(cols.hi, c0), np.searchsorted(cols.lo, c1)
        oy1 = np.where((r1 <= r0) | (c1 <= c0), oy0, oy1)
        regions = np.stack([ox0, oy0, ox1, oy1], axis=1).astype(np.int64)  # (N, 4)
    else:
        x0, x1 = _box_span(boxes[:, 0], boxes[:, 2], frame[1])
        y0, y1 = _box_span(boxes[:, 1], boxes[:, 3], frame[0])
        regions = np.stack([x0, y0, x1, y1], axis=1)  # (N, 4)
    protos, coeffs = np.ascontiguousarray(protos, _F32), np.ascontiguousarray(coeffs, _F32)
    return _assemble(protos, coeffs, regions, keep, rows, cols, frame, sigmoid, threshold)


def _assemble(
    protos: np.ndarray,
    coeffs: np.ndarray,
    regions: np.ndarray,
    keep: np.ndarray | None,
    rows: AxisTaps,
    cols: AxisTaps,
    frame: tuple[int, int],
    sigmoid: bool,
    threshold: float,
) -> NumpyCompactMasks:
    """Per region: x pass at proto rows, active window, y pass + threshold into one flat buffer."""
    k, _, wp = protos.shape
    n = regions.shape[0]
    windows = np.zeros((n, 4), dtype=np.int64)
    pending = []
    cut = _F32(threshold - (1e-5 if threshold != 0.0 else 0.0))
    for i, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        if x1 <= x0 or y1 <= y0:
            continue
        r0, r1 = int(rows.lo[y0]), int(rows.hi[y1 - 1]) + 1  # proto rows the region samples
        values = (coeffs[i] @ protos[:, r0:r1].reshape(k, -1)).reshape(r1 - r0, wp)  # (r, Wp)
        if sigmoid:
            with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88: sigmoid 0, as torch
                values = _F32(1) / (_F32(1) + np.exp(-values))
        if keep is not None:  # official non-retina: zero outside the proto box
            kc0, kr0, kc1, kr1 = keep[i].tolist()
            values[: max(kr0 - r0, 0)] = 0
            values[max(kr1 - r0, 0) :] = 0
            values[:, :kc0] = 0
            values[:, kc1:] = 0
        col_index, col_weight = cols.index[:, x0:x1], cols.weight[:, x0:x1]  # (T, w)
        across = values[:, col_index[0]] * col_weight[0]  # (r, w) x pass
        for t in range(1, col_index.shape[0]):
            across += values[:, col_index[t]] * col_weight[t]
        row_index = rows.index[:, y0:y1] - r0  # (T, h) rows of `across`
        # active window: outside it every y tap reads values <= cut, so the pixel is false
        rows_live = (across.max(axis=1) > cut)[row_index].any(axis=0)  # (h,)
        cols_live = across.max(axis=0) > cut  # (w,)
        ys, xs = np.flatnonzero(rows_live), np.flatnonzero(cols_live)
        if ys.size == 0 or xs.size == 0:
            continue  # provably empty
        ya, yb, xa, xb = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        windows[i] = (x0 + xa, y0 + ya, x0 + xb, y0 + yb)
        weights = rows.weight[:, y0 + ya : y0 + yb]  # (T, h')
        pending.append((i, across[:, xa:xb], row_index[:, ya:yb], weights))
    sizes = (windows[:, 3] - windows[:, 1]) * (windows[:, 2] - windows[:, 0])  # (N,)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=bool)
    for i, across, row_index, row_weight in pending:
        x0, y0, x1, y1 = windows[i].tolist()
        crop = data[offsets[i] : offsets[i + 1]].reshape(y1 - y0, x1 - x0)
        step = max(1, BLOCK_PIXELS // (x1 - x0))
        for a in range(0, y1 - y0, step):  # y pass + threshold, a block of rows at a time
            b = min(a + step, y1 - y0)
            value = across[row_index[0, a:b]] * row_weight[0, a:b, None]  # (b - a, w)
            for t in range(1, row_index.shape[0]):
                value += across[row_index[t, a:b]] * row_weight[t, a:b, None]
            np.greater(value, _F32(threshold), out=crop[a:b])
    return NumpyCompactMasks(windows, data, offsets, frame)
