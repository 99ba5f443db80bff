"""Box geometry: format conversion, IoU, clipping, letterbox -> original scaling and FastSAM's
full-image-box step (spec §3.6-§3.8).

Every function returns a new tensor; none modifies its input (upstream's versions work in place,
which spec §3.7 lists as a quirk: where that matters the caller passes the returned boxes on
explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_core.ops.references import Postprocess


def _check_boxes(boxes: torch.Tensor, name: str = "boxes") -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, 4), got {type(boxes).__name__}"
        )
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (cx, cy, w, h) -> (..., 4) (x1, y1, x2, y2); upstream's arithmetic (xy -/+ wh/2)."""
    if boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must end in a dimension of 4 (cx, cy, w, h), got {tuple(boxes.shape)}"
        )
    xy, half_wh = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat((xy - half_wh, xy + half_wh), dim=-1)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.
        eps: added to the union (0 = OFF's plain IoU; 8.4.190's ``box_iou`` uses 1e-7).

    Returns:
        (N, M) IoU; 0/0 (two empty boxes, eps 0) gives NaN, which compares False with any threshold.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    a1, a2 = boxes1[:, None, :2], boxes1[:, None, 2:]  # (N, 1, 2)
    b1, b2 = boxes2[None, :, :2], boxes2[None, :, 2:]  # (1, M, 2)
    wh = (torch.minimum(a2, b2) - torch.maximum(a1, b1)).clamp(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    area1 = (a2 - a1)[..., 0] * (a2 - a1)[..., 1]  # (N, 1)
    area2 = (b2 - b1)[..., 0] * (b2 - b1)[..., 1]  # (1, M)
    return inter / (area1 + area2 - inter + eps)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Clamp xyxy boxes (N, 4) to x in [0, W], y in [0, H]; returns a new tensor."""
    _check_boxes(boxes)
    h, w = hw
    x = boxes[:, 0::2].clamp(0, w)  # (N, 2) x1, x2
    y = boxes[:, 1::2].clamp(0, h)  # (N, 2) y1, y2
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)  # (N, 4)


def adjust_boxes_to_border(
    boxes: torch.Tensor, hw: tuple[int, int], threshold: float = 20
) -> torch.Tensor:
    """Snap box edges within ``threshold`` px of the image border onto it (FastSAM, spec §3.7).

    x1 < t -> 0, y1 < t -> 0, x2 > W - t -> W, y2 > H - t -> H. Returns a new (N, 4) tensor.
    """
    _check_boxes(boxes)
    h, w = hw
    x1, y1, x2, y2 = boxes.unbind(1)  # (N,) each
    zero, full_w, full_h = (
        boxes.new_tensor(0.0),
        boxes.new_tensor(float(w)),
        boxes.new_tensor(float(h)),
    )
    return torch.stack(
        (
            torch.where(x1 < threshold, zero, x1),
            torch.where(y1 < threshold, zero, y1),
            torch.where(x2 > w - threshold, full_w, x2),
            torch.where(y2 > h - threshold, full_h, y2),
        ),
        dim=1,
    )  # (N, 4)


def scale_boxes(
    boxes: torch.Tensor, geometry: LetterboxGeometry, rule: Postprocess = "official"
) -> torch.Tensor:
    """Map xyxy boxes from letterboxed input pixels to original pixels and clip (spec §3.8).

    Both rules derive the padding from ``geometry.input_hw`` and ``geometry.orig_hw`` only, as
    upstream does:

    * "official" (8.0.120): one gain ``g = min(H/H0, W/W0)``, pad ``round((W - W0*g)/2 - 0.1)``
      (same for y).
    * "ultralytics" (8.4.190): content size ``max(round(H0*g), 1)`` x ``max(round(W0*g), 1)``,
      separate x/y gains ``w/W0`` and ``h/H0``, pad ``round((W - w)/2 - 0.1)``.

    Args:
        boxes: (N, 4) xyxy in input pixels.
        geometry: the letterbox geometry of this image.
        rule: which reference's arithmetic to reproduce.

    Returns:
        (N, 4) xyxy in original pixels, clamped to [0, W0] x [0, H0].
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
    x = (boxes[:, 0::2] - pad_x) / gain_x  # (N, 2) x1, x2
    y = (boxes[:, 1::2] - pad_y) / gain_y  # (N, 2) y1, y2
    out = torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)  # (N, 4)
    return clip_boxes(out, (h0, w0))


@dataclass(frozen=True)
class FullBoxStep:
    """Outcome of FastSAM's full-image-box step.

    Attributes:
        boxes: (N, 4) xyxy after border snapping and (when applied) full-box replacement.
        matched: (M,) int64 indices of the boxes with IoU > threshold against the full box.
        ambiguous: official step only: M >= 2, where the official repo fails and returns None
            (spec §3.7); ``boxes`` are then snapped but nothing is replaced.
    """

    boxes: torch.Tensor
    matched: torch.Tensor
    ambiguous: bool = False


def full_box_step_official(
    boxes_input: torch.Tensor,
    input_hw: tuple[int, int],
    threshold: float = 20,
    iou_threshold: float = 0.9,
) -> FullBoxStep:
    """OFF's full-image-box step on image 0, in letterbox space (spec §3.7, §8 item 6).

    1. Snap all boxes to the border of the padded input (``threshold`` px); upstream does this in
       place, so the snapped boxes are the ones later used to crop masks: use ``result.boxes``
       downstream.
    2. Plain IoU (no eps) against [0, 0, W, H]; indices with IoU > ``iou_threshold`` match.
    3. Exactly one match: that box becomes [0, 0, W, H] (the caller also sets its class to 0 and
       keeps its score and coefficients). Two or more: ``ambiguous=True`` and nothing is replaced
       (upstream returns None).

    Args:
        boxes_input: (N, 4) xyxy in letterbox pixels (NMS output).
        input_hw: (H, W) of the padded network input.

    Returns:
        FullBoxStep with new boxes.
    """
    _check_boxes(boxes_input, "boxes_input")
    h, w = input_hw
    snapped = adjust_boxes_to_border(boxes_input, (h, w), threshold)
    full = snapped.new_tensor([[0.0, 0.0, float(w), float(h)]])  # (1, 4)
    matched = torch.nonzero(box_iou(full, snapped)[0] > iou_threshold).flatten()  # (M,)
    if matched.numel() >= 2:
        return FullBoxStep(boxes=snapped, matched=matched, ambiguous=True)
    if matched.numel() == 1:
        snapped = snapped.clone()
        snapped[matched] = full
    return FullBoxStep(boxes=snapped, matched=matched, ambiguous=False)


def full_box_step_ultralytics(
    boxes_orig: torch.Tensor,
    orig_hw: tuple[int, int],
    threshold: float = 20,
    iou_threshold: float = 0.9,
) -> FullBoxStep:
    """8.4.190's full-image-box step, per image, in original pixels after masks are built (§3.7).

    Snap to the original image border, then every box with IoU (eps 1e-7) > ``iou_threshold``
    against [0, 0, W0, H0] becomes that box. Masks are not touched; any number of matches is fine.

    Args:
        boxes_orig: (N, 4) xyxy in original pixels.
        orig_hw: (H0, W0).

    Returns:
        FullBoxStep with new boxes (``ambiguous`` always False).
    """
    _check_boxes(boxes_orig, "boxes_orig")
    h0, w0 = orig_hw
    snapped = adjust_boxes_to_border(boxes_orig, (h0, w0), threshold)
    full = snapped.new_tensor([[0.0, 0.0, float(w0), float(h0)]])  # (1, 4)
    matched = torch.nonzero(box_iou(full, snapped, eps=1e-7)[0] > iou_threshold).flatten()  # (M,)
    if matched.numel():
        snapped = snapped.clone()
        snapped[matched] = full
    return FullBoxStep(boxes=snapped, matched=matched, ambiguous=False)
