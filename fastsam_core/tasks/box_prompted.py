"""Box-prompted instance segmentation: a detector's boxes as prompts (FastSAM paper §4.3).

Reads a detector's COCO results file (`image_id`, `category_id`, `bbox` xywh, `score`), prompts
everything mode with each image's boxes (one mask per box: the best-IoU everything-mode mask,
`prompts/box.py`), and writes COCO segmentation results that keep the detector's `category_id`,
`score` and `bbox`, so pycocotools scores the masks exactly as the paper does (mask AP with
ViTDet boxes). A box that overlaps no mask gets an empty mask (`no_match="empty"`, scored as a
miss) or its filled box (`no_match="box"`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastsam_core.data.datasets import DatasetIndex, load_dataset, load_rgb
from fastsam_core.eval.coco import coco_metrics
from fastsam_core.export.rle import encode_dense

NoMatch = Literal["empty", "box"]


def read_detections(path: str | Path) -> dict[int, list[dict[str, Any]]]:
    """A COCO results file grouped by image id (file order kept).

    Raises:
        FileNotFoundError: no such file.
        TypeError: not a JSON list.
        ValueError: an entry lacks image_id, category_id, bbox [x, y, w, h] or score.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detections file {path} does not exist (a COCO results .json)")
    detections = json.loads(path.read_text())
    if not isinstance(detections, list):
        raise TypeError(f"{path}: expected a JSON list of COCO results, got {type(detections)}")
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i, det in enumerate(detections):
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing or len(det["bbox"]) != 4:
            raise ValueError(
                f"{path}: result {i} needs image_id, category_id, bbox [x, y, w, h] and score; "
                f"got {det}"
            )
        by_image[int(det["image_id"])].append(det)
    return dict(by_image)


def _box_rle(box_xyxy: list[float], hw: tuple[int, int]) -> dict[str, Any]:
    """RLE of a filled box (pixels x1 <= x < x2, y1 <= y < y2 after rounding)."""
    mask = np.zeros(hw, dtype=bool)
    x1, y1, x2, y2 = (round(float(v)) for v in box_xyxy)
    mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return encode_dense(mask)


def segment_detections(
    predictor: Any,
    data: str | Path | DatasetIndex,
    detections: str | Path | dict[int, list[dict[str, Any]]],
    no_match: NoMatch = "empty",
    split: str = "val",
) -> list[dict[str, Any]]:
    """COCO segmentation results: one mask per detection, in the detector's order per image.

    Args:
        predictor: a `Predictor` (everything mode settings decide the masks boxes pick from).
        data: the dataset whose images the detections refer to (COCO `.json`, `.yaml`, index).
        detections: a COCO results file or `read_detections` output.
        no_match: row of a box overlapping no mask: "empty" mask or the filled "box".
        split: the YAML entry to read.
    """
    if no_match not in ("empty", "box"):
        raise ValueError(f"no_match must be 'empty' or 'box', got {no_match!r}")
    index = data if isinstance(data, DatasetIndex) else load_dataset(data, split=split)
    by_image = detections if isinstance(detections, dict) else read_detections(detections)
    known = {r.image_id for r in index.records}
    unknown = sorted(set(by_image) - known)
    if unknown:
        raise ValueError(f"detections refer to image ids {unknown[:5]} that the dataset lacks")
    out = []
    for record in index.records:
        dets = by_image.get(record.image_id)
        if not dets:
            continue
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in dets)]
        rows = predictor(load_rgb(record), boxes=boxes, box_no_match="empty")[0]
        rles, areas = rows.to_rle(), rows.masks_original().areas().tolist()
        for det, box, rle, area in zip(dets, boxes, rles, areas, strict=True):
            if area == 0 and no_match == "box":
                rle = _box_rle(box, (record.height, record.width))
            counts = rle["counts"]
            out.append(
                {
                    "image_id": record.image_id,
                    "category_id": det["category_id"],
                    "bbox": [float(v) for v in det["bbox"]],
                    "score": float(det["score"]),
                    "segmentation": {
                        "size": [int(v) for v in rle["size"]],
                        "counts": counts.decode() if isinstance(counts, bytes) else counts,
                    },
                }
            )
    return out


def evaluate_box_prompted(
    predictor: Any,
    data: str | Path,
    detections: str | Path,
    no_match: NoMatch = "empty",
) -> dict[str, float]:
    """pycocotools box and mask AP/AR of box-prompted masks against a COCO `.json`.

    Box metrics are the detector's own (its boxes are kept); mask metrics are FastSAM's.
    """
    path = Path(data)
    if path.suffix.lower() != ".json":
        raise ValueError(
            f"box-prompted evaluation needs the COCO .json the detections use, got {path}"
        )
    results = segment_detections(predictor, path, detections, no_match)
    return coco_metrics(json.loads(path.read_text()), results)
