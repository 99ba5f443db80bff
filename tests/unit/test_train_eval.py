"""COCO evaluation (fastsam_core.eval.coco) against known answers from pycocotools."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastsam_core.eval.coco import evaluate, ground_truth
from fastsam_core.export.rle import encode_dense
from fastsam_core.train.dataset import load_dataset, rasterize_instances
from fastsam_core.train.synthetic import make_synthetic_dataset

pytest.importorskip("pycocotools", reason="needs the `eval` extra")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = make_synthetic_dataset(
        tmp_path_factory.mktemp("eval"), num_images=4, image_size=(64, 64), seed=4
    )
    return load_dataset(path)


def _oracle_predictor(index, drop_every: int = 0, wrong_class: bool = False, shift: int = 0):
    """Returns the ground truth as predictions (optionally dropping some, shifting or relabelling)."""
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
