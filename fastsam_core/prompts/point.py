"""Point prompts: masks under foreground / background points (spec §4.1, §4.2).

Two modes:

* "union" (FastSAM repo, `FastSAMPrompt.point_prompt`): ONE mask. Masks are visited by area,
  largest first (stable sort); for each mask, each point in the given order that lies on it sets
  (label 1) or clears (label 0) the mask's pixels in the output. A small mask under a positive
  point can therefore re-set pixels a larger mask under a negative point cleared. Masks stay in
  their own frame; if that is not the original image (retina off) points are scaled with
  `int(v * w / W)`, ignoring the letterbox padding, as the reference does.
* "instances" (ultralytics 8.4.190): each matching mask separately. Masks containing any
  positive point are selected (every mask if all labels are 0), then masks containing any
  negative point are deselected. Masks at the original size; points truncated to integers.

Unlike both references, points must lie inside the image (`inputs.parse_points`): a negative
coordinate never wraps around to the far edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from fastsam_core.compact_masks import CompactMasks

PointMode = Literal["union", "instances"]


def point_pixels(
    points: torch.Tensor, orig_hw: Sequence[int], frame_hw: Sequence[int]
) -> torch.Tensor:
    """(P, 2) float xy original px -> (P, 2) int64 pixel in the masks' frame (official scaling)."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    orig_h, orig_w = int(orig_hw[0]), int(orig_hw[1])
    points = points.to(torch.float64)
    if (height, width) != (orig_h, orig_w):
        points = points * points.new_tensor([width, height]) / points.new_tensor([orig_w, orig_h])
    return torch.trunc(points).long()  # int(): points are >= 0 here


def select_instances(
    masks: CompactMasks, points: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Ultralytics instance selection.

    Args:
        masks: N masks in the original frame.
        points: (P, 2) int64 xy pixels inside the frame.
        labels: (P,) int64, 1 = foreground, 0 = background.
    Returns:
        (N,) bool, True for selected masks.
    """
    hits = masks.contains_points(points.to(masks.device)).cpu()  # (N, P)
    positive, negative = labels == 1, labels == 0
    if not bool(positive.any()):
        selected = torch.ones(len(masks), dtype=torch.bool)  # only negatives: start from all
    else:
        selected = hits[:, positive].any(1)  # (N,)
    return selected & ~hits[:, negative].any(1)


def union_mask(
    masks: CompactMasks, points: torch.Tensor, labels: torch.Tensor
) -> tuple[CompactMasks, torch.Tensor]:
    """Official pixel union: one mask (or none when no pixel ends up set).

    Args:
        masks: N masks in their own frame.
        points: (P, 2) int64 xy pixels in that frame.
        labels: (P,) int64, 1 = foreground, 0 = background.
    Returns:
        (CompactMasks with 0 or 1 mask in the same frame, (K,) int64 indices of the masks hit
        by a point whose last hit was positive, i.e. the masks that set pixels).
    """
    hits = masks.contains_points(points.to(masks.device)).cpu()  # (N, P)
    hit_any = hits.any(1)  # (N,)
    if not bool(hit_any.any()):
        return CompactMasks.empty(masks.image_hw, masks.device), torch.zeros(0, dtype=torch.int64)
    # Within one mask all operations touch the same pixels: the last point on it decides.
    num_points = points.shape[0]
    last_hit = torch.where(hits, torch.arange(num_points), -1).amax(1)  # (N,) point index
    sets = hit_any & (labels[last_hit.clamp(min=0)] == 1)  # (N,) set (True) or clear (False)
    order = torch.sort(masks.areas().cpu(), descending=True, stable=True).indices
    order = order[hit_any[order]]  # hit masks, largest first
    regions = masks.regions.cpu()[order]  # (K, 4)
    x0, y0 = int(regions[:, 0].min()), int(regions[:, 1].min())
    x1, y1 = int(regions[:, 2].max()), int(regions[:, 3].max())
    canvas = torch.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=torch.bool, device=masks.device)
    for i in order.tolist():  # one bounding canvas, not N dense frames
        rx0, ry0, rx1, ry1 = masks.regions[i].tolist()
        if rx1 <= rx0 or ry1 <= ry0:
            continue
        window = canvas[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0]  # view into the canvas
        crop = masks.crop(i)
        if bool(sets[i]):
            window |= crop
        else:
            window &= ~crop
    setters = order[sets[order]]
    if not bool(canvas.any()):
        return CompactMasks.empty(masks.image_hw, masks.device), setters
    rows = canvas.any(1).nonzero().flatten()
    cols = canvas.any(0).nonzero().flatten()
    ty0, ty1 = int(rows[0]), int(rows[-1]) + 1
    tx0, tx1 = int(cols[0]), int(cols[-1]) + 1
    region = torch.tensor([[x0 + tx0, y0 + ty0, x0 + tx1, y0 + ty1]], dtype=torch.int64)
    return CompactMasks.from_crops(region, [canvas[ty0:ty1, tx0:tx1]], masks.image_hw), setters
