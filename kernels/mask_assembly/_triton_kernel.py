"""Triton kernel body of `fastsam_kernels.mask_assembly.triton` (imported only with triton).

Kept undecorated: `triton.py` wraps it with `triton.jit` at first use, once per mode, because Triton
reads TRITON_INTERPRET when a function is decorated (the interpreter runs the same source on CPU
tensors). Only core builtins are used (`tl.full`, not the `@jit` helpers `tl.zeros` / `tl.sigmoid`):
helpers decorated natively (triton imported without TRITON_INTERPRET) cannot be called by the
interpreter.
"""

import triton.language as tl


def mask_assembly_kernel(
    protos_ptr,  # (K, Hp, Wp) fp32/fp16/bf16, contiguous
    coeffs_ptr,  # (N, K) fp32/fp16/bf16, contiguous
    row_index_ptr,  # (TAPS_Y, H) int64 proto row of each output-row tap
    row_weight_ptr,  # (TAPS_Y, H) float32
    row_lo_ptr,  # (H,) int64 smallest proto row of each output row (non-decreasing)
    col_index_ptr,  # (TAPS_X, W) int64
    col_weight_ptr,  # (TAPS_X, W) float32
    col_lo_ptr,  # (W,) int64
    regions_ptr,  # (N, 4) int64 [x0, y0, x1, y1) output region of each mask
    keep_ptr,  # (N, 4) int64 [c0, r0, c1, r1) kept proto box (read only if KEEP)
    offsets_ptr,  # (N + 1,) int64 start of each crop in the output buffer
    tiles_ptr,  # (M, 3) int64 (mask, first output row, first output column) of each program
    out_ptr,  # (offsets[-1],) uint8 view of the CompactMasks bool buffer
    Hp,
    Wp,
    H,
    W,
    threshold,
    K: tl.constexpr,
    TAPS_Y: tl.constexpr,
    TAPS_X: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    PATCH_H: tl.constexpr,
    PATCH_W: tl.constexpr,
    SIGMOID: tl.constexpr,
    KEEP: tl.constexpr,
):
    """One program = one (BLOCK_H, BLOCK_W) output tile of one mask.

    1. logits of the (PATCH_H, PATCH_W) proto window the tile samples (coefficient dot product);
    2. sigmoid / zero outside the kept proto box (official paths);
    3. bilinear sampling as two small matmuls: (PATCH_H, PATCH_W) @ Wx (PATCH_W, BLOCK_W), then
       Wy (BLOCK_H, PATCH_H) @ that, with Wx / Wy built from the taps (fp32, no TF32);
    4. threshold, store the tile's part of the mask's row-major crop.
    """
    pid = tl.program_id(0)
    n = tl.load(tiles_ptr + pid * 3)
    ty = tl.load(tiles_ptr + pid * 3 + 1)
    tx = tl.load(tiles_ptr + pid * 3 + 2)
    x0 = tl.load(regions_ptr + n * 4)
    y0 = tl.load(regions_ptr + n * 4 + 1)
    x1 = tl.load(regions_ptr + n * 4 + 2)
    y1 = tl.load(regions_ptr + n * 4 + 3)
    base = tl.load(offsets_ptr + n)

    ys = ty + tl.arange(0, BLOCK_H)  # (BLOCK_H,) output rows
    xs = tx + tl.arange(0, BLOCK_W)  # (BLOCK_W,) output columns
    y_ok = ys < y1
    x_ok = xs < x1
    pr = tl.load(row_lo_ptr + ty) + tl.arange(0, PATCH_H)  # (PATCH_H,) proto rows of the window
    pc = tl.load(col_lo_ptr + tx) + tl.arange(0, PATCH_W)  # (PATCH_W,) proto columns
    p_ok = (pr < Hp)[:, None] & (pc < Wp)[None, :]  # (PATCH_H, PATCH_W)
    if KEEP:
        c0 = tl.load(keep_ptr + n * 4)
        r0 = tl.load(keep_ptr + n * 4 + 1)
        c1 = tl.load(keep_ptr + n * 4 + 2)
        r1 = tl.load(keep_ptr + n * 4 + 3)
        p_ok = p_ok & ((pr >= r0) & (pr < r1))[:, None] & ((pc >= c0) & (pc < c1))[None, :]

    # 1. logits at proto resolution, float32 accumulation
    p_off = pr[:, None] * Wp + pc[None, :]  # (PATCH_H, PATCH_W)
    values = tl.full((PATCH_H, PATCH_W), 0.0, dtype=tl.float32)
    for k in tl.static_range(K):
        coeff = tl.load(coeffs_ptr + n * K + k).to(tl.float32)
        proto = tl.load(protos_ptr + k * Hp * Wp + p_off, mask=p_ok, other=0.0).to(tl.float32)
        values += coeff * proto
    # 2. rule and proto-resolution crop (zero = logit 0 / probability 0 outside the box)
    if SIGMOID:
        values = 1.0 / (1.0 + tl.exp(-values))
    values = tl.where(p_ok, values, 0.0)

    # 3. x taps -> Wx (PATCH_W, BLOCK_W); y taps -> Wy (BLOCK_H, PATCH_H)
    wx = tl.full((PATCH_W, BLOCK_W), 0.0, dtype=tl.float32)
    for t in tl.static_range(TAPS_X):
        idx = tl.load(col_index_ptr + t * W + xs, mask=x_ok, other=-1)
        wgt = tl.load(col_weight_ptr + t * W + xs, mask=x_ok, other=0.0)
        wx += tl.where(pc[:, None] == idx[None, :], wgt[None, :], 0.0)
    wy = tl.full((BLOCK_H, PATCH_H), 0.0, dtype=tl.float32)
    for t in tl.static_range(TAPS_Y):
        idx = tl.load(row_index_ptr + t * H + ys, mask=y_ok, other=-1)
        wgt = tl.load(row_weight_ptr + t * H + ys, mask=y_ok, other=0.0)
        wy += tl.where(idx[:, None] == pr[None, :], wgt[:, None], 0.0)
    across = tl.dot(values, wx, input_precision="ieee")  # (PATCH_H, BLOCK_W)
    out = tl.dot(wy, across, input_precision="ieee")  # (BLOCK_H, BLOCK_W)

    # 4. threshold and write the crop (row-major inside the region)
    bits = (out > threshold).to(tl.uint8)
    dst = base + (ys - y0).to(tl.int64)[:, None] * (x1 - x0) + (xs - x0)[None, :]
    tl.store(out_ptr + dst, bits, mask=y_ok[:, None] & x_ok[None, :])
