"""Box-prompted instance segmentation (fastsam_core.tasks.box_prompted), end to end."""

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
from fastsam_core.tasks.box_prompted import (
    evaluate_box_prompted,
    read_detections,
    segment_detections,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"

pytest.importorskip("pycocotools", reason="needs the `eval` extra")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    """Synthetic shapes plus a perfect detector's results (ground-truth boxes and categories)."""
    root = tmp_path_factory.mktemp("boxprompt")
    # all-RLE ground truth: pycocotools rasterises polygons differently from PIL
    data = make_synthetic_dataset(
        root, num_images=3, image_size=(128, 160), seed=7, rle_fraction=1.0
    )
    gt = json.loads(data.read_text())
    detections = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": round(0.9 - 0.01 * i, 3),
        }
        for i, a in enumerate(gt["annotations"])
    ]
    path = root / "detections.json"
    path.write_text(json.dumps(detections))
    return data, path


class GroundTruthBoxPredictor:
    """Answers each box prompt with the ground-truth mask whose box it is (dataset order)."""

    def __init__(self, data: Path) -> None:
        self.records = iter(load_dataset(data, split="val").records)

    def __call__(self, image: np.ndarray, boxes: list, box_no_match: str) -> list:
        record = next(self.records)
        masks = torch.from_numpy(rasterize_instances(record))  # (N, H, W), boxes in this order
        return [
            results_from_dense(masks, torch.tensor(boxes), torch.ones(len(boxes)), image.shape[:2])
        ]


def test_exact_masks_score_ap_one(dataset):
    data, detections = dataset
    metrics = evaluate_box_prompted(GroundTruthBoxPredictor(data), data, detections)
    assert metrics["mask_map"] == pytest.approx(1.0)
    assert metrics["box_map"] == pytest.approx(1.0)


def test_tiny_model_keeps_category_score_and_box(dataset):
    data, detections_path = dataset
    detections = json.loads(detections_path.read_text())
    predictor = Predictor(TINY, imgsz=160, conf=0.001, device="cpu")
    results = segment_detections(predictor, data, detections_path, no_match="box")
    assert len(results) == len(detections)  # one mask per detection, detector order
    for det, res in zip(detections, results):
        for key in ("image_id", "category_id", "bbox", "score"):
            assert res[key] == det[key]
        mask = decode(res["segmentation"])
        assert mask.shape == (128, 160) and mask.any()  # no_match="box" never leaves it empty
    metrics = evaluate_box_prompted(predictor, data, detections_path, no_match="box")
    assert metrics["box_map"] == pytest.approx(1.0)  # the detector's boxes are kept
    assert 0.0 <= metrics["mask_map"] <= 1.0


def test_empty_rows_when_no_mask_matches(dataset):
    data, detections_path = dataset
    predictor = Predictor(TINY, imgsz=160, conf=1.0, device="cpu")  # no everything-mode mask
    results = segment_detections(predictor, data, detections_path)
    assert results and all(not decode(r["segmentation"]).any() for r in results)


def test_detection_file_errors(tmp_path, dataset):
    data, _ = dataset
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_detections(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(ValueError, match="result 0 needs image_id, category_id"):
        read_detections(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        json.dumps([{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])
    )
    with pytest.raises(ValueError, match=r"image ids \[99\]"):
        segment_detections(object(), data, unknown)
