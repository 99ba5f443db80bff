"""Zero-shot edges (fastsam_core.tasks.edges): Sobel, edge NMS, soft masks from the predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam_core import Predictor
from fastsam_core.compact_masks import CompactMasks
from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.ops.masks import crop_masks
from fastsam_core.tasks.edges import (
    SoftMaskPredictor,
    SoftMaskResults,
    detect_edges,
    edge_map,
    edge_nms,
    sobel,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _square_results(box: list[float]) -> SoftMaskResults:
    """One soft mask: logit +8 inside proto cells [4, 12) x [4, 12) of 16 x 16, -8 outside;
    the image is 64 x 64 (proto stride 4, no letterbox padding): the square spans [16, 48)."""
    protos = torch.full((1, 16, 16), -8.0)
    protos[0, 4:12, 4:12] = 8.0
    return SoftMaskResults(
        masks=CompactMasks.from_dense(torch.zeros((1, 64, 64), dtype=torch.bool)),
        boxes=torch.tensor([box]),
        scores=torch.tensor([0.9]),
        class_ids=torch.tensor([0]),
        orig_hw=(64, 64),
        coeffs=torch.ones((1, 1)),
        protos=protos,
    )


def test_sobel_unit_step():
    step = torch.zeros((1, 5, 6))
    step[:, :, 3:] = 1.0
    gx, gy = sobel(step)
    assert torch.equal(gx[0, :, 2], torch.full((5,), 4.0))  # [1 2 1] x [-1 0 1] on a unit step
    assert torch.equal(gx[0, :, 3], torch.full((5,), 4.0))
    assert gx[0, :, [0, 1, 4, 5]].abs().max() == 0 and gy.abs().max() == 0


def test_edge_nms_thins_a_ridge():
    x = torch.arange(20, dtype=torch.float32)
    ridge = torch.exp(-((x - 9.3) ** 2) / 8).expand(10, 20).clone()  # (10, 20) blurred line
    gx, gy = sobel(-((x - 9.3) ** 2).expand(1, 10, 20).clone())  # normal along x
    thin = edge_nms(ridge, gx[0], gy[0])
    assert torch.equal((thin > 0).sum(1), torch.ones(10, dtype=torch.long))  # one pixel per row
    assert bool((thin[:, 9] > 0).all())  # at the ridge's peak


def test_edge_map_of_a_square():
    edges = edge_map(_square_results([0.0, 0.0, 64.0, 64.0]))
    assert edges.shape == (64, 64) and edges.dtype == np.uint8 and edges.max() == 255
    rows = edges[24:40]  # rows crossing the two vertical sides of the square
    assert ((rows[:, 10:22] > 0).sum(1) <= 2).all()  # thin: at most 2 px (bilinear plateau)
    left = np.argmax(rows[:, :32], axis=1)
    right = 32 + np.argmax(rows[:, 32:], axis=1)
    assert (np.abs(left - 15.5) <= 1.5).all() and (np.abs(right - 47.5) <= 1.5).all()
    assert edges[24:40, 22:42].max() == 0 and edges[:8].max() == 0  # flat regions


def test_edges_stay_inside_the_box_and_box_sides_make_none():
    edges = edge_map(_square_results([0.0, 0.0, 32.0, 64.0]))  # box keeps the left half
    assert edges[:, 32:].max() == 0  # the right side of the square is outside the box
    assert edges[24:40, 10:22].max() > 0  # the left side stays
    assert edges[24:40, 26:32].max() == 0  # no edge along the box side x = 32


def test_no_masks_no_edges():
    results = SoftMaskResults(
        masks=CompactMasks.empty((8, 12), torch.device("cpu")),
        boxes=torch.zeros((0, 4)),
        scores=torch.zeros(0),
        class_ids=torch.zeros(0, dtype=torch.long),
        orig_hw=(8, 12),
        coeffs=torch.zeros((0, 1)),
        protos=torch.zeros((1, 2, 3)),
    )
    assert np.array_equal(edge_map(results), np.zeros((8, 12), np.uint8))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("edges")
    make_synthetic_dataset(root, num_images=1, image_size=(160, 192), seed=3)
    return root / "images" / "00001.png"


@pytest.fixture(scope="module")
def soft_predictor() -> SoftMaskPredictor:
    return SoftMaskPredictor(TINY, imgsz=192, conf=0.01, device="cpu")


def test_soft_predictor_keeps_the_rows_of_everything_mode(image, soft_predictor):
    # mask_rule="sigmoid" thresholds the resized probabilities at 0.5 (official retina path)
    plain = Predictor(TINY, imgsz=192, conf=0.01, device="cpu", mask_rule="sigmoid")(image)[0]
    soft = soft_predictor(image)[0]
    assert isinstance(soft, SoftMaskResults) and len(soft) == len(plain) > 0
    assert torch.equal(soft.boxes, plain.boxes) and torch.equal(soft.scores, plain.scores)
    assert soft.coeffs is not None and soft.coeffs.shape == (len(plain), 32)
    # no letterbox padding at this size, so probabilities > 0.5 in the box ARE the masks
    probs = soft.probabilities()  # (N, 160, 192)
    expected = plain.masks.to_dense()  # (N, 160, 192)
    assert torch.equal(crop_masks(probs > 0.5, soft.boxes), expected)


def test_subsets_keep_their_coefficients(image, soft_predictor):
    soft = soft_predictor(image)[0]
    part = soft.sort("area")[[2, 0]]
    assert isinstance(part, SoftMaskResults) and part.protos is soft.protos
    order = torch.sort(soft.areas, descending=True, stable=True).indices[[2, 0]]
    assert torch.equal(part.coeffs, soft.coeffs[order])
    assert torch.equal(part.probabilities(), soft.probabilities()[order])


def test_detect_edges(image, soft_predictor):
    maps = detect_edges(soft_predictor, [image, image], iou=0.95)
    assert len(maps) == 2 and np.array_equal(maps[0], maps[1])
    assert maps[0].shape == (160, 192) and maps[0].dtype == np.uint8 and maps[0].max() == 255


def test_detect_edges_needs_a_soft_predictor(image):
    with pytest.raises(TypeError, match="needs a SoftMaskPredictor"):
        detect_edges(Predictor(TINY, imgsz=64, device="cpu"), image)
