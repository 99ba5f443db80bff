"""Class-agnostic proposal AR (fastsam_core.eval.proposals) against pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import copy
import functools
import io

import numpy as np
import pytest

from fastsam_core.eval.proposals import average_recall, box_iou, match_image, proposal_metrics
from fastsam_core.export.rle import encode_dense

pytest.importorskip("pycocotools", reason="needs the `eval` extra")

HW = (200, 240)


def _rect_mask(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros(HW, dtype=bool)
    mask[max(y, 0) : y + h, max(x, 0) : x + w] = True
    return mask


def _annotation(mask: np.ndarray, ann_id: int, image_id: int, category: int, crowd: int) -> dict:
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()), int(ys.max() + 1 - ys.min())]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "bbox": [float(v) for v in box],
        "area": float(mask.sum()),
        "iscrowd": crowd,
        "segmentation": encode_dense(mask),
    }


def _dataset(seed: int = 0) -> tuple[dict, list[dict]]:
    """A fresh copy of `_make_dataset(seed)` (built once: encoding the RLEs takes seconds)."""
    return copy.deepcopy(_make_dataset(seed))


@functools.cache
def _make_dataset(seed: int) -> tuple[dict, list[dict]]:
    """Rectangles of every area range (plus a crowd region) and jittered/random proposals."""
    rng = np.random.default_rng(seed)
    images, annotations, proposals = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "height": HW[0], "width": HW[1], "file_name": "x.png"})
        if image_id == 6:
            continue  # an image without ground truth (its proposals count for nothing)
        sides = [(12, 20), (25, 30), (40, 50), (110, 120), (8, 9)]  # small, medium x2, large, small
        gt_boxes = []
        for k, (h, w) in enumerate(sides):
            x, y = int(rng.integers(0, HW[1] - w)), int(rng.integers(0, HW[0] - h))
            crowd = int(k == 4 and image_id % 2 == 0)
            mask = _rect_mask(x, y, w, h)
            annotations.append(_annotation(mask, len(annotations) + 1, image_id, 1 + k % 2, crowd))
            gt_boxes.append((x, y, w, h))
        for _ in range(120):
            if rng.random() < 0.6:  # jittered ground truth: IoUs across 0.5..0.95
                x, y, w, h = gt_boxes[int(rng.integers(len(gt_boxes)))]
                j = rng.normal(0, 0.08, 4) * np.array([w, h, w, h])
                x, y = round(x + j[0]), round(y + j[1])
                w, h = max(round(w + j[2]), 2), max(round(h + j[3]), 2)
            else:
                w, h = (int(v) for v in rng.integers(4, 100, 2))
                x, y = int(rng.integers(0, HW[1] - w)), int(rng.integers(0, HW[0] - h))
            mask = _rect_mask(x, y, w, h)
            if not mask.any():
                continue
            proposals.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "score": float(np.round(rng.random(), 1)),  # many ties: stable order matters
                    "segmentation": encode_dense(mask),
                }
            )
    proposals += [dict(p, image_id=6) for p in proposals[:5]]
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"images": images, "annotations": annotations, "categories": categories}, proposals


def _pycocotools_ar(gt: dict, proposals: list[dict], iou_type: str) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(proposals))
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.useCats = 0
        evaluator.params.maxDets = [10, 100, 1000]
        evaluator.evaluate()
        evaluator.accumulate()
    recall = evaluator.eval["recall"]  # (T, K=1, A, M)

    def ar(area: int, budget: int) -> float:
        r = recall[:, 0, area, budget]
        return float(r[r > -1].mean()) if (r > -1).any() else -1.0

    out = {f"AR@{m}": ar(0, i) for i, m in enumerate((10, 100, 1000))}
    out.update({f"AR_{s}@1000": ar(a, 2) for a, s in ((1, "s"), (2, "m"), (3, "l"))})
    return out


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools(iou_type, seed):
    gt, proposals = _dataset(seed)
    ours = average_recall(gt, proposals, iou_type)
    theirs = _pycocotools_ar(gt, proposals, iou_type)
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert 0 < ours["AR@10"] < ours["AR@100"] < 1  # the data exercise the budgets


def test_perfect_proposals_recall_everything():
    gt, _ = _dataset(0)
    exact = [
        {
            "image_id": a["image_id"],
            "bbox": a["bbox"],
            "score": 1.0,
            "segmentation": a["segmentation"],
        }
        for a in gt["annotations"]
    ]
    metrics = proposal_metrics(gt, exact)
    for key in ("box_AR@100", "box_AR_s@1000", "box_AR_l@1000", "mask_AR@1000", "mask_AR_m@1000"):
        assert metrics[key] == pytest.approx(1.0), key


def test_lvis_without_iscrowd_equals_iscrowd_zero():
    gt, proposals = _dataset(0)
    for ann in gt["annotations"]:
        ann["iscrowd"] = 0
    lvis = copy.deepcopy(gt)
    for ann in lvis["annotations"]:
        del ann["iscrowd"]
    assert average_recall(lvis, proposals) == average_recall(gt, proposals)


def test_crowd_box_iou_divides_by_the_proposal_area():
    dets = np.array([[0.0, 0.0, 10.0, 10.0]])
    gts = np.array([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0]])
    iou = box_iou(dets, gts, np.array([False, True]))
    assert iou.tolist() == [[0.25, 1.0]]


def test_matching_prefers_non_ignored_ground_truth():
    # one proposal overlaps an ignored (0.9) and a non-ignored (0.6) ground truth
    ious = np.array([[0.9, 0.6]])
    hits = match_image(ious, ignore=np.array([True, False]), crowd=np.array([False, False]))
    assert hits[:3, 0].all() and not hits[3:, 0].any()  # thresholds 0.5, 0.55, 0.6 only


def test_unknown_image_is_an_error():
    gt, proposals = _dataset(0)
    with pytest.raises(ValueError, match="image_id 99"):
        average_recall(gt, [dict(proposals[0], image_id=99)])
