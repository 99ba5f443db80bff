"""Mask-assembly backends: the one name -> function table (spec §3.8, STYLE §7).

The reference is `fastsam_core.ops.masks.assemble_masks` (plain PyTorch, defines the semantics);
"reference" here is that function with its result stored as `CompactMasks`, the type every
backend returns. Fast backends (`fastsam_kernels`) mirror its signature and are tested against
it; "auto" picks one per device and is the only place that falls back to the reference.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from typing import Any, Protocol

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_core.ops.masks import MaskRule, assemble_masks
from fastsam_core.ops.references import Postprocess

logger = logging.getLogger(__name__)


class MaskBackend(Protocol):
    def __call__(
        self,
        protos: torch.Tensor,
        coeffs: torch.Tensor,
        boxes_input: torch.Tensor,
        boxes_orig: torch.Tensor,
        geometry: LetterboxGeometry,
        *,
        retina: bool,
        postprocess: Postprocess,
        mask_rule: MaskRule,
    ) -> CompactMasks: ...


def assemble_masks_reference(
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
    """`ops.masks.assemble_masks` (the reference) stored as `CompactMasks` (the table's type)."""
    dense = assemble_masks(
        protos, coeffs, boxes_input, boxes_orig, geometry,
        retina=retina, postprocess=postprocess, mask_rule=mask_rule,
    )  # fmt: skip
    return CompactMasks.from_dense(dense)  # (N, H?, W?) bool -> crops of each tight box


# name -> "module:function"; imported on first use so optional backends cost nothing until picked.
MASK_BACKENDS: dict[str, str] = {
    "reference": "fastsam_core.mask_backends:assemble_masks_reference",
    "eager": "fastsam_kernels.mask_assembly.compiled:assemble_masks_eager",
    "compiled": "fastsam_kernels.mask_assembly.compiled:assemble_masks_compiled",
    "triton": "fastsam_kernels.mask_assembly.triton:assemble_masks_triton",
    "auto": "fastsam_core.mask_backends:assemble_masks_auto",
}
_logged: set[str] = set()


def _log_once(key: str, message: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.info(message, *args)


def auto_backend_name(device: torch.device | str) -> str:
    """The backend "auto" runs on `device`: "triton" on CUDA when triton imports, else "eager" (the
    separable region-only kernel; on CPU it measured faster than its torch.compile'd variant, see
    bench/RESULTS.md)."""
    if torch.device(device).type == "cuda" and importlib.util.find_spec("triton") is not None:
        return "triton"
    return "eager"


def assemble_masks_auto(
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
    """The fastest available backend for `protos.device` (`auto_backend_name`), logged once.

    The only place with a fallback: if that backend is missing (ImportError) or refuses the inputs
    (ValueError from a kernel guard), the reference runs instead, logged once. Explicit names
    (benchmarks, tests) never fall back.
    """
    name = auto_backend_name(protos.device)
    _log_once(
        f"auto:{protos.device.type}", "mask_backend='auto' uses %r on %s", name, protos.device
    )
    args = (protos, coeffs, boxes_input, boxes_orig, geometry)
    try:
        return get_mask_backend(name)(
            *args, retina=retina, postprocess=postprocess, mask_rule=mask_rule
        )
    except MaskMemoryError:
        raise
    except (ImportError, ValueError) as err:
        _log_once(f"fallback:{name}", "mask_backend %r failed (%s); using 'reference'", name, err)
        return get_mask_backend("reference")(
            *args, retina=retina, postprocess=postprocess, mask_rule=mask_rule
        )


def get_mask_backend(name: str) -> MaskBackend:
    """Resolve a backend name through `MASK_BACKENDS`.

    Raises:
        ValueError: unknown name.
        ImportError: the backend's package is not installed.
    """
    if name not in MASK_BACKENDS:
        raise ValueError(f"unknown mask_backend {name!r}; expected one of {sorted(MASK_BACKENDS)}")
    module_name, _, function_name = MASK_BACKENDS[name].partition(":")
    module = importlib.import_module(module_name)
    return _within_budget(getattr(module, function_name), dense=name == "reference")


# One image's masks may use at most this much memory while assembled (bytes); a 12000x12000
# photo with 300 full-size masks would otherwise ask for tens of GB. FASTSAM_MAX_MASK_GB raises it.
DEFAULT_MAX_MASK_BYTES = 4 << 30


class MaskMemoryError(ValueError):
    """Assembling this image's masks would exceed the memory budget; nothing was allocated."""


def max_mask_bytes() -> int:
    text = os.environ.get("FASTSAM_MAX_MASK_GB", "")
    try:
        return int(float(text) * (1 << 30)) if text else DEFAULT_MAX_MASK_BYTES
    except ValueError:
        raise ValueError(f"FASTSAM_MAX_MASK_GB must be a number of GB, got {text!r}") from None


def mask_bytes(
    boxes_input: torch.Tensor, boxes_orig: torch.Tensor, geometry: LetterboxGeometry, *,
    retina: bool, dense: bool,
) -> int:  # fmt: skip
    """Bytes a backend needs for N masks.

    Dense reference: ~5 per pixel of the whole frame per mask (fp32 values + the bool mask).
    Region backends (`fastsam_kernels`): the bool crop of every box window (1 per pixel) plus
    its x-pass values, fp32 over the proto rows the window samples (4 per proto row per column):
    ~1.1 bytes per window pixel for retina masks of a 96 MP photo (measured: 786 MB more RSS
    for 824 M stored pixels, 300 masks, bench/huge_images.py), ~2 at network resolution.
    """
    boxes, (height, width) = (boxes_orig, geometry.orig_hw) if retina else (
        boxes_input, geometry.input_hw)  # fmt: skip
    if dense:
        return 5 * boxes.shape[0] * height * width
    w = (boxes[:, 2].clamp(0, width) - boxes[:, 0].clamp(0, width)).clamp(min=0).double() + 2
    h = (boxes[:, 3].clamp(0, height) - boxes[:, 1].clamp(0, height)).clamp(min=0).double() + 2
    proto_rows = h * (geometry.input_hw[0] / 4 / max(height, 1)) + 2  # (N,) rows each samples
    return int((w * h + 4 * w * proto_rows).sum())


def _within_budget(backend: MaskBackend, dense: bool) -> MaskBackend:
    """`backend`, refusing inputs whose masks would not fit the memory budget (MaskMemoryError)."""

    @functools.wraps(backend)
    def guarded(
        protos: torch.Tensor, coeffs: torch.Tensor, boxes_input: torch.Tensor,
        boxes_orig: torch.Tensor, geometry: LetterboxGeometry, **options: Any,
    ) -> CompactMasks:  # fmt: skip
        need = mask_bytes(
            boxes_input, boxes_orig, geometry, retina=bool(options["retina"]), dense=dense
        )
        limit = max_mask_bytes()
        if need > limit:
            height, width = geometry.orig_hw if options["retina"] else geometry.input_hw
            raise MaskMemoryError(
                f"the {boxes_input.shape[0]} masks of this {width}x{height} image would need "
                f"~{need / 2**30:.1f} GB to assemble (limit {limit / 2**30:.1f} GB); use "
                "--no-retina / retina_masks=False (masks at network resolution), a higher "
                "--conf, or raise FASTSAM_MAX_MASK_GB"
            )
        return backend(protos, coeffs, boxes_input, boxes_orig, geometry, **options)

    return guarded
