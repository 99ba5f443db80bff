"""Triton version of fastsam_core.ops.masks.assemble_masks; same contract.

One fused kernel (`_triton_kernel.py`) per output tile of one mask: coefficient dot product at proto
resolution over the few proto pixels the tile samples, sigmoid / proto-box crop where the reference
applies them, bilinear sampling as two small fp32 matmuls (ATen's taps, `plan.py`), threshold, and a
store straight into the `CompactMasks` flat buffer. Only pixels inside each mask's region are
computed.

The launch is registered as the custom op ``fastsam_kernels::mask_assembly_triton`` with a fake
(meta) implementation, so compiled graphs can hold it. Triton is imported at first use; on CPU the
kernel runs only under the Triton interpreter (``TRITON_INTERPRET=1``, read when the kernel is first
built in a mode).
"""

from __future__ import annotations

import math
import os

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_kernels.mask_assembly.plan import (
    AxisTaps,
    MaskRule,
    Postprocess,
    check_arguments,
    plan_masks,
)

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_PATCH = (
    128  # proto pixels one tile may sample per axis (downscaling by more than ~7x is refused)
)
MAX_K = 256
_INT32_MAX = 2**31 - 1
_kernels: dict[bool, object] = {}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _kernel(interpret: bool) -> object:
    """`triton.jit` of the kernel body, built once per mode (native / interpreter)."""
    if interpret not in _kernels:
        try:
            import triton

            from fastsam_kernels.mask_assembly import _triton_kernel
        except ImportError as err:
            raise ImportError(
                f"the 'triton' mask backend needs Triton ({err}); install it with: "
                "pip install triton"
            ) from err
        _kernels[interpret] = triton.jit(_triton_kernel.mask_assembly_kernel)
    return _kernels[interpret]


def _tile_shape(axis: AxisTaps) -> tuple[int, int]:
    """(block, patch): the largest output tile whose proto window fits 16 px, else wider windows."""
    for block in (64, 32, 16):
        if axis.max_span[block] <= 16:
            return block, 16
    return 16, max(16, 1 << math.ceil(math.log2(axis.max_span[16])))


def _check_guards(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    tensors: dict[str, torch.Tensor],
    patch: tuple[int, int],
) -> None:
    """Kernel guards (device, dtype, contiguity, size limits); ValueError names the failed guard."""
    device = protos.device
    if device.type != "cuda" and not (device.type == "cpu" and _interpreting()):
        raise ValueError(
            "device guard: the triton mask kernel needs CUDA tensors (or CPU tensors with "
            f"TRITON_INTERPRET=1), got {device}; use mask_backend='compiled' on CPU"
        )
    for name, t in {"protos": protos, "coeffs": coeffs, **tensors}.items():
        if t.device != device:
            raise ValueError(f"device guard: {name} is on {t.device}, protos on {device}")
        if not t.is_contiguous():
            raise ValueError(
                f"contiguity guard: {name} {tuple(t.shape)} must be contiguous; call .contiguous()"
            )
    for name, t in (("protos", protos), ("coeffs", coeffs)):
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"dtype guard: {name} must be float32/float16/bfloat16, got {t.dtype}")
    for name, t in tensors.items():
        expected = torch.float32 if name.endswith("weight") else torch.int64
        if t.dtype != expected:
            raise ValueError(f"dtype guard: {name} must be {expected}, got {t.dtype}")
    k, hp, wp = protos.shape
    if k > MAX_K or k * hp * wp > _INT32_MAX:
        raise ValueError(
            f"size guard: protos {tuple(protos.shape)} exceed K <= {MAX_K}, K*Hp*Wp < 2**31"
        )
    if max(patch) > MAX_PATCH:
        raise ValueError(
            f"size guard: an output tile samples {max(patch)} proto pixels per axis (> "
            f"{MAX_PATCH}): the output is much smaller than the prototypes; "
            "use mask_backend='compiled'"
        )


@torch.library.custom_op("fastsam_kernels::mask_assembly_triton", mutates_args=())
def mask_assembly_op(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    row_index: torch.Tensor,
    row_weight: torch.Tensor,
    row_lo: torch.Tensor,
    col_index: torch.Tensor,
    col_weight: torch.Tensor,
    col_lo: torch.Tensor,
    regions: torch.Tensor,
    keep: torch.Tensor,
    offsets: torch.Tensor,
    tiles: torch.Tensor,
    total: int,
    threshold: float,
    sigmoid: bool,
    use_keep: bool,
    block_h: int,
    block_w: int,
    patch_h: int,
    patch_w: int,
) -> torch.Tensor:
    """Launch the kernel: one program per row of `tiles`; returns the (total,) bool crop buffer.

    Shapes as in `_triton_kernel.mask_assembly_kernel`; `total` = offsets[-1] (known on the host).
    """
    tensors = {
        "row_index": row_index,
        "row_weight": row_weight,
        "row_lo": row_lo,
        "col_index": col_index,
        "col_weight": col_weight,
        "col_lo": col_lo,
        "regions": regions,
        "keep": keep,
        "offsets": offsets,
        "tiles": tiles,
    }
    _check_guards(protos, coeffs, tensors, (patch_h, patch_w))
    out = torch.zeros(total, dtype=torch.bool, device=protos.device)
    if tiles.shape[0] == 0:
        return out
    kernel = _kernel(_interpreting())
    k, hp, wp = protos.shape
    kernel[(tiles.shape[0],)](  # type: ignore[index]
        protos,
        coeffs,
        row_index,
        row_weight,
        row_lo,
        col_index,
        col_weight,
        col_lo,
        regions,
        keep,
        offsets,
        tiles,
        out.view(torch.uint8),
        hp,
        wp,
        row_lo.shape[0],
        col_lo.shape[0],
        threshold,
        K=k,
        TAPS_Y=row_index.shape[0],
        TAPS_X=col_index.shape[0],
        BLOCK_H=block_h,
        BLOCK_W=block_w,
        PATCH_H=patch_h,
        PATCH_W=patch_w,
        SIGMOID=sigmoid,
        KEEP=use_keep,
    )
    return out


@mask_assembly_op.register_fake
def _(
    protos,
    coeffs,
    row_index,
    row_weight,
    row_lo,
    col_index,
    col_weight,
    col_lo,
    regions,
    keep,
    offsets,
    tiles,
    total,
    threshold,
    sigmoid,
    use_keep,
    block_h,
    block_w,
    patch_h,
    patch_w,
):
    return protos.new_empty(total, dtype=torch.bool)


def _tiles(
    regions: torch.Tensor, block_h: int, block_w: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(M, 3) int64 (mask, first row, first column) of every output tile; crop offsets; total
    pixels."""
    heights = regions[:, 3] - regions[:, 1]
    widths = regions[:, 2] - regions[:, 0]
    counts = ((heights + block_h - 1) // block_h) * ((widths + block_w - 1) // block_w)  # (N,)
    offsets = torch.zeros(regions.shape[0] + 1, dtype=torch.int64, device=regions.device)
    torch.cumsum(heights * widths, 0, out=offsets[1:])
    total, num_tiles = (
        int(v) for v in torch.stack([offsets[-1], counts.sum()]).tolist()
    )  # one sync
    mask = torch.repeat_interleave(
        torch.arange(regions.shape[0], device=regions.device), counts, output_size=num_tiles
    )  # (M,)
    first = torch.cumsum(counts, 0) - counts  # (N,) first tile of each mask
    local = torch.arange(num_tiles, device=regions.device) - first[mask]
    across = ((widths + block_w - 1) // block_w)[mask]
    ty = regions[mask, 1] + (local // across) * block_h
    tx = regions[mask, 0] + (local % across) * block_w
    return torch.stack([mask, ty, tx], dim=1).contiguous(), offsets, total


def assemble_masks_triton(
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
    """Masks of one image with the fused Triton kernel. Arguments and result as
    `fastsam_core.ops.masks.assemble_masks` (regions are the crop boxes in the output frame). protos
    and coeffs keep their dtype (fp32/fp16/bf16, accumulated in fp32) and are made contiguous here.

    Raises:
        ImportError: triton is not installed.
        ValueError: a kernel guard failed (device, dtype, contiguity, size).
    """
    check_arguments(protos, coeffs, boxes_input, boxes_orig, postprocess, mask_rule)
    device = protos.device
    plan = plan_masks(
        (protos.shape[1], protos.shape[2]),
        boxes_input,
        boxes_orig,
        geometry,
        retina=retina,
        postprocess=postprocess,
        mask_rule=mask_rule,
        device=device,
    )
    block_h, patch_h = _tile_shape(plan.rows)
    block_w, patch_w = _tile_shape(plan.cols)
    tiles, offsets, total = _tiles(plan.regions, block_h, block_w)
    keep = plan.keep if plan.keep is not None else plan.regions  # unread when use_keep is False
    data = mask_assembly_op(
        protos.contiguous(),
        coeffs.to(device).contiguous(),
        plan.rows.index,
        plan.rows.weight,
        plan.rows.lo,
        plan.cols.index,
        plan.cols.weight,
        plan.cols.lo,
        plan.regions.contiguous(),
        keep.contiguous(),
        offsets,
        tiles,
        total,
        plan.threshold,
        plan.sigmoid,
        plan.keep is not None,
        block_h,
        block_w,
        patch_h,
        patch_w,
    )
    return CompactMasks(plan.regions, data, offsets, plan.frame_hw)
