"""Separable PyTorch version of fastsam_core.mask_backends.assemble_masks_reference; same contract.

Computes only the pixels inside each mask's region (its crop box in the output frame): per mask,

    S = coeff @ protos[:, rows, cols]         logits of the proto rows/cols the region samples (r, c)
    S = sigmoid(S); S *= proto-box mask        official "sigmoid" rule / official non-retina crop only
    T = sum_t col.weight[t] * S[:, col.index[t]]      x pass, (r, w)
    V = sum_t row.weight[t] * T[row.index[t]]         y pass, (h, w)
    crop = V > threshold                       written straight into the CompactMasks flat buffer

i.e. out = Wy @ S @ Wx^T with the two-nonzero bilinear matrices applied as gathers (ATen's weights and
x-then-y order, see `plan.py`). Memory: one float (h, w) map at a time, plus the bool output.

`assemble_masks_compiled` runs the y pass + threshold (the only per-output-pixel work) through
`torch.compile(dynamic=True)`: one fused loop that reads two rows of T per output row and writes bools
(compiled once per process, reused across shapes). `assemble_masks_eager` runs the same code eagerly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_kernels.mask_assembly.plan import MaskPlan, MaskRule, Postprocess, check_arguments, plan_masks


def sample_columns(
    protos: torch.Tensor,
    coeff: torch.Tensor,
    col_index: torch.Tensor,
    col_weight: torch.Tensor,
    keep_rows: torch.Tensor | None,
    keep_cols: torch.Tensor | None,
    sigmoid: bool,
) -> torch.Tensor:
    """Proto-resolution values of one mask, resampled along x only (the small half of the work).

    Args:
        protos: (K, r, c) float32 prototype window the region samples.
        coeff: (K,) float32 coefficients of the mask.
        col_index, col_weight: (T, w) int64 taps (indices into the window columns), float32 weights.
        keep_rows, keep_cols: (r,), (c,) bool proto-box membership (official non-retina), else None.
        sigmoid: apply the sigmoid before resizing.

    Returns:
        (r, w) float32.
    """
    k, r, c = protos.shape
    values = (coeff[None] @ protos.reshape(k, r * c)).reshape(r, c)  # (1, K) @ (K, r*c) -> (r, c)
    if sigmoid:
        values = values.sigmoid()
    if keep_rows is not None and keep_cols is not None:
        values = values * (keep_rows[:, None] & keep_cols[None, :])  # zero outside the proto box
    across = values[:, col_index[0]] * col_weight[0]  # (r, w)
    for t in range(1, col_index.shape[0]):
        across = across + values[:, col_index[t]] * col_weight[t]
    return across


def sample_rows_threshold(
    across: torch.Tensor, row_index: torch.Tensor, row_weight: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Resample x-resampled values along y and threshold (the per-pixel half; compiled).

    Args:
        across: (r, w) float32 from `sample_columns`.
        row_index, row_weight: (T, h) int64 taps (indices into `across` rows), float32 weights.
        threshold: value > threshold is set.

    Returns:
        (h, w) bool. Each output row reads whole rows of `across`, so the loop vectorizes along x.
    """
    out = across[row_index[0]] * row_weight[0][:, None]  # (h, w)
    for t in range(1, row_index.shape[0]):
        out = out + across[row_index[t]] * row_weight[t][:, None]
    return out > threshold


@functools.cache
def _compiled_rows() -> Callable[..., torch.Tensor]:
    return torch.compile(sample_rows_threshold, dynamic=True)


# Crops below this many pixels (or with a side of 1, which dynamic shapes would specialize and
# recompile for) stay eager: the compiled call costs more than it saves there.
COMPILE_MIN_PIXELS = 4096


def _sample_rows_threshold_compiled(
    across: torch.Tensor, row_index: torch.Tensor, row_weight: torch.Tensor, threshold: float
) -> torch.Tensor:
    h, (r, w) = row_index.shape[1], across.shape
    if h * w < COMPILE_MIN_PIXELS or min(h, r, w) < 2:
        return sample_rows_threshold(across, row_index, row_weight, threshold)
    return _compiled_rows()(across, row_index, row_weight, threshold)


def assemble_from_plan(
    protos: torch.Tensor, coeffs: torch.Tensor, plan: MaskPlan, rows_fn: Callable[..., torch.Tensor]
) -> CompactMasks:
    """Compute every non-empty region of `plan`; `rows_fn` is `sample_rows_threshold` or its compiled form."""
    device = protos.device
    protos = protos.float()
    coeffs = coeffs.float()
    regions = plan.regions
    heights = regions[:, 3] - regions[:, 1]
    widths = regions[:, 2] - regions[:, 0]
    offsets = torch.zeros(regions.shape[0] + 1, dtype=torch.int64, device=device)
    torch.cumsum(heights * widths, 0, out=offsets[1:])
    host = torch.cat([regions.flatten(), offsets]).tolist()  # one device sync
    n = regions.shape[0]
    boxes, bounds = host[: 4 * n], host[4 * n :]
    data = torch.empty(bounds[-1], dtype=torch.bool, device=device)
    keep = plan.keep.tolist() if plan.keep is not None else None
    rows, cols = plan.rows, plan.cols
    for i in range(n):
        x0, y0, x1, y1 = boxes[4 * i : 4 * i + 4]
        if x1 <= x0 or y1 <= y0:
            continue
        r0, r1 = rows.lo_list[y0], rows.hi_list[y1 - 1] + 1  # proto window the region samples
        c0, c1 = cols.lo_list[x0], cols.hi_list[x1 - 1] + 1
        keep_rows = keep_cols = None
        if keep is not None:
            k0, k1, k2, k3 = keep[i]  # [c0, r0, c1, r1)
            ar = torch.arange(r0, r1, device=device)
            ac = torch.arange(c0, c1, device=device)
            keep_rows, keep_cols = (ar >= k1) & (ar < k3), (ac >= k0) & (ac < k2)
        across = sample_columns(
            protos[:, r0:r1, c0:c1], coeffs[i], cols.index[:, x0:x1] - c0, cols.weight[:, x0:x1],
            keep_rows, keep_cols, plan.sigmoid,
        )  # (r, w)
        crop = rows_fn(across, rows.index[:, y0:y1] - r0, rows.weight[:, y0:y1], plan.threshold)
        data[bounds[i] : bounds[i + 1]] = crop.reshape(-1)
    return CompactMasks(regions, data, offsets, plan.frame_hw)


def _assemble(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    boxes_orig: torch.Tensor,
    geometry: LetterboxGeometry,
    retina: bool,
    postprocess: Postprocess,
    mask_rule: MaskRule,
    rows_fn: Callable[..., torch.Tensor],
) -> CompactMasks:
    check_arguments(protos, coeffs, boxes_input, boxes_orig, postprocess, mask_rule)
    plan = plan_masks(
        (protos.shape[1], protos.shape[2]), boxes_input, boxes_orig, geometry,
        retina=retina, postprocess=postprocess, mask_rule=mask_rule, device=protos.device,
    )
    return assemble_from_plan(protos, coeffs.to(protos.device), plan, rows_fn)


def assemble_masks_eager(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    boxes_orig: torch.Tensor,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    postprocess: Postprocess,
    mask_rule: MaskRule,
) -> CompactMasks:
    """Separable masks, eager PyTorch. Arguments and result as `assemble_masks_reference`; regions are
    the crop boxes in the output frame (not the tight boxes of the set pixels)."""
    return _assemble(protos, coeffs, boxes_input, boxes_orig, geometry, retina, postprocess, mask_rule,
                     sample_rows_threshold)


def assemble_masks_compiled(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    boxes_orig: torch.Tensor,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    postprocess: Postprocess,
    mask_rule: MaskRule,
) -> CompactMasks:
    """Separable masks with the per-mask body under `torch.compile(dynamic=True)`; first call compiles
    (seconds). Arguments and result as `assemble_masks_eager`."""
    return _assemble(protos, coeffs, boxes_input, boxes_orig, geometry, retina, postprocess, mask_rule,
                     _sample_rows_threshold_compiled)
