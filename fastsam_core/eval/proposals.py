"""Class-agnostic object-proposal recall: AR@10/100/1000 for boxes and masks (issue #16 part 3).

COCO's recall, computed as pycocotools' `COCOeval` with `useCats=0`, `maxDets=[10, 100, 1000]`
computes it (tests/unit/test_eval_proposals.py checks equality): per image, proposals sorted by
score (stable) and cut at the largest budget; for each IoU threshold 0.50:0.05:0.95 each proposal
in score order takes the best-IoU ground truth still free (IoU >= threshold), preferring
non-ignored ones; crowd ground truth is never used up and its IoU is intersection over the
proposal's area. Per area range (all, small < 32^2 <= medium < 96^2 <= large, by the annotation's
`area`) ground truth outside the range is ignored and the matching is redone. Recall = matched
non-ignored ground truth / non-ignored ground truth over the whole data set; AR = its mean over
the thresholds (-1 when a range has no ground truth, as COCOeval).

Input: a COCO or LVIS instances file (LVIS has no `iscrowd`: 0) and proposals as COCO results
(`image_id`, `bbox` xywh, `score`, `segmentation` RLE for masks; `category_id` is ignored).
Ground-truth polygons are rasterised as for training (`data.datasets.rasterize_instances`, PIL),
which can differ from pycocotools' polygon rasteriser by boundary pixels; RLEs are exact.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastsam_core.data.datasets import ImageRecord, Instance, rasterize_instances
from fastsam_core.export.rle import decode

IouType = Literal["bbox", "segm"]
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO: np.linspace(.5, .95, 10)
MAX_DETS = (10, 100, 1000)
AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}
_AREA_SHORT = {"small": "s", "medium": "m", "large": "l"}
_MASK_CHUNK = 64  # proposals per dense (n, H*W) chunk of the mask IoU


def box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO box IoU (`maskUtils.iou` on xywh boxes).

    Args:
        dets: (D, 4) xywh; gts: (G, 4) xywh; crowd: (G,) bool.

    Returns:
        (D, G) float64; for crowd ground truth intersection / proposal area.
    """
    dx1, dy1 = dets[:, 0:1], dets[:, 1:2]  # (D, 1)
    dx2, dy2 = dx1 + dets[:, 2:3], dy1 + dets[:, 3:4]
    gx1, gy1 = gts[None, :, 0], gts[None, :, 1]  # (1, G)
    gx2, gy2 = gx1 + gts[None, :, 2], gy1 + gts[None, :, 3]
    iw = np.clip(np.minimum(dx2, gx2) - np.maximum(dx1, gx1), 0, None)  # (D, G)
    ih = np.clip(np.minimum(dy2, gy2) - np.maximum(dy1, gy1), 0, None)
    inter = iw * ih
    det_area = dets[:, 2:3] * dets[:, 3:4]  # (D, 1)
    union = np.where(crowd[None], det_area, det_area + (gts[:, 2] * gts[:, 3])[None] - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(dets: Sequence[dict[str, Any]], gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO mask IoU of RLE proposals against dense ground truth.

    Args:
        dets: D RLEs of the image's size; gts: (G, H, W) bool; crowd: (G,) bool.

    Returns:
        (D, G) float64; for crowd ground truth intersection / proposal area.
    """
    g = gts.reshape(gts.shape[0], -1).astype(np.float32)  # (G, H*W)
    gt_area = g.sum(1).astype(np.float64)  # (G,)
    out = np.zeros((len(dets), gts.shape[0]))
    for start in range(0, len(dets), _MASK_CHUNK):
        chunk = np.stack([decode(r).reshape(-1) for r in dets[start : start + _MASK_CHUNK]])
        d = chunk.astype(np.float32)  # (n, H*W)
        inter = (d @ g.T).astype(np.float64)  # (n, H*W) @ (H*W, G) -> (n, G), exact below 2^24
        det_area = d.sum(1).astype(np.float64)[:, None]  # (n, 1)
        union = np.where(crowd[None], det_area, det_area + gt_area[None] - inter)
        out[start : start + len(chunk)] = np.where(
            union > 0, inter / np.where(union > 0, union, 1), 0
        )
    return out


def match_image(
    ious: np.ndarray, ignore: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS
) -> np.ndarray:
    """COCOeval.evaluateImg's greedy matching of score-sorted proposals.

    Args:
        ious: (D, G) IoU, proposals in score order; ignore: (G,) bool; crowd: (G,) bool.

    Returns:
        (T, D) bool: proposal d matched a non-ignored ground truth at threshold t.
    """
    order = np.argsort(ignore, kind="stable")  # COCO: non-ignored ground truth first
    ious, ignore, crowd = ious[:, order], ignore[order], crowd[order]
    num_det, num_gt = ious.shape
    hits = np.zeros((thresholds.size, num_det), dtype=bool)
    for k, t in enumerate(thresholds.tolist()):
        taken = np.zeros(num_gt, dtype=bool)
        for d in range(num_det):
            best, m = min(t, 1 - 1e-10), -1
            for gi in range(num_gt):
                if taken[gi] and not crowd[gi]:
                    continue
                if m > -1 and not ignore[m] and ignore[gi]:
                    break  # non-ignored match found; ignored ones come after
                if ious[d, gi] < best:
                    continue
                best, m = ious[d, gi], gi
            if m > -1:
                taken[m] = True
                hits[k, d] = not ignore[m]
    return hits


def _gt_masks(anns: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """(G, H, W) bool masks of COCO annotations (polygons, RLE or uncompressed RLE)."""
    instances = []
    for ann in anns:
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            instances.append(Instance(0, rle=seg))
        else:
            polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg or []]
            instances.append(Instance(0, polygons=[p for p in polys if len(p) >= 3]))
    record = ImageRecord(Path(""), 0, height, width, instances)
    return rasterize_instances(record)


def average_recall(
    gt: dict[str, Any] | str | Path,
    proposals: Sequence[dict[str, Any]],
    iou_type: IouType = "bbox",
    max_dets: Sequence[int] = MAX_DETS,
) -> dict[str, float]:
    """Class-agnostic AR of proposals.

    Args:
        gt: a COCO/LVIS instances dict or its JSON path.
        proposals: COCO results (image_id, bbox xywh, score, segmentation RLE for "segm").
        iou_type: "bbox" or "segm".
        max_dets: proposal budgets, increasing; area ranges use the largest.

    Returns:
        {"AR@10": .., "AR@100": .., "AR@1000": .., "AR_s@1000": .., "AR_m@1000": ..,
        "AR_l@1000": ..} (budgets as given).
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    data: dict[str, Any] = gt if isinstance(gt, dict) else json.loads(Path(gt).read_text())
    budgets = sorted(int(k) for k in max_dets)
    images = {int(im["id"]): im for im in data["images"]}
    gts_by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in data["annotations"]:
        gts_by_image[int(ann["image_id"])].append(ann)
    dets_by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for det in proposals:
        image_id = int(det["image_id"])
        if image_id not in images:
            raise ValueError(f"proposal for image_id {image_id}, which the ground truth lacks")
        dets_by_image[image_id].append(det)
    # matched[area][budget] and num_gt[area], summed over images
    matched = {a: np.zeros((len(budgets), IOU_THRESHOLDS.size)) for a in AREA_RANGES}
    num_gt = dict.fromkeys(AREA_RANGES, 0)
    for image_id in sorted(images):
        anns = gts_by_image.get(image_id, [])
        if not anns:
            continue
        dets = dets_by_image.get(image_id, [])
        order = np.argsort([-float(d["score"]) for d in dets], kind="mergesort")
        dets = [dets[i] for i in order[: budgets[-1]]]
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns])
        areas = np.array([float(a["area"]) for a in anns])
        if not dets:
            ious = np.zeros((0, len(anns)))
        elif iou_type == "bbox":
            gt_boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
            ious = box_iou(np.array([d["bbox"] for d in dets], dtype=np.float64), gt_boxes, crowd)
        else:
            image = images[image_id]
            masks = _gt_masks(anns, int(image["height"]), int(image["width"]))
            ious = mask_iou([d["segmentation"] for d in dets], masks, crowd)
        for name, (low, high) in AREA_RANGES.items():
            ignore = crowd | (areas < low) | (areas > high)
            num_gt[name] += int((~ignore).sum())
            hits = match_image(ious, ignore, crowd)  # (T, D)
            for b, budget in enumerate(budgets):
                matched[name][b] += hits[:, :budget].sum(1)
    out: dict[str, float] = {}
    for name in AREA_RANGES:
        recall = matched[name] / num_gt[name] if num_gt[name] else None  # (B, T)
        for b, budget in enumerate(budgets):
            if name != "all" and budget != budgets[-1]:
                continue
            key = f"AR@{budget}" if name == "all" else f"AR_{_AREA_SHORT[name]}@{budget}"
            out[key] = float(recall[b].mean()) if recall is not None else -1.0
    return out


def proposal_metrics(
    gt: dict[str, Any] | str | Path,
    proposals: Sequence[dict[str, Any]],
    max_dets: Sequence[int] = MAX_DETS,
) -> dict[str, float]:
    """Box AR (`box_AR@100`, ...) and, when every proposal has a segmentation, mask AR."""
    data: dict[str, Any] = gt if isinstance(gt, dict) else json.loads(Path(gt).read_text())
    metrics = {f"box_{k}": v for k, v in average_recall(data, proposals, "bbox", max_dets).items()}
    if proposals and all("segmentation" in p for p in proposals):
        segm = average_recall(data, proposals, "segm", max_dets)
        metrics.update({f"mask_{k}": v for k, v in segm.items()})
    return metrics
