"""Reference mask assembly: prototypes x coefficients -> binary instance masks (spec §3.8).

Plain PyTorch that defines the semantics every fast kernel (``fastsam_kernels.mask_assembly``) must
match. Two references, each with a non-retina path (masks at the letterboxed input size) and a
retina path (masks at the original image size):

* OFFICIAL: the FastSAM repo HEAD, i.e. ultralytics 8.0.120 with ``rule="logit"`` (threshold logits
  at 0); ``rule="sigmoid"`` is upstream 8.0.120 / the repo before 2024-06-23 (sigmoid first,
  threshold 0.5). Non-retina crops at PROTO resolution before upsampling; retina crops the letterbox
  padding with ``int()``.
* ULTRALYTICS: 8.4.190. Non-retina upsamples first and crops at full resolution; retina upsamples
  the logits by f in {1, 2, 4} so that the padding crop falls on whole pixels, crops it with
  ``round(pad - 0.1)``, resizes to the original size, thresholds at 0, then crops to the boxes.
  8.4.190 then drops instances whose mask is empty: that is ``nonempty_masks`` here, applied by the
  caller.

All masks are returned as bool (upstream: float 0/1 for 8.0.120, uint8 for 8.4.190). Bilinear
resizes use ``align_corners=False``. Large outputs are built in chunks of instances; each instance
is computed
independently, so chunking does not change any pixel.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_core.ops.references import Postprocess

MaskRule = Literal["logit", "sigmoid"]

_CHUNK_PIXELS = 16_000_000  # float32 elements per resized chunk (64 MB)


def _check_inputs(protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor) -> None:
    if protos.ndim != 3:
        raise ValueError(f"protos must be (K, Hp, Wp) for one image, got {tuple(protos.shape)}")
    if coeffs.ndim != 2 or coeffs.shape[1] != protos.shape[0]:
        raise ValueError(
            f"coeffs must be (N, K) with K = {protos.shape[0]} (protos channels), got "
            f"{tuple(coeffs.shape)}"
        )
    if boxes.ndim != 2 or boxes.shape != (coeffs.shape[0], 4):
        raise ValueError(
            f"boxes must be (N, 4) xyxy with N = {coeffs.shape[0]} (coeffs rows), got "
            f"{tuple(boxes.shape)}"
        )


def _check_rule(rule: str) -> None:
    if rule not in ("logit", "sigmoid"):
        raise ValueError(
            f"rule must be 'logit' (FastSAM HEAD) or 'sigmoid' (ultralytics 8.0.120), got {rule!r}"
        )


def _chunk_size(out_pixels: int) -> int:
    return max(1, _CHUNK_PIXELS // max(out_pixels, 1))


def mask_logits(protos: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Linear combination of the prototypes.

    Args:
        protos: (K, Hp, Wp) prototypes of one image.
        coeffs: (N, K) coefficients of its instances.

    Returns:
        (N, Hp, Wp) float32 logits.
    """
    if protos.ndim != 3 or coeffs.ndim != 2 or coeffs.shape[1] != protos.shape[0]:
        raise ValueError(
            "expected protos (K, Hp, Wp) and coeffs (N, K) with matching K, got "
            f"{tuple(protos.shape)} and {tuple(coeffs.shape)}"
        )
    k, hp, wp = protos.shape
    flat = protos.float().reshape(k, hp * wp)  # (K, Hp*Wp)
    logits = coeffs.float() @ flat  # (N, K) @ (K, Hp*Wp) -> (N, Hp*Wp)
    return logits.reshape(-1, hp, wp)  # (N, Hp, Wp)


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero every pixel outside its box: pixel (y, x) survives iff x1 <= x < x2 and y1 <= y < y2.

    Integer pixel indices are compared with the float box coordinates (no rounding).

    Args:
        masks: (N, H, W) any dtype.
        boxes: (N, 4) xyxy in the pixel units of ``masks``.

    Returns:
        (N, H, W) new tensor, same dtype as ``masks``.
    """
    if masks.ndim != 3 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(
            f"expected masks (N, H, W) and boxes (N, 4) with the same N, got {tuple(masks.shape)} "
            f"and {tuple(boxes.shape)}"
        )
    _, h, w = masks.shape
    boxes = boxes.to(masks.device)
    x1, y1, x2, y2 = boxes[:, :, None].unbind(1)  # (N, 1) each
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype)[None]  # (1, W)
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype)[None]  # (1, H)
    in_cols = (cols >= x1) & (cols < x2)  # (N, W)
    in_rows = (rows >= y1) & (rows < y2)  # (N, H)
    inside = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    if masks.dtype == torch.bool:
        return masks & inside
    return masks * inside


def _resize(masks: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of (N, h, w) float masks to (N, H, W)."""
    return F.interpolate(masks[None], size=size_hw, mode="bilinear", align_corners=False)[0]


def _empty(n: int, hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    return torch.zeros((n, *hw), dtype=torch.bool, device=device)


def process_mask_official(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    input_hw: tuple[int, int],
    rule: MaskRule = "logit",
) -> torch.Tensor:
    """OFFICIAL non-retina masks (``retina_masks=False``), at the letterboxed input size.

    Order: logits (sigmoid first if ``rule="sigmoid"``) -> crop at proto resolution with the boxes
    scaled by (Wp/W, Hp/H) -> bilinear to (H, W) -> threshold (> 0, or > 0.5 for sigmoid).

    Args:
        protos: (K, Hp, Wp).
        coeffs: (N, K).
        boxes_input: (N, 4) xyxy in input pixels (after the official full-box step).
        input_hw: (H, W) padded network input size.
        rule: "logit" (FastSAM HEAD) or "sigmoid" (8.0.120 upstream).

    Returns:
        (N, H, W) bool.
    """
    _check_inputs(protos, coeffs, boxes_input)
    _check_rule(rule)
    _, hp, wp = protos.shape
    in_h, in_w = input_hw
    if coeffs.shape[0] == 0:
        return _empty(0, input_hw, protos.device)
    # scale boxes to proto resolution, multiplying by python floats exactly as upstream
    x = boxes_input[:, 0::2].float() * (wp / in_w)  # (N, 2)
    y = boxes_input[:, 1::2].float() * (hp / in_h)  # (N, 2)
    boxes_proto = torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)  # (N, 4)
    threshold = 0.5 if rule == "sigmoid" else 0.0
    out = []
    step = _chunk_size(in_h * in_w)
    for start in range(0, coeffs.shape[0], step):
        sl = slice(start, start + step)
        masks = mask_logits(protos, coeffs[sl])  # (n, Hp, Wp)
        if rule == "sigmoid":
            masks = masks.sigmoid()
        masks = crop_masks(masks, boxes_proto[sl])  # zero outside: logit 0 / probability 0
        out.append(_resize(masks, input_hw) > threshold)  # (n, H, W)
    return torch.cat(out)


def process_mask_native_official(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_orig: torch.Tensor,
    orig_hw: tuple[int, int],
    rule: MaskRule = "logit",
) -> torch.Tensor:
    """OFFICIAL retina masks (``retina_masks=True``), at the original image size.

    Order: logits (sigmoid if ``rule="sigmoid"``) -> remove the letterbox padding at proto
    resolution (``g = min(Hp/H0, Wp/W0)``, ``pad = ((Wp - W0*g)/2, (Hp - H0*g)/2)``, rows
    ``int(pad_y):int(Hp - pad_y)``, columns likewise) -> bilinear to (H0, W0) -> crop to
    ``boxes_orig`` -> threshold.

    Args:
        protos: (K, Hp, Wp).
        coeffs: (N, K).
        boxes_orig: (N, 4) xyxy in original pixels (``scale_boxes(..., rule="official")``).
        orig_hw: (H0, W0).
        rule: "logit" or "sigmoid".

    Returns:
        (N, H0, W0) bool.
    """
    _check_inputs(protos, coeffs, boxes_orig)
    _check_rule(rule)
    _, hp, wp = protos.shape
    h0, w0 = orig_hw
    if coeffs.shape[0] == 0:
        return _empty(0, orig_hw, protos.device)
    gain = min(hp / h0, wp / w0)
    pad_x, pad_y = (wp - w0 * gain) / 2, (hp - h0 * gain) / 2
    top, left = int(pad_y), int(pad_x)
    bottom, right = int(hp - pad_y), int(wp - pad_x)
    threshold = 0.5 if rule == "sigmoid" else 0.0
    out = []
    step = _chunk_size(h0 * w0)
    for start in range(0, coeffs.shape[0], step):
        sl = slice(start, start + step)
        masks = mask_logits(protos, coeffs[sl])  # (n, Hp, Wp)
        if rule == "sigmoid":
            masks = masks.sigmoid()
        masks = _resize(masks[:, top:bottom, left:right], orig_hw) > threshold  # (n, H0, W0)
        # thresholding before the crop is equivalent: cropped pixels are 0, never > threshold
        out.append(crop_masks(masks, boxes_orig[sl]))
    return torch.cat(out)


def process_mask_ultralytics(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    input_hw: tuple[int, int],
) -> torch.Tensor:
    """ULTRALYTICS 8.4.190 non-retina masks, at the letterboxed input size.

    Order: logits -> bilinear to (H, W) -> > 0 -> crop to ``boxes_input`` at full resolution.

    Returns:
        (N, H, W) bool (empty masks kept; see ``nonempty_masks``).
    """
    _check_inputs(protos, coeffs, boxes_input)
    if coeffs.shape[0] == 0:
        return _empty(0, input_hw, protos.device)
    out = []
    step = _chunk_size(input_hw[0] * input_hw[1])
    for start in range(0, coeffs.shape[0], step):
        sl = slice(start, start + step)
        masks = _resize(mask_logits(protos, coeffs[sl]), input_hw) > 0  # (n, H, W)
        out.append(crop_masks(masks, boxes_input[sl]))
    return torch.cat(out)


def _native_upsample_factor(proto_hw: tuple[int, int], orig_hw: tuple[int, int]) -> int:
    """8.4.190's f: smallest of 1, 2, 4 that puts the letterbox padding crop on whole pixels.

    The input is taken as 4x the proto size. Per axis, with total input padding P: one side
    (P/2 input px = P/8 proto px) is whole at f = 1 if P % 8 == 0, at f = 2 if P % 4 == 0, else
    f = 4; the larger f wins.
    """
    hp, wp = proto_hw
    h0, w0 = orig_hw
    gain = min(4 * hp / h0, 4 * wp / w0)
    pads = (4 * hp - max(round(h0 * gain), 1), 4 * wp - max(round(w0 * gain), 1))
    return max(1 if p % 8 == 0 else 2 if p % 4 == 0 else 4 for p in pads)


def scale_masks_ultralytics(masks: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
    """8.4.190 ``scale_masks``: crop the centred letterbox padding from (N, h, w) float masks,
    resize to orig.

    ``g = min(h/H0, w/W0)``; content size ``max(round(H0*g), 1)`` x ``max(round(W0*g), 1)``; the
    crop starts at ``round((h - content_h)/2 - 0.1)`` (x likewise); bilinear to (H0, W0). Same size
    in and out: returned as is.

    Args:
        masks: (N, h, w) float.
        orig_hw: (H0, W0).

    Returns:
        (N, H0, W0) float.
    """
    _, h, w = masks.shape
    h0, w0 = orig_hw
    if (h, w) == (h0, w0):
        return masks
    gain = min(h / h0, w / w0)
    content_h, content_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
    top, left = round((h - content_h) / 2 - 0.1), round((w - content_w) / 2 - 0.1)
    return _resize(masks[:, top : top + content_h, left : left + content_w], orig_hw)


def process_mask_native_ultralytics(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_orig: torch.Tensor,
    orig_hw: tuple[int, int],
) -> torch.Tensor:
    """ULTRALYTICS 8.4.190 retina masks, at the original image size.

    Order: logits -> bilinear x f (``_native_upsample_factor``) -> ``scale_masks_ultralytics``
    -> > 0 -> crop to ``boxes_orig`` (``scale_boxes(..., rule="ultralytics")``).

    Returns:
        (N, H0, W0) bool (empty masks kept; see ``nonempty_masks``).
    """
    _check_inputs(protos, coeffs, boxes_orig)
    _, hp, wp = protos.shape
    h0, w0 = orig_hw
    if coeffs.shape[0] == 0:
        return _empty(0, orig_hw, protos.device)
    f = _native_upsample_factor((hp, wp), orig_hw)
    out = []
    step = _chunk_size(h0 * w0 + f * f * hp * wp)
    for start in range(0, coeffs.shape[0], step):
        sl = slice(start, start + step)
        masks = mask_logits(protos, coeffs[sl])  # (n, Hp, Wp)
        if f > 1:
            masks = F.interpolate(
                masks[None], scale_factor=f, mode="bilinear", align_corners=False
            )[0]
        masks = scale_masks_ultralytics(masks, orig_hw) > 0  # (n, H0, W0)
        out.append(crop_masks(masks, boxes_orig[sl]))
    return torch.cat(out)


def nonempty_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N,) bool, True where a mask has any pixel set; 8.4.190 drops the other instances (§3.8)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {tuple(masks.shape)}")
    return masks.flatten(1).any(dim=1)


def assemble_masks(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes_input: torch.Tensor,
    boxes_orig: torch.Tensor,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    postprocess: Postprocess,
    mask_rule: MaskRule = "logit",
) -> torch.Tensor:
    """Binary masks of one image in the chosen reference's order of operations (the reference
    every backend of `fastsam_core.mask_backends` mirrors).

    Args:
        protos: (K, Hp, Wp) prototypes of this image (Hp = H / 4 of its own letterbox input).
        coeffs: (N, K) mask coefficients.
        boxes_input: (N, 4) xyxy in letterbox pixels (official: after ``full_box_step_official``).
        boxes_orig: (N, 4) the same boxes in original pixels (``scale_boxes``), clipped.
        geometry: the image's letterbox geometry.
        retina: masks at the original size (True) or at the letterbox input size (False).
        postprocess: "official" or "ultralytics".
        mask_rule: official threshold rule: "logit" (> 0) or "sigmoid" (> 0.5, 8.0.120); the
            ultralytics reference always thresholds logits at 0 (as every backend).

    Returns:
        (N, H0, W0) if retina else (N, H, W) bool; empty masks kept.
    """
    if postprocess == "official":
        if retina:
            return process_mask_native_official(
                protos, coeffs, boxes_orig, geometry.orig_hw, mask_rule
            )
        return process_mask_official(protos, coeffs, boxes_input, geometry.input_hw, mask_rule)
    if postprocess == "ultralytics":  # 8.4.190 has only logit > 0: mask_rule does not apply
        if retina:
            return process_mask_native_ultralytics(protos, coeffs, boxes_orig, geometry.orig_hw)
        return process_mask_ultralytics(protos, coeffs, boxes_input, geometry.input_hw)
    raise ValueError(f"postprocess must be 'official' or 'ultralytics', got {postprocess!r}")
