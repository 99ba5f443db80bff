"""Box prompts: the everything-mode mask with the best IoU for each box (spec §4.1, §4.2).

Both references score every mask against a box by
`IoU = inter / (box_area + mask_area - inter)` (inter = mask pixels inside the box; the mask
area is the WHOLE mask, not its part inside the box) and pick the first maximum. They differ in
how a float box becomes pixel indices:

* "official" (FastSAM repo, `FastSAMPrompt.box_prompt`): masks in their own frame; if that frame
  is not the original image (retina off), each coordinate is scaled with `int(v * w / W)`
  (truncation, and the letterbox padding is ignored: a reference quirk we keep); then
  `round()` (half to even) and clamp to the frame.
* "ultralytics" (8.4.190, `FastSAMPredictor.prompt`): masks at the original size (bilinear
  upsampling > 0.5 when retina is off); coordinates cast to int32 (truncation toward zero) and
  clipped to the image.

Counting uses `CompactMasks.box_overlap` (each mask's stored crop), never a dense (N, H, W) stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.ops.references import Postprocess


@dataclass(frozen=True)
class BoxMatch:
    """Best mask per box.

    Attributes:
        indices: (M,) int64 mask index per box, -1 when the box overlaps no mask (IoU 0 for all).
        iou: (M,) float32 IoU of that mask with the box (0 where indices is -1).
        best: (M,) int64 argmax mask per box even at IoU 0 (what both references return);
            -1 when there are no masks (nothing to pick).
    """

    indices: torch.Tensor
    iou: torch.Tensor
    best: torch.Tensor


def box_pixels_official(
    boxes: torch.Tensor, orig_hw: Sequence[int], frame_hw: Sequence[int]
) -> torch.Tensor:
    """Official rule: (M, 4) float xyxy, original px -> (M, 4) int64 pixel bounds in mask frame."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    orig_h, orig_w = int(orig_hw[0]), int(orig_hw[1])
    boxes = boxes.to(torch.float64)
    if (height, width) != (orig_h, orig_w):
        scale = boxes.new_tensor([width, height, width, height])
        size = boxes.new_tensor([orig_w, orig_h, orig_w, orig_h])
        boxes = torch.trunc(boxes * scale / size)  # python int(v * w / W), v >= 0
    boxes = torch.round(boxes)  # python round(): half to even, as torch.round
    x1, y1 = boxes[:, 0].clamp(min=0), boxes[:, 1].clamp(min=0)  # "round(v) if > 0 else 0"
    x2, y2 = boxes[:, 2].clamp(max=width), boxes[:, 3].clamp(max=height)  # "if < w else w"
    return torch.stack([x1, y1, x2, y2], 1).long()  # (M, 4)


def box_pixels_ultralytics(boxes: torch.Tensor, orig_hw: Sequence[int]) -> torch.Tensor:
    """Ultralytics rule: xyxy original px (M, 4) float -> int32 truncation, clipped to the image."""
    height, width = int(orig_hw[0]), int(orig_hw[1])
    boxes = torch.trunc(boxes.to(torch.float64)).long()
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(boxes.clamp(min=0), limits)  # (M, 4)


def box_mask_iou(masks: CompactMasks, boxes: torch.Tensor) -> torch.Tensor:
    """(N, M) float32 IoU of each mask with each integer box [x1, x2) x [y1, y2).

    Args:
        masks: N compact masks.
        boxes: (M, 4) int64 pixel bounds in the masks' frame.
    Returns:
        inter / (box_area + mask_area - inter) in float32 (both references divide in float32);
        NaN where the union is empty (an empty box against an empty mask), as the references.
    """
    inter = masks.box_overlap(boxes)  # (N, M) int64, per-crop counts
    areas = masks.areas().to(inter.device)  # (N,)
    box_areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    union = box_areas.to(inter.device)[None, :] + areas[:, None] - inter  # (N, M)
    return inter.float() / union.float()


def select_boxes(
    masks: CompactMasks,
    boxes: torch.Tensor,
    orig_hw: Sequence[int],
    rule: Postprocess = "official",
) -> BoxMatch:
    """Pick, for every box, the mask with the highest IoU (first maximum on ties).

    Args:
        masks: N masks; for "official" in their own frame, for "ultralytics" in the original
            (H0, W0) frame (see the module docstring).
        boxes: (M, 4) float xyxy in original-image pixels, already validated (`parse_boxes`).
        orig_hw: (H0, W0) of the original image.
        rule: "official" or "ultralytics" pixel rounding.
    Returns:
        BoxMatch with one entry per box, in the given order (duplicates allowed).
    """
    if rule == "official":
        pixels = box_pixels_official(boxes, orig_hw, masks.image_hw)
    elif rule == "ultralytics":
        if tuple(masks.image_hw) != tuple(int(v) for v in orig_hw):
            raise ValueError(
                f"the ultralytics box rule needs masks in the original {tuple(orig_hw)} frame, "
                f"got {masks.image_hw}; pass Results.masks_original('bilinear')"
            )
        pixels = box_pixels_ultralytics(boxes, orig_hw)
    else:
        raise ValueError(f"box rule must be 'official' or 'ultralytics', got {rule!r}")
    num_boxes = pixels.shape[0]
    if len(masks) == 0:
        empty = torch.full((num_boxes,), -1, dtype=torch.int64)
        return BoxMatch(empty, torch.zeros(num_boxes), empty.clone())
    raw = box_mask_iou(masks, pixels).cpu()  # (N, M)
    best = raw.argmax(dim=0)  # (M,) the references' pick: first maximum, NaN counts as maximum
    iou = torch.nan_to_num(raw, nan=0.0)
    best_iou, _ = iou.max(dim=0)  # ours: NaN (empty box vs empty mask) is no overlap
    best_ours = iou.argmax(dim=0)  # (M,) first maximum
    matched = best_iou > 0
    indices = torch.where(matched, best_ours, torch.full_like(best, -1))
    return BoxMatch(indices, torch.where(matched, best_iou, torch.zeros_like(best_iou)), best)
