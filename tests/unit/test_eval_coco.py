"""COCO evaluation (fastsam_core.eval.coco) against known answers from pycocotools."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.data.datasets import load_dataset, rasterize_instances
from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.eval.coco import evaluate, ground_truth
from fastsam_core.export.rle import encode_dense
from fastsam_core.io.images import load_image
from fastsam_core.results import results_from_dense

pytest.importorskip("pycocotools", reason="needs the `eval` extra")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = make_synthetic_dataset(
        tmp_path_factory.mktemp("eval"), num_images=4, image_size=(64, 64), seed=4
    )
    return load_dataset(path)


def _oracle_predictor(index, drop_every: int = 0, wrong_class: bool = False, shift: int = 0):
    """The ground truth as predictions (optionally dropping some, shifting or relabelling)."""
    order = iter(index.records)

    def predict(image: np.ndarray):
        record = next(order)
        assert image.shape == (record.height, record.width, 3) and image.dtype == np.uint8
        masks = rasterize_instances(record)
        keep = [i for i in range(len(masks)) if not (drop_every and i % drop_every == 0)]
        boxes, rles = [], []
        for i in keep:
            mask = np.roll(masks[i], shift, axis=1)
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            rles.append(encode_dense(mask))
        classes = [(record.instances[i].class_id + (1 if wrong_class else 0)) % 3 for i in keep]
        return (
            np.array(boxes, dtype=float).reshape(-1, 4),
            np.linspace(1, 0.5, len(keep)),
            classes,
            rles,
        )

    return predict


def test_perfect_predictions_score_one(index):
    metrics = evaluate(index, _oracle_predictor(index))
    assert metrics["mask_map"] == pytest.approx(1.0) and metrics["box_map50"] == pytest.approx(1.0)
    assert metrics["mask_ar100"] == pytest.approx(1.0)


def test_wrong_classes_score_zero_unless_class_agnostic(index):
    assert evaluate(index, _oracle_predictor(index, wrong_class=True))[
        "mask_map50"
    ] == pytest.approx(0.0)
    agnostic = evaluate(index, _oracle_predictor(index, wrong_class=True), class_agnostic=True)
    assert agnostic["mask_map50"] == pytest.approx(1.0)
    assert [c["name"] for c in ground_truth(index, True)["categories"]] == ["object"]


def test_missing_and_shifted_predictions_lower_the_scores(index):
    partial = evaluate(index, _oracle_predictor(index, drop_every=2), class_agnostic=True)
    assert 0.0 < partial["mask_ar100"] < 1.0 and partial["mask_map"] < 1.0
    shifted = evaluate(index, _oracle_predictor(index, shift=3), class_agnostic=True)
    assert shifted["mask_map50"] > shifted["mask_map"] and shifted["mask_map"] < 1.0


def test_empty_predictions_score_zero(index):
    empty = evaluate(index, lambda image: (np.zeros((0, 4)), np.zeros(0), np.zeros(0), []))
    assert empty["mask_map"] == 0.0 and empty["box_map"] == 0.0


def test_inconsistent_predictions_are_an_error(index):
    with pytest.raises(ValueError, match="returned 1 boxes, 1 scores, 1 class ids and 0 masks"):
        evaluate(index, lambda image: (np.zeros((1, 4)), np.ones(1), np.zeros(1), []))


def test_missing_pycocotools_names_the_extra(index, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match=r"pip install fastsam-core\[eval\]"):
        evaluate(index, lambda image: None)


def test_coco_file_from_segment_output_on_an_exif_rotated_photo(tmp_path):
    """Issue 12 item 6: eval decodes like inference, so `segment`'s own sizes and masks agree.

    The photo is stored 48 wide and 32 high with EXIF orientation 6 (a phone's portrait shot):
    upright it is 32 wide and 48 high, the frame `fastsam segment` reports and writes RLEs in.
    """
    stored = np.zeros((32, 48, 3), dtype=np.uint8)
    stored[4:20, 6:40] = (200, 120, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "portrait.jpg")
    assert upright.hw == (48, 32)

    masks = torch.zeros((2, 48, 32), dtype=torch.bool)  # a segment result in the upright frame
    masks[0, 6:40, 12:28] = True
    masks[1, 2:10, 3:9] = True
    boxes = torch.tensor([[12.0, 6.0, 28.0, 40.0], [3.0, 2.0, 9.0, 10.0]])
    result = results_from_dense(masks, boxes, torch.tensor([0.9, 0.8]), upright.hw)
    doc = result.to_json()  # what `fastsam segment --save-json` writes
    coco = {
        "images": [
            {
                "id": 1,
                "file_name": "portrait.jpg",
                "height": doc["image"]["height"],
                "width": doc["image"]["width"],
            }
        ],
        "annotations": [
            {**a, "id": a["id"] + 1, "image_id": 1, "category_id": 1, "iscrowd": 0}
            for a in doc["annotations"]
        ],
        "categories": [{"id": 1, "name": "object"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))

    seen = []

    def predict(image: np.ndarray):
        seen.append(image)
        return result.boxes, result.scores, result.class_ids, result.to_rle()

    metrics = evaluate(tmp_path / "ann.json", predict, class_agnostic=True)
    assert np.array_equal(seen[0], upright.image.numpy())  # the decoder inference uses
    assert metrics["mask_map"] == pytest.approx(1.0) and metrics["box_map"] == pytest.approx(1.0)
