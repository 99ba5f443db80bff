"""Geometry shared by the fast mask-assembly backends: output regions and separable bilinear taps.

Every reference path of `fastsam_core.ops.masks` is "proto-resolution values S (logits, sigmoid,
maybe zeroed outside a proto box) -> bilinear resizes -> threshold -> crop to a box". A bilinear
resize (align_corners=False, edge clamped) is separable, so output pixel (y, x) of mask n is

    value[y, x] = sum_ty row.weight[ty, y]
                  * (sum_tx col.weight[tx, x] * S_n[row.index[ty, y], col.index[tx, x]])

with per-axis taps that do not depend on the mask. This module computes those taps (ATen's float32
index arithmetic, so the two-tap paths reproduce F.interpolate's weights), the output region of each
mask (its crop box in the output frame, clipped) and, for the official non-retina path, the proto
box outside which S is zero. Only pixels inside the regions are ever computed.

Exactness: the two-tap paths use ATen's weights and order (x first, then y); ultralytics' retina
path (two resizes in a row) is folded into one three-tap band per axis, which differs from two
rounded resizes by float32 rounding only. Pixels whose reference value lies within a tiny epsilon of
the threshold may therefore flip (see tests/kernels/test_mask_assembly.py for the bound).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_core.ops.masks import MaskRule
from fastsam_core.ops.references import Postprocess


@dataclass(frozen=True)
class AxisTaps:
    """How one output axis samples one prototype axis:
    out[o] = sum_t weight[t, o] * src[index[t, o]].

    Attributes:
        index: (T, S_out) int64 source indices in [0, S_in).
        weight: (T, S_out) float32 weights.
        lo: (S_out,) int64 smallest index of each output (non-decreasing along the axis).
        hi: (S_out,) int64 largest index of each output (non-decreasing).
        lo_list, hi_list: the same as Python lists (for per-mask slicing without device syncs).
        max_span: for tile sizes 16, 32, 64: the most source pixels one tile of outputs touches.
    """

    index: torch.Tensor
    weight: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    lo_list: list[int]
    hi_list: list[int]
    max_span: dict[int, int]


@dataclass(frozen=True)
class MaskPlan:
    """Everything a backend needs besides protos and coefficients.

    Attributes:
        frame_hw: (H, W) of the output frame (original image if retina, else letterbox input).
        rows, cols: taps of the output rows / columns into the prototype rows / columns.
        regions: (N, 4) int64 [x0, y0, x1, y1) output pixels computed per mask, clipped to the
            frame; all zero for an empty region. Pixels outside are false in the reference.
        keep: (N, 4) int64 [c0, r0, c1, r1) proto pixels whose value is kept (the official
            non-retina crop at proto resolution), or None when nothing is zeroed before resizing.
        sigmoid: apply the sigmoid at proto resolution before resizing (official "sigmoid" rule).
        threshold: a pixel is set iff value > threshold (0 for logits, 0.5 for probabilities).
    """

    frame_hw: tuple[int, int]
    rows: AxisTaps
    cols: AxisTaps
    regions: torch.Tensor
    keep: torch.Tensor | None
    sigmoid: bool
    threshold: float


def _linear(
    in_size: int, out_size: int, inv_scale: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ATen bilinear taps (align_corners=False) of one axis: (2, out) int64 indices, (2, out)
    float32.

    ``scale = in / out`` in float32 (or ``1 / scale_factor`` when F.interpolate got a scale factor);
    ``src = max(scale * (dst + 0.5) - 0.5, 0)``, ``i0 = min(floor(src), in - 1)``,
    ``lam = clamp(src - i0, 0, 1)``, ``i1 = i0 + (i0 < in - 1)``; weights (1 - lam, lam).
    """
    scale = (
        torch.tensor(in_size, dtype=torch.float32) / out_size
        if inv_scale is None
        else (torch.tensor(inv_scale, dtype=torch.float32))
    )
    dst = torch.arange(out_size, dtype=torch.float32)
    src = (scale * (dst + 0.5) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    lam = (src - i0.float()).clamp(0, 1)
    i1 = i0 + (i0 < in_size - 1).long()
    return torch.stack([i0, i1]), torch.stack([1 - lam, lam])


def _identity(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of "no resize" (F.interpolate skipped): one tap of weight 1 per output."""
    return torch.arange(size)[None], torch.ones((1, size), dtype=torch.float32)


def _compose(
    outer: tuple[torch.Tensor, torch.Tensor], inner: tuple[torch.Tensor, torch.Tensor], in_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of resize(inner) followed by resize(outer), merged into one band of consecutive indices.

    outer indexes the intermediate axis; inner maps the intermediate axis to the source axis.
    Returns (B, out) indices lo + b (clamped into the source) and their summed float32 weights.
    """
    o_idx, o_w = outer  # (T2, out)
    i_idx, i_w = inner  # (T1, mid)
    idx = i_idx[:, o_idx].reshape(-1, o_idx.shape[1])  # (T1 * T2, out)
    w = (i_w[:, o_idx] * o_w[None]).reshape(-1, o_idx.shape[1])  # (T1 * T2, out)
    lo = idx.min(0).values  # (out,)
    band = int((idx - lo).max()) + 1
    weight = torch.zeros((band, idx.shape[1]), dtype=torch.float32)
    weight.scatter_add_(0, idx - lo, w)
    index = (lo[None] + torch.arange(band)[:, None]).clamp(max=in_size - 1)
    return index, weight


def _axis(taps: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> AxisTaps:
    index, weight = taps
    lo, hi = index.min(0).values, index.max(0).values
    if index.shape[1] > 1 and not (
        bool((lo[1:] >= lo[:-1]).all()) and bool((hi[1:] >= hi[:-1]).all())
    ):
        raise AssertionError("bilinear taps must be monotone along the axis")
    size = index.shape[1]
    spans = {}
    for tile in (16, 32, 64):
        last = (torch.arange(size) + tile - 1).clamp(max=size - 1)
        spans[tile] = int((hi[last] - lo + 1).max()) if size else 0
    return AxisTaps(
        index=index.to(device),
        weight=weight.to(device),
        lo=lo.to(device),
        hi=hi.to(device),
        lo_list=lo.tolist(),
        hi_list=hi.tolist(),
        max_span=spans,
    )


@functools.lru_cache(maxsize=64)
def axis_taps(
    kind: str,
    proto: int,
    frame: int,
    crop_start: int,
    crop_size: int,
    factor: int,
    device: torch.device,
) -> AxisTaps:
    """Cached taps of one axis.

    kinds:
        "resize": proto -> frame (non-retina paths).
        "crop_resize": proto[crop_start : crop_start + crop_size] -> frame (official retina).
        "ultralytics_native": proto x factor (scale_factor resize, skipped if factor == 1), then
            [crop_start : crop_start + crop_size] -> frame; with crop_size == 0 the whole
            upsampled axis is used as is (8.4.190 skips scale_masks when the shapes already match).
    """
    if kind == "resize":
        taps = _linear(proto, frame, None)
    elif kind == "crop_resize":
        index, weight = _linear(crop_size, frame, None)
        taps = (index + crop_start, weight)
    elif kind == "ultralytics_native":
        mid = proto * factor
        inner = _linear(proto, mid, 1.0 / factor) if factor > 1 else _identity(proto)
        if crop_size == 0:
            outer = _identity(frame)
        else:
            index, weight = _linear(crop_size, frame, None)
            outer = (index + crop_start, weight)
        taps = _compose(outer, inner, proto) if factor > 1 else outer  # factor 1: inner is identity
    else:
        raise ValueError(f"unknown axis kind {kind!r}")
    return _axis(taps, device)


def _box_span(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixels p with lo <= p < hi (float bounds, the crop rule) as [a, b), clipped to
    [0, size]."""
    a = torch.ceil(lo).clamp(0, size).long()
    b = torch.ceil(hi).clamp(0, size).long()
    return a, b


def _regions(
    x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor
) -> torch.Tensor:
    regions = torch.stack([x0, y0, x1, y1], dim=1)  # (N, 4)
    empty = (x1 <= x0) | (y1 <= y0)
    return torch.where(empty[:, None], torch.zeros_like(regions), regions)


def check_arguments(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    boxes_orig: torch.Tensor,
    postprocess: str,
    mask_rule: str,
) -> None:
    """Shape and option checks shared by the backends (ValueError naming expected vs got)."""
    if protos.ndim != 3:
        raise ValueError(f"protos must be (K, Hp, Wp) for one image, got {tuple(protos.shape)}")
    if coeffs.ndim != 2 or coeffs.shape[1] != protos.shape[0]:
        raise ValueError(
            f"coeffs must be (N, K) with K = {protos.shape[0]} (protos channels), got "
            f"{tuple(coeffs.shape)}"
        )
    n = coeffs.shape[0]
    for name, boxes in (("boxes_input", boxes_input), ("boxes_orig", boxes_orig)):
        if boxes.shape != (n, 4):
            raise ValueError(
                f"{name} must be (N, 4) xyxy with N = {n} (coeffs rows), got {tuple(boxes.shape)}"
            )
    if postprocess not in ("official", "ultralytics"):
        raise ValueError(f"postprocess must be 'official' or 'ultralytics', got {postprocess!r}")
    if mask_rule not in ("logit", "sigmoid"):
        raise ValueError(f"mask_rule must be 'logit' or 'sigmoid', got {mask_rule!r}")


def plan_masks(
    proto_hw: tuple[int, int],
    boxes_input: torch.Tensor,
    boxes_orig: torch.Tensor,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    postprocess: Postprocess,
    mask_rule: MaskRule,
    device: torch.device,
) -> MaskPlan:
    """Regions and taps reproducing the matching `fastsam_core.ops.masks` path (spec §3.8).

    Args:
        proto_hw: (Hp, Wp).
        boxes_input: (N, 4) xyxy letterbox pixels (crop boxes of the non-retina paths).
        boxes_orig: (N, 4) xyxy original pixels (crop boxes of the retina paths).
        geometry: the image's letterbox geometry (input_hw, orig_hw).
        retina, postprocess, mask_rule: as `fastsam_core.ops.masks.assemble_masks`
            (mask_rule only matters for "official", like the reference).
        device: where the plan's tensors live.
    """
    hp, wp = proto_hw
    official = postprocess == "official"
    sigmoid = official and mask_rule == "sigmoid"
    keep = None
    if retina:
        h0, w0 = geometry.orig_hw
        frame = (h0, w0)
        if official:  # padding removed at proto resolution with int(), then one resize
            gain = min(hp / h0, wp / w0)
            pad_x, pad_y = (wp - w0 * gain) / 2, (hp - h0 * gain) / 2
            top, left = int(pad_y), int(pad_x)
            rows = axis_taps("crop_resize", hp, h0, top, int(hp - pad_y) - top, 1, device)
            cols = axis_taps("crop_resize", wp, w0, left, int(wp - pad_x) - left, 1, device)
        else:  # x f, then scale_masks (crop round(pad - 0.1), resize), unless shapes already match
            from fastsam_core.ops.masks import _native_upsample_factor

            f = _native_upsample_factor((hp, wp), (h0, w0))
            h, w = f * hp, f * wp
            if (h, w) == (h0, w0):
                rows = axis_taps("ultralytics_native", hp, h0, 0, 0, f, device)
                cols = axis_taps("ultralytics_native", wp, w0, 0, 0, f, device)
            else:
                gain = min(h / h0, w / w0)
                ch, cw = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
                top, left = round((h - ch) / 2 - 0.1), round((w - cw) / 2 - 0.1)
                rows = axis_taps("ultralytics_native", hp, h0, top, ch, f, device)
                cols = axis_taps("ultralytics_native", wp, w0, left, cw, f, device)
        boxes = boxes_orig.to(device)
    else:
        frame = geometry.input_hw
        rows = axis_taps("resize", hp, frame[0], 0, 0, 1, device)
        cols = axis_taps("resize", wp, frame[1], 0, 0, 1, device)
        boxes = boxes_input.to(device)

    if official and not retina:
        # the reference scales boxes to proto pixels (float32 * python float) and zeroes outside
        # them
        in_h, in_w = geometry.input_hw
        x = boxes[:, 0::2].float() * (wp / in_w)  # (N, 2)
        y = boxes[:, 1::2].float() * (hp / in_h)  # (N, 2)
        c0, c1 = _box_span(x[:, 0], x[:, 1], wp)
        r0, r1 = _box_span(y[:, 0], y[:, 1], hp)
        keep = torch.stack([c0, r0, c1, r1], dim=1)  # (N, 4)
        # output pixels whose taps touch the kept proto box: hi[o] >= start and lo[o] < stop
        oy0 = torch.searchsorted(rows.hi, r0)
        oy1 = torch.searchsorted(rows.lo, r1)
        ox0 = torch.searchsorted(cols.hi, c0)
        ox1 = torch.searchsorted(cols.lo, c1)
        empty = (r1 <= r0) | (c1 <= c0)
        oy1 = torch.where(empty, oy0, oy1)
        regions = _regions(ox0, oy0, ox1, oy1)
    else:
        x0, x1 = _box_span(boxes[:, 0], boxes[:, 2], frame[1])
        y0, y1 = _box_span(boxes[:, 1], boxes[:, 3], frame[0])
        regions = _regions(x0, y0, x1, y1)
    return MaskPlan(
        frame_hw=(int(frame[0]), int(frame[1])),
        rows=rows,
        cols=cols,
        regions=regions,
        keep=keep,
        sigmoid=sigmoid,
        threshold=0.5 if sigmoid else 0.0,
    )
