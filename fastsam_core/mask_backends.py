"""Mask-assembly backends for the predictor: one name -> function table (spec §3.8, STYLE §7).

Every backend has the signature of `assemble_masks_reference` and returns `CompactMasks`. The
reference composes the plain PyTorch functions of `fastsam_core.ops.masks`, which define the
semantics; fast backends (`fastsam_kernels`) register under their own names and are tested
against it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Literal, Protocol

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.ops import masks as mask_ops
from fastsam_core.ops.letterbox import LetterboxGeometry

logger = logging.getLogger(__name__)

Postprocess = Literal["official", "ultralytics"]
MaskRule = Literal["logit", "sigmoid"]


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
    """Binary masks of one image with the reference functions of `ops.masks`.

    Args:
        protos: (K, Hp, Wp) prototypes of this image (Hp = H / 4 of its own letterbox input).
        coeffs: (N, K) mask coefficients.
        boxes_input: (N, 4) xyxy in letterbox pixels (after the full-image box step).
        boxes_orig: (N, 4) the same boxes scaled to the original image and clipped.
        geometry: this image's letterbox geometry.
        retina: masks at the original resolution (True) or at the letterbox input resolution.
        postprocess: "official" (FastSAM repo, 8.0.120 order of operations) or "ultralytics" (8.4.190).
        mask_rule: official only: "logit" (> 0, FastSAM HEAD) or "sigmoid" (> 0.5, upstream 8.0.120).
    Returns:
        N masks in the (H0, W0) frame if retina, else in the (H, W) letterbox frame.
    """
    if postprocess == "official":
        if retina:
            dense = mask_ops.process_mask_native_official(
                protos, coeffs, boxes_orig, geometry.orig_hw, rule=mask_rule
            )
        else:
            dense = mask_ops.process_mask_official(
                protos, coeffs, boxes_input, geometry.input_hw, rule=mask_rule
            )
    elif retina:
        dense = mask_ops.process_mask_native_ultralytics(
            protos, coeffs, boxes_orig, geometry.orig_hw
        )
    else:
        dense = mask_ops.process_mask_ultralytics(protos, coeffs, boxes_input, geometry.input_hw)
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
    except (ImportError, ValueError) as err:
        _log_once(f"fallback:{name}", "mask_backend %r failed (%s); using 'reference'", name, err)
        return assemble_masks_reference(
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
    return getattr(module, function_name)
