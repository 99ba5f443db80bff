"""The FastSAM repo's prompt rules (spec §4.1), written as small dense reference functions.

These mirror `FastSAMPrompt.box_prompt`, `.point_prompt` and the selection part of `.text_prompt`
step by step, quirks included (int scaling, round/clamp, `list(set(...))` dedup, mask-order
set/clear union, filtered-index remap), for the prompt parity tests. Dense on purpose: clarity
over speed.
"""

from __future__ import annotations

import numpy as np
import torch


def official_box_prompt(
    masks: torch.Tensor, bboxes: list[list[float]], target_hw: tuple[int, int]
) -> tuple[list[int], list[int]]:
    """masks (N, h, w) float 0/1; bboxes xyxy original px -> (per-box argmax, list(set(...)))."""
    target_height, target_width = target_hw
    h, w = masks.shape[1], masks.shape[2]
    max_iou_index = []
    for bbox in bboxes:
        bbox = list(bbox)
        assert bbox[2] != 0 and bbox[3] != 0
        if h != target_height or w != target_width:
            bbox = [
                int(bbox[0] * w / target_width),
                int(bbox[1] * h / target_height),
                int(bbox[2] * w / target_width),
                int(bbox[3] * h / target_height),
            ]
        bbox[0] = round(bbox[0]) if round(bbox[0]) > 0 else 0  # noqa: FURB136 (as written upstream)
        bbox[1] = round(bbox[1]) if round(bbox[1]) > 0 else 0  # noqa: FURB136 (as written upstream)
        bbox[2] = round(bbox[2]) if round(bbox[2]) < w else w  # noqa: FURB136 (as written upstream)
        bbox[3] = round(bbox[3]) if round(bbox[3]) < h else h  # noqa: FURB136 (as written upstream)
        bbox_area = (bbox[3] - bbox[1]) * (bbox[2] - bbox[0])
        masks_area = torch.sum(masks[:, bbox[1] : bbox[3], bbox[0] : bbox[2]], dim=(1, 2))
        orig_masks_area = torch.sum(masks, dim=(1, 2))
        union = bbox_area + orig_masks_area - masks_area
        ious = masks_area / union
        max_iou_index.append(int(torch.argmax(ious)))
    return max_iou_index, list(set(max_iou_index))


def official_point_prompt(
    masks: np.ndarray, points: list[list[int]], pointlabel: list[int], target_hw: tuple[int, int]
) -> np.ndarray:
    """masks (N, h, w) bool; points xy original px -> (h, w) bool union (spec §4.1 point_prompt)."""
    h, w = masks.shape[1], masks.shape[2]
    if h != target_hw[0] or w != target_hw[1]:
        points = [[int(p[0] * w / target_hw[1]), int(p[1] * h / target_hw[0])] for p in points]
    onemask = np.zeros((h, w))
    annotations = [{"segmentation": m, "area": m.sum()} for m in masks]
    annotations = sorted(annotations, key=lambda x: x["area"], reverse=True)
    for annotation in annotations:
        mask = annotation["segmentation"]
        for i, point in enumerate(points):
            if mask[point[1], point[0]] == 1 and pointlabel[i] == 1:
                onemask[mask] = 1
            if mask[point[1], point[0]] == 1 and pointlabel[i] == 0:
                onemask[mask] = 0
    return onemask >= 1


def official_text_select(similarity: torch.Tensor, filter_id: list[int]) -> int:
    """similarity (K,) over the kept crops; filter_id the skipped mask ids -> the repo's index."""
    scores = (100.0 * similarity).softmax(dim=0)  # retrieve(): softmax over images
    max_idx = int(scores.argsort()[-1])
    max_idx += sum(np.array(filter_id) <= int(max_idx))  # the repo's remap, once
    return int(max_idx)
