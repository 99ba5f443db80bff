"""Numpy twin of `fastsam_core.ops.boxes` (spec §3.6-§3.8): xywh -> xyxy, IoU, clipping,
letterbox -> original scaling and FastSAM's full-image-box step.

Same float32 arithmetic op by op (python scalars are cast to float32 as torch does), so every
function returns the torch version's numbers exactly (tests/unit/test_onnxrt_ops.py). Every
function returns a new array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastsam_core.ops.geometry import LetterboxGeometry

_F32 = np.float32


def _check_boxes(boxes: np.ndarray, name: str = "boxes") -> None:
    if not isinstance(boxes, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape (N, 4), got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) (cx, cy, w, h) -> (..., 4) (x1, y1, x2, y2); upstream's arithmetic (xy -/+ wh/2)."""
    if boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must end in a dimension of 4 (cx, cy, w, h), got {tuple(boxes.shape)}"
        )
    xy, half_wh = boxes[..., :2], boxes[..., 2:] / boxes.dtype.type(2)
    return np.concatenate((xy - half_wh, xy + half_wh), axis=-1)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """(N, M) pairwise IoU of xyxy boxes (N, 4) and (M, 4), ``eps`` added to the union (as
    `ops.boxes.box_iou`); 0/0 gives NaN, which compares False with any threshold."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    a1, a2 = boxes1[:, None, :2], boxes1[:, None, 2:]  # (N, 1, 2)
    b1, b2 = boxes2[None, :, :2], boxes2[None, :, 2:]  # (1, M, 2)
    wh = np.maximum(np.minimum(a2, b2) - np.maximum(a1, b1), _F32(0))  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    area1 = (a2 - a1)[..., 0] * (a2 - a1)[..., 1]  # (N, 1)
    area2 = (b2 - b1)[..., 0] * (b2 - b1)[..., 1]  # (1, M)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area1 + area2 - inter + _F32(eps))


def clip_boxes(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Clamp xyxy boxes (N, 4) to x in [0, W], y in [0, H]; returns a new array."""
    _check_boxes(boxes)
    h, w = hw
    out = boxes.copy()
    out[:, 0::2] = np.clip(boxes[:, 0::2], _F32(0), _F32(w))  # x1, x2
    out[:, 1::2] = np.clip(boxes[:, 1::2], _F32(0), _F32(h))  # y1, y2
    return out


def adjust_boxes_to_border(
    boxes: np.ndarray, hw: tuple[int, int], threshold: float = 20
) -> np.ndarray:
    """Snap box edges within ``threshold`` px of the border onto it (FastSAM, spec §3.7):
    x1 < t -> 0, y1 < t -> 0, x2 > W - t -> W, y2 > H - t -> H. Returns a new (N, 4) array."""
    _check_boxes(boxes)
    h, w = hw
    t = _F32(threshold)
    out = boxes.copy()
    out[:, 0] = np.where(boxes[:, 0] < t, _F32(0), boxes[:, 0])
    out[:, 1] = np.where(boxes[:, 1] < t, _F32(0), boxes[:, 1])
    out[:, 2] = np.where(boxes[:, 2] > _F32(w - threshold), _F32(w), boxes[:, 2])
    out[:, 3] = np.where(boxes[:, 3] > _F32(h - threshold), _F32(h), boxes[:, 3])
    return out


def scale_boxes(
    boxes: np.ndarray, geometry: LetterboxGeometry, rule: str = "official"
) -> np.ndarray:
    """Map xyxy boxes (N, 4) from letterboxed input pixels to original pixels and clip, with
    the "official" (8.0.120) or "ultralytics" (8.4.190) arithmetic of `ops.boxes.scale_boxes`.

    Returns:
        (N, 4) float32 xyxy in original pixels, clamped to [0, W0] x [0, H0].
    """
    _check_boxes(boxes)
    in_h, in_w = geometry.input_hw
    h0, w0 = geometry.orig_hw
    gain = min(in_h / h0, in_w / w0)
    if rule == "official":
        pad_x, pad_y = round((in_w - w0 * gain) / 2 - 0.1), round((in_h - h0 * gain) / 2 - 0.1)
        gain_x = gain_y = gain
    elif rule == "ultralytics":
        new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
        gain_x, gain_y = new_w / w0, new_h / h0
        pad_x, pad_y = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
    else:
        raise ValueError(f"rule must be 'official' or 'ultralytics', got {rule!r}")
    dtype = boxes.dtype.type
    out = np.empty_like(boxes)
    out[:, 0::2] = (boxes[:, 0::2] - dtype(pad_x)) / dtype(gain_x)  # x1, x2
    out[:, 1::2] = (boxes[:, 1::2] - dtype(pad_y)) / dtype(gain_y)  # y1, y2
    return clip_boxes(out, (h0, w0))


@dataclass(frozen=True)
class FullBoxStep:
    """Outcome of FastSAM's full-image-box step (as `ops.boxes.FullBoxStep`).

    Attributes:
        boxes: (N, 4) xyxy after border snapping and (when applied) full-box replacement.
        matched: (M,) int64 indices of the boxes with IoU > threshold against the full box.
        ambiguous: official step only: M >= 2 (the official repo fails); nothing replaced.
    """

    boxes: np.ndarray
    matched: np.ndarray
    ambiguous: bool = False


def full_box_step_official(
    boxes_input: np.ndarray,
    input_hw: tuple[int, int],
    threshold: float = 20,
    iou_threshold: float = 0.9,
) -> FullBoxStep:
    """OFF's full-image-box step in letterbox space (spec §3.7), as
    `ops.boxes.full_box_step_official`: snap to the border, plain IoU against [0, 0, W, H];
    exactly one match becomes the full box, two or more are `ambiguous` (nothing replaced).

    Args:
        boxes_input: (N, 4) xyxy letterbox pixels (NMS output).
        input_hw: (H, W) of the padded network input.
    """
    _check_boxes(boxes_input, "boxes_input")
    h, w = input_hw
    snapped = adjust_boxes_to_border(boxes_input, (h, w), threshold)
    full = np.array([[0.0, 0.0, w, h]], dtype=snapped.dtype)  # (1, 4)
    matched = np.flatnonzero(box_iou(full, snapped)[0] > _F32(iou_threshold)).astype(np.int64)
    if matched.size >= 2:
        return FullBoxStep(boxes=snapped, matched=matched, ambiguous=True)
    if matched.size == 1:
        snapped[matched] = full
    return FullBoxStep(boxes=snapped, matched=matched, ambiguous=False)


def full_box_step_ultralytics(
    boxes_orig: np.ndarray,
    orig_hw: tuple[int, int],
    threshold: float = 20,
    iou_threshold: float = 0.9,
) -> FullBoxStep:
    """8.4.190's full-image-box step in original pixels (spec §3.7), as
    `ops.boxes.full_box_step_ultralytics`: snap, then every box with IoU (eps 1e-7) above
    ``iou_threshold`` against [0, 0, W0, H0] becomes that box.

    Args:
        boxes_orig: (N, 4) xyxy original pixels.
        orig_hw: (H0, W0).
    """
    _check_boxes(boxes_orig, "boxes_orig")
    h0, w0 = orig_hw
    snapped = adjust_boxes_to_border(boxes_orig, (h0, w0), threshold)
    full = np.array([[0.0, 0.0, w0, h0]], dtype=snapped.dtype)  # (1, 4)
    iou = box_iou(full, snapped, eps=1e-7)[0]  # (N,)
    matched = np.flatnonzero(iou > _F32(iou_threshold)).astype(np.int64)
    if matched.size:
        snapped[matched] = full
    return FullBoxStep(boxes=snapped, matched=matched, ambiguous=False)


def anchor_points(
    anchors: np.ndarray, anchor_indices: np.ndarray, geometry: LetterboxGeometry, rule: str
) -> np.ndarray:
    """Each instance's anchor cell centre in original pixels (`Results.point_coords`), as
    `Predictor._postprocess` computes it: the centre scaled like a zero-size box.

    Args:
        anchors: (A, 2) float32 cell centres (x, y) in letterbox pixels (the graph's `anchors`).
        anchor_indices: (N,) int64 rows of `anchors` (`Detections.anchor_indices`).
        geometry: the image's letterbox geometry.
        rule: "official" or "ultralytics" (`scale_boxes`).

    Returns:
        (N, 2) float32 (x, y) in original pixels.
    """
    if anchors.ndim != 2 or anchors.shape[1] != 2:
        raise ValueError(f"anchors must be (A, 2) xy, got {tuple(anchors.shape)}")
    xy = anchors[anchor_indices].astype(np.float32)  # (N, 2)
    return scale_boxes(np.concatenate([xy, xy], 1), geometry, rule)[:, :2]  # (N, 4) -> (N, 2)
