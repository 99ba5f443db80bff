"""Object proposals (fastsam_core.tasks.proposals) on a synthetic dataset, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam_core import Predictor
from fastsam_core.data.datasets import load_dataset, rasterize_instances
from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.export.rle import decode
from fastsam_core.results import results_from_dense
from fastsam_core.tasks import TASK_DEFAULTS, evaluate_task
from fastsam_core.tasks.proposals import (
    evaluate_proposals,
    predict_proposals,
    proposal_ground_truth,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"

pytest.importorskip("pycocotools", reason="needs the `eval` extra")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proposals")
    return make_synthetic_dataset(root, num_images=3, image_size=(128, 160), seed=5)


class GroundTruthPredictor:
    """Answers each image (in dataset order) with its ground-truth masks as proposals."""

    def __init__(self, data: Path) -> None:
        self.records = iter(load_dataset(data, split="val").records)

    def __call__(self, image: np.ndarray) -> list:
        record = next(self.records)
        masks = torch.from_numpy(rasterize_instances(record))  # (N, H, W)
        boxes = []
        for m in masks:
            ys, xs = torch.nonzero(m, as_tuple=True)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        scores = torch.linspace(1.0, 0.5, len(masks))
        return [results_from_dense(masks, torch.tensor(boxes).float(), scores, image.shape[:2])]


def test_ground_truth_as_proposals_recalls_everything(dataset):
    metrics = evaluate_proposals(GroundTruthPredictor(dataset), dataset)
    assert metrics["box_AR@10"] == pytest.approx(1.0)
    assert metrics["mask_AR@1000"] == pytest.approx(1.0)
    assert metrics["box_AR_s@1000"] == pytest.approx(1.0)
    assert metrics["box_AR_l@1000"] == -1.0  # no large object in 128 x 160 images (COCO: -1)


def test_model_proposals_are_ranked_coco_results(dataset):
    conf, iou, max_det = TASK_DEFAULTS["proposals"]
    predictor = Predictor(TINY, imgsz=160, device="cpu", conf=conf, iou=iou, max_det=max_det)
    proposals = predict_proposals(predictor, dataset)
    gt = proposal_ground_truth(dataset)
    assert proposals, "the tiny model proposes something at conf 0.001"
    by_image: dict[int, list[float]] = {}
    for p in proposals:
        assert p["category_id"] == 1 and len(p["bbox"]) == 4
        assert decode(p["segmentation"]).shape == (128, 160)
        by_image.setdefault(p["image_id"], []).append(p["score"])
    assert set(by_image) <= {im["id"] for im in gt["images"]}
    for scores in by_image.values():
        assert scores == sorted(scores, reverse=True) and len(scores) <= 1000
    metrics = evaluate_proposals(predictor, dataset)
    assert set(metrics) >= {"box_AR@10", "box_AR@100", "box_AR@1000", "mask_AR@100"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("box_AR@100", "mask_AR@100"))
    assert metrics["box_AR@10"] <= metrics["box_AR@100"] <= metrics["box_AR@1000"]


def test_json_ground_truth_is_read_as_is(dataset):
    assert proposal_ground_truth(dataset) == json.loads(dataset.read_text())


def test_evaluate_task_checks_its_arguments(dataset):
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate_task("segment", TINY, dataset)
    with pytest.raises(ValueError, match="required by"):
        evaluate_task("box-prompted", TINY, dataset)
    with pytest.raises(ValueError, match="required by"):
        evaluate_task("proposals", TINY, dataset, boxes=dataset)
