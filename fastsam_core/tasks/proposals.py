"""Everything-mode masks as class-agnostic object proposals (FastSAM paper §4.2, issue #16 part 3).

A proposal is one everything-mode row: its detection box, its mask (COCO RLE) and its score; rows
are ranked by score (NMS output order) and cut at `max_proposals` (the Predictor's `max_det`).
They are written as COCO results with category 1 and scored by `eval.proposals` (AR@10/100/1000
for boxes and masks). Proposal settings differ from FastSAM's inference defaults: a low
confidence and up to 1000 proposals per image (`tasks.TASK_DEFAULTS["proposals"]`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastsam_core.data.datasets import DatasetIndex, load_dataset
from fastsam_core.eval.coco import ground_truth, predictions, predictor_fn
from fastsam_core.eval.proposals import MAX_DETS, proposal_metrics


def predict_proposals(
    predictor: Any, data: str | Path | DatasetIndex, split: str = "val"
) -> list[dict[str, Any]]:
    """Proposals for every image of a dataset, as COCO results.

    Args:
        predictor: a `Predictor` (its conf / max_det decide how many proposals; see
            `tasks.TASK_DEFAULTS`).
        data: a COCO/LVIS `.json`, a YOLO-seg `.yaml` or a loaded `DatasetIndex`.
        split: the YAML entry to read.

    Returns:
        One dict per proposal: image_id, category_id 1, bbox xywh, score, segmentation (RLE).
    """
    index = data if isinstance(data, DatasetIndex) else load_dataset(data, split=split)
    return predictions(index, predictor_fn(predictor), class_agnostic=True)


def proposal_ground_truth(data: str | Path, split: str = "val") -> dict[str, Any]:
    """The ground truth proposals are scored against: a COCO/LVIS `.json` as is (crowd regions
    and `area` kept), a YOLO-seg `.yaml` rasterised to a class-agnostic COCO dict."""
    path = Path(data)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    return ground_truth(load_dataset(path, split=split), class_agnostic=True)


def evaluate_proposals(
    predictor: Any, data: str | Path, split: str = "val", max_dets: tuple[int, ...] = MAX_DETS
) -> dict[str, float]:
    """Box and mask AR of `predictor`'s proposals on a dataset (`box_AR@100`, `mask_AR@1000`..)."""
    gt = proposal_ground_truth(data, split)
    return proposal_metrics(gt, predict_proposals(predictor, data, split), max_dets)
