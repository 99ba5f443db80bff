"""Separable PyTorch version of fastsam_core.ops.masks.assemble_masks; same contract.

Computes only the pixels inside each mask's region (its crop box in the output frame): per mask,

    S = coeff @ protos[:, rows, :]            logits of the proto rows the region samples (r, Wp)
    S = sigmoid(S); S = 0 outside proto box   official: "sigmoid" rule / non-retina crop only
    T = sum_t col.weight[t] * S[:, col.index[t]]      x pass, (r, w)
    V = sum_t row.weight[t] * T[row.index[t]]         y pass, (h, w)
    crop = V > threshold                       written straight into the CompactMasks flat buffer

i.e. out = Wy @ S @ Wx^T with the two-nonzero bilinear matrices applied as gathers (ATen's weights
and x-then-y order, see `plan.py`). Only the region's active window is computed and stored (the
sub-rectangle outside which every y tap reads values <= threshold, so the mask is provably false
there; see `active_window`). Two passes: first every mask's x pass and window (small), then one flat
bool buffer of the exact total size, into which each window's y pass writes in place (no final
concatenation: 300 retina masks went 219 -> 157 ms). Memory: the bool crops, the x-pass values
(proto rows x window columns per mask) and two reused float blocks of `BLOCK_PIXELS`.

`assemble_masks_eager` is the fast CPU path. `assemble_masks_compiled` runs the y pass + threshold
(the only per-output-pixel work) through `torch.compile(dynamic=True)` instead (crops >=
`COMPILE_MIN_PIXELS`); on the 2-core CPU it measured slower than the in-place eager pass (its
output is a fresh allocation, page-faulted on every mask), so "auto" uses eager; see
bench/RESULTS.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_kernels.mask_assembly.plan import (
    MaskPlan,
    MaskRule,
    Postprocess,
    check_arguments,
    plan_masks,
)


def sample_columns(
    protos: torch.Tensor,
    coeff: torch.Tensor,
    col_index: torch.Tensor,
    col_weight: torch.Tensor,
    keep: tuple[int, int, int, int] | None,
    sigmoid: bool,
) -> torch.Tensor:
    """Proto-resolution values of one mask, resampled along x only (the small half of the work).

    Args:
        protos: (K, r, Wp) float32 full-width proto rows the region samples (a view: no copy).
        coeff: (K,) float32 coefficients of the mask.
        col_index, col_weight: (T, w) int64 taps (proto columns) and float32 weights.
        keep: (c0, r0, c1, r1) proto box, rows relative to the window, outside which values are zero
            (official non-retina), or None.
        sigmoid: apply the sigmoid before resizing.

    Returns:
        (r, w) float32.
    """
    k, r, wp = protos.shape
    values = (coeff @ protos.reshape(k, r * wp)).view(r, wp)  # (K,) @ (K, r*Wp): one GEMV on a view
    if sigmoid:
        values = values.sigmoid()
    if (
        keep is not None
    ):  # the reference multiplies by 0 outside the box; zero is zero for the threshold
        c0, r0, c1, r1 = keep
        values[: max(r0, 0)] = 0
        values[max(r1, 0) :] = 0
        values[:, :c0] = 0
        values[:, c1:] = 0
    across = torch.index_select(values, 1, col_index[0]).mul_(col_weight[0])  # (r, w)
    for t in range(1, col_index.shape[0]):
        across.add_(torch.index_select(values, 1, col_index[t]).mul_(col_weight[t]))
    return across


def sample_rows_threshold(
    across: torch.Tensor, row_index: torch.Tensor, row_weight: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Resample x-resampled values along y and threshold (the per-pixel half; what gets compiled).

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


# Eager y pass: rows are processed in blocks of about this many pixels through two reused float
# buffers (no per-mask allocations, cache-sized working set).
BLOCK_PIXELS = 1 << 18


def active_window(
    across: torch.Tensor, row_index: torch.Tensor, threshold: float
) -> tuple[int, int, int, int]:
    """Output rows [ya, yb) and columns [xa, xb) outside which the crop is provably all false.

    Bilinear weights are >= 0 and sum to 1 (to float32 rounding), so an output pixel whose y taps
    all read values <= threshold - margin is <= threshold: it is false, with no rounding doubt
    (margin 0 for the logit rule, where every term is then <= 0; 1e-5 for probabilities). Only the
    window is computed: for masks much smaller than their box this skips most of the work.
    """
    cut = threshold - (1e-5 if threshold != 0.0 else 0.0)
    rows_live = (across.amax(dim=1) > cut)[row_index].any(dim=0)  # (h,) any tap row live
    cols_live = across.amax(dim=0) > cut  # (w,)
    ys, xs = rows_live.nonzero(), cols_live.nonzero()
    if ys.numel() == 0 or xs.numel() == 0:
        return 0, 0, 0, 0
    ya, yb, xa, xb = torch.cat([ys[0], ys[-1] + 1, xs[0], xs[-1] + 1]).tolist()
    return ya, yb, xa, xb


def sample_rows_threshold_into(
    across: torch.Tensor,
    row_index: torch.Tensor,
    row_weight: torch.Tensor,
    threshold: float,
    out: torch.Tensor,
    work: torch.Tensor,
) -> None:
    """`sample_rows_threshold` written into `out` ((h, w) bool) with in-place ops; same arithmetic.

    Args:
        work: (2, >= BLOCK_PIXELS or h * w) float32 scratch.
    """
    h, w = out.shape
    step = max(1, min(h, work.shape[1] // max(w, 1)))
    for start in range(0, h, step):
        stop = min(start + step, h)
        acc = work[0, : (stop - start) * w].view(stop - start, w)
        tap = work[1, : (stop - start) * w].view(stop - start, w)
        torch.index_select(across, 0, row_index[0, start:stop], out=acc)
        acc.mul_(row_weight[0, start:stop, None])
        for t in range(1, row_index.shape[0]):
            torch.index_select(across, 0, row_index[t, start:stop], out=tap)
            acc.add_(tap.mul_(row_weight[t, start:stop, None]))
        torch.gt(acc, threshold, out=out[start:stop])  # out may be a strided window of the crop


def _rows_eager(
    across: torch.Tensor,
    row_index: torch.Tensor,
    row_weight: torch.Tensor,
    threshold: float,
    out: torch.Tensor,
    work: torch.Tensor,
) -> None:
    sample_rows_threshold_into(across, row_index, row_weight, threshold, out, work)


@functools.cache
def _compiled_rows() -> Callable[..., torch.Tensor]:
    return torch.compile(sample_rows_threshold, dynamic=True)


# Crops below this many pixels (or with a side of 1, which dynamic shapes would specialize and
# recompile for) stay eager: the compiled call costs more than it saves there.
COMPILE_MIN_PIXELS = 4096


def _rows_compiled(
    across: torch.Tensor,
    row_index: torch.Tensor,
    row_weight: torch.Tensor,
    threshold: float,
    out: torch.Tensor,
    work: torch.Tensor,
) -> None:
    h, (r, w) = row_index.shape[1], across.shape
    if h * w < COMPILE_MIN_PIXELS or min(h, r, w) < 2:
        sample_rows_threshold_into(across, row_index, row_weight, threshold, out, work)
    else:
        out.copy_(_compiled_rows()(across, row_index, row_weight, threshold))


def assemble_from_plan(
    protos: torch.Tensor, coeffs: torch.Tensor, plan: MaskPlan, rows_fn: Callable[..., None]
) -> CompactMasks:
    """Compute every non-empty region of `plan`; `rows_fn` is `_rows_eager` or `_rows_compiled`.

    Each mask is stored in its active window (`active_window`) inside its region: a sub-rectangle
    outside which the mask is provably false, so the result equals the region-sized crop.
    """
    device = protos.device
    protos = protos.float()
    coeffs = coeffs.float()
    n = plan.regions.shape[0]
    boxes = plan.regions.flatten().tolist()  # one device sync
    work = torch.empty((2, BLOCK_PIXELS), dtype=torch.float32, device=device)
    keep = plan.keep.tolist() if plan.keep is not None else None
    rows, cols = plan.rows, plan.cols
    windows = [[0, 0, 0, 0] for _ in range(n)]  # stored [x0, y0, x1, y1) per mask
    # pass 1: x pass and active window of every mask (small: proto rows x output columns)
    pending: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for i in range(n):
        x0, y0, x1, y1 = boxes[4 * i : 4 * i + 4]
        if x1 <= x0 or y1 <= y0:
            continue
        r0, r1 = rows.lo_list[y0], rows.hi_list[y1 - 1] + 1  # proto rows the region samples
        box = None
        if keep is not None:
            kc0, kr0, kc1, kr1 = keep[i]
            box = (kc0, kr0 - r0, kc1, kr1 - r0)
        across = sample_columns(
            protos[:, r0:r1],
            coeffs[i],
            cols.index[:, x0:x1],
            cols.weight[:, x0:x1],
            box,
            plan.sigmoid,
        )  # (r, w)
        row_index = rows.index[:, y0:y1] - r0
        ya, yb, xa, xb = active_window(across, row_index, plan.threshold)
        if yb <= ya:
            continue  # provably empty
        windows[i] = [x0 + xa, y0 + ya, x0 + xb, y0 + yb]
        pending.append(
            (i, across[:, xa:xb], row_index[:, ya:yb], rows.weight[:, y0 + ya : y0 + yb])
        )
    regions = torch.tensor(windows, dtype=torch.int64).reshape(n, 4)
    sizes = (regions[:, 3] - regions[:, 1]) * (regions[:, 2] - regions[:, 0])  # (N,)
    offsets = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(sizes, 0, out=offsets[1:])
    # pass 2: y pass + threshold of each window straight into one flat buffer (no final concat)
    data = torch.empty(int(offsets[-1]), dtype=torch.bool, device=device)
    starts = offsets.tolist()
    for i, across, row_index, row_weight in pending:
        x0, y0, x1, y1 = windows[i]
        crop = data[starts[i] : starts[i + 1]].view(y1 - y0, x1 - x0)
        rows_fn(across, row_index, row_weight, plan.threshold, crop, work)
    regions, offsets = regions.to(device), offsets.to(device)
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
    rows_fn: Callable[..., None],
) -> CompactMasks:
    check_arguments(protos, coeffs, boxes_input, boxes_orig, postprocess, mask_rule)
    plan = plan_masks(
        (protos.shape[1], protos.shape[2]),
        boxes_input,
        boxes_orig,
        geometry,
        retina=retina,
        postprocess=postprocess,
        mask_rule=mask_rule,
        device=protos.device,
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
    """Separable masks, eager PyTorch. Arguments and result as
    `fastsam_core.ops.masks.assemble_masks`; regions are the active windows inside the crop boxes
    (not the tight boxes of the set pixels)."""
    return _assemble(
        protos,
        coeffs,
        boxes_input,
        boxes_orig,
        geometry,
        retina,
        postprocess,
        mask_rule,
        _rows_eager,
    )


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
    """Separable masks with the per-mask body under `torch.compile(dynamic=True)`; the first call
    compiles (seconds). Arguments and result as `assemble_masks_eager`."""
    return _assemble(
        protos,
        coeffs,
        boxes_input,
        boxes_orig,
        geometry,
        retina,
        postprocess,
        mask_rule,
        _rows_compiled,
    )
