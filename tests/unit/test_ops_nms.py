"""fastsam_core.ops.nms: spec §3.6 semantics, and equality with the 8.4.190 and 8.0.120 NMS."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from fastsam_core.ops import nms as nms_module
from fastsam_core.ops.nms import Detections, greedy_nms, non_max_suppression


def _head_outputs(
    batch: int, num_anchors: int, num_classes: int, seed: int, num_objects: int = 40, k: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head-like outputs: anchors clustered around objects (so NMS suppresses), sigmoid scores."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, 2, num_objects, generator=gen) * 900 + 60
    sizes = torch.rand(batch, 2, num_objects, generator=gen) * 300 + 10
    owner = torch.randint(0, num_objects, (batch, 1, num_anchors), generator=gen)
    jitter = torch.randn(batch, 4, num_anchors, generator=gen)
    xy = centres.gather(2, owner.expand(-1, 2, -1)) + jitter[:, :2] * 8
    wh = sizes.gather(2, owner.expand(-1, 2, -1)) * (1 + jitter[:, 2:] * 0.1)
    boxes = torch.cat((xy, wh), dim=1)  # (B, 4, A) xywh
    scores = torch.sigmoid(torch.randn(batch, num_classes, num_anchors, generator=gen) * 2 - 2)
    coeffs = torch.randn(batch, k, num_anchors, generator=gen)
    return boxes, scores, coeffs


def test_strict_conf_threshold_and_order():
    boxes = torch.tensor(
        [[[10.0, 100.0, 200.0], [10.0, 100.0, 200.0], [4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]]
    )
    scores = torch.tensor([[[0.5, 0.7, 0.50001]]])
    coeffs = torch.arange(6.0).reshape(1, 2, 3)
    (det,) = non_max_suppression(boxes, scores, coeffs, conf_threshold=0.5, iou_threshold=0.5)
    assert det.anchor_indices.tolist() == [1, 2]  # 0.5 is not > 0.5; descending score
    assert det.scores.tolist() == pytest.approx([0.7, 0.50001])
    assert det.boxes.tolist() == [[98.0, 98.0, 102.0, 102.0], [198.0, 198.0, 202.0, 202.0]]
    assert det.coeffs.tolist() == [[1.0, 4.0], [2.0, 5.0]]
    assert det.class_ids.dtype == torch.int64 and det.class_ids.tolist() == [0, 0]
    assert len(det) == 2 and len(det.select(torch.tensor([1]))) == 1


def test_iou_threshold_is_strict():
    # two 10x10 boxes shifted by 6 px in x: IoU = 40 / 160 = 0.25 exactly (in binary too)
    boxes = torch.tensor([[[5.0, 11.0], [5.0, 5.0], [10.0, 10.0], [10.0, 10.0]]])
    scores = torch.tensor([[[0.9, 0.8]]])
    coeffs = torch.zeros(1, 0, 2)
    keep_both = non_max_suppression(boxes, scores, coeffs, 0.1, iou_threshold=0.25)[0]
    assert len(keep_both) == 2  # IoU == threshold is kept
    assert len(non_max_suppression(boxes, scores, coeffs, 0.1, iou_threshold=0.24)[0]) == 1


def test_max_det_classes_and_agnostic():
    # three identical boxes of classes 0, 1, 1
    boxes = torch.tensor([[[50.0] * 3, [50.0] * 3, [20.0] * 3, [20.0] * 3]])
    scores = torch.tensor([[[0.9, 0.1, 0.1], [0.1, 0.8, 0.7]]])  # (1, nc=2, 3)
    coeffs = torch.zeros(1, 1, 3)
    det = non_max_suppression(boxes, scores, coeffs, 0.5, 0.5)[0]
    assert det.class_ids.tolist() == [0, 1]  # class offset keeps one box per class
    assert det.boxes[1].tolist() == [40.0, 40.0, 60.0, 60.0]  # returned without the offset
    assert len(non_max_suppression(boxes, scores, coeffs, 0.5, 0.5, agnostic=True)[0]) == 1
    only_1 = non_max_suppression(boxes, scores, coeffs, 0.5, 0.5, classes=[1])[0]
    assert only_1.anchor_indices.tolist() == [1]
    assert len(non_max_suppression(boxes, scores, coeffs, 0.5, 0.5, max_det=1)[0]) == 1


def test_empty_and_batch():
    boxes, scores, coeffs = _head_outputs(2, 500, 1, seed=0)
    scores[1] = 0.0
    dets = non_max_suppression(boxes, scores, coeffs, 0.25, 0.7)
    assert len(dets) == 2 and len(dets[0]) > 0 and len(dets[1]) == 0
    assert isinstance(dets[1], Detections)
    assert dets[1].boxes.shape == (0, 4) and dets[1].coeffs.shape == (0, 32)


def test_shape_errors():
    boxes, scores, coeffs = _head_outputs(1, 10, 1, seed=0)
    with pytest.raises(ValueError, match=r"boxes_xywh must be \(B, 4, A\)"):
        non_max_suppression(boxes[:, :3], scores, coeffs)
    with pytest.raises(ValueError, match=r"class_scores must be \(B, nc, A\) = \(1, nc, 10\)"):
        non_max_suppression(boxes, scores[..., :5], coeffs)
    with pytest.raises(ValueError, match=r"coeffs must be \(B, K, A\)"):
        non_max_suppression(boxes, scores, coeffs[0])
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        non_max_suppression(boxes, scores, coeffs, iou_threshold=1.5)


# ---------------------------------------------------------------- early-exit greedy NMS


def _clustered_boxes(n: int, seed: int) -> torch.Tensor:
    """(n, 4) xyxy boxes around a few objects, with exact duplicates and zero-area boxes."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(1, n // 20), 2, generator=gen) * 600
    owner = torch.randint(0, len(centres), (n,), generator=gen)
    xy = centres[owner] + torch.randn(n, 2, generator=gen) * 3
    wh = (torch.rand(n, 2, generator=gen) * 80 + 1) * (torch.rand(n, 1, generator=gen) > 0.02)
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
    if n > 4:
        boxes[n // 2] = boxes[n // 4]  # a duplicate: IoU exactly 1
    return boxes


@pytest.mark.parametrize("n", [0, 1, 2, 255, 256, 257, 1000, 3000])
@pytest.mark.parametrize("iou", [0.0, 0.1, 0.5, 0.7, 0.9, 1.0])
@pytest.mark.parametrize("max_keep", [1, 7, 300, 100000])
def test_greedy_nms_equals_torchvision(n, iou, max_keep):
    boxes = _clustered_boxes(n, seed=n + int(iou * 10))
    expected = greedy_nms_reference(boxes, iou, max_keep)
    got = greedy_nms(boxes, iou, max_keep)
    assert got.dtype == torch.int64
    assert torch.equal(got, expected), (n, iou, max_keep)


def test_greedy_nms_threshold_ties_follow_torchvision(monkeypatch):
    """IoUs exactly at a float32 threshold and at thresholds whose float32 rounding lies above
    (0.1) or below (0.7) the double: the comparison must be torchvision's (float64)."""
    monkeypatch.setattr(nms_module, "_CHUNK", 3)  # several chunks in a short list
    # IoU of [0, 0, 10, 10] with [0, 0, 10, w] is w / 10 for w <= 10
    widths = torch.arange(0, 10.5, 0.5)
    boxes = torch.stack([torch.tensor([0.0, 0.0, 10.0, 10.0])] * 2)
    others = torch.stack(
        [torch.zeros_like(widths), torch.zeros_like(widths), torch.full_like(widths, 10), widths], 1
    )
    for t in [0.1, 0.5, 0.7, 0.3, float(torch.tensor(0.1).item())]:
        for prefix in (boxes[:1], boxes):
            candidates = torch.cat((prefix, others))
            assert torch.equal(
                greedy_nms(candidates, t, 1000), greedy_nms_reference(candidates, t, 1000)
            ), t


def test_non_max_suppression_dense_candidates_equal_full_torchvision():
    """14 k candidates (a 1024 input at conf ~0): the early exit keeps torchvision's first 300."""
    boxes, scores, coeffs = _head_outputs(1, 14784, 1, seed=3, num_objects=400)
    (det,) = non_max_suppression(boxes, scores, coeffs, 0.001, 0.9, max_det=300)
    keep = scores[0, 0] > 0.001
    index = torch.nonzero(keep).flatten()
    index = index[torch.sort(scores[0, 0, index], descending=True, stable=True).indices]
    xyxy = torch.cat((boxes[0, :2] - boxes[0, 2:] / 2, boxes[0, :2] + boxes[0, 2:] / 2)).T[index]
    full = torchvision_nms(xyxy, scores[0, 0, index], 0.9)[:300]
    assert len(det) == 300
    assert torch.equal(det.anchor_indices, index[full])


def torchvision_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    import torchvision  # type: ignore[import-untyped]  # test-only: the product never imports it

    return torchvision.ops.nms(boxes, scores, iou)


def greedy_nms_reference(boxes: torch.Tensor, iou_threshold: float, max_keep: int) -> torch.Tensor:
    """``torchvision.ops.nms`` over boxes already sorted by score, first ``max_keep`` kept rows."""
    order = torch.arange(len(boxes), dtype=torch.float32, device=boxes.device)
    return torchvision_nms(boxes, -order, iou_threshold)[:max_keep]  # scores = rank


# ---------------------------------------------------------------- oracles

# (num_classes, conf, iou, agnostic, classes, max_det, max_nms)
ORACLE_CASES = [
    (1, 0.4, 0.9, False, None, 300, 30000),  # FastSAM README settings
    (1, 0.25, 0.7, False, None, 300, 30000),  # library defaults
    (1, 0.1, 0.5, False, None, 50, 30000),  # max_det binds
    (1, 0.05, 0.6, False, None, 300, 200),  # max_nms binds
    (3, 0.3, 0.6, False, None, 300, 30000),
    (3, 0.3, 0.6, True, None, 300, 30000),
    (3, 0.3, 0.6, False, [0, 2], 300, 30000),
]


def _as_rows(det: Detections) -> torch.Tensor:
    """Our Detections in upstream's (N, 6 + K) row layout."""
    return torch.cat(
        (det.boxes, det.scores[:, None], det.class_ids[:, None].float(), det.coeffs), dim=1
    )


@pytest.fixture(scope="module")
def ul_nms():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))
    pytest.importorskip("ultralytics", reason="oracle extra (ultralytics==8.4.190) not installed")
    from ultralytics.utils import nms

    return nms.non_max_suppression


@pytest.mark.oracle
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_nms_equals_ultralytics(ul_nms, case):
    nc, conf, iou, agnostic, classes, max_det, max_nms = ORACLE_CASES[case]
    boxes, scores, coeffs = _head_outputs(2, 4000, nc, seed=case)
    prediction = torch.cat((boxes, scores, coeffs), dim=1)  # (B, 4 + nc + K, A)
    expected = ul_nms(
        prediction.clone(),
        conf,
        iou,
        classes=classes,
        agnostic=agnostic,
        max_det=max_det,
        nc=nc,
        max_nms=max_nms,
    )
    ours = non_max_suppression(
        boxes, scores, coeffs, conf, iou, max_det, max_nms, agnostic, classes
    )
    for exp, det in zip(expected, ours):
        assert len(det) > 0
        assert torch.equal(_as_rows(det), exp)


_UL120_NMS = """
result = {}
for key, (prediction, nc, conf, iou, agnostic, classes, max_det, max_nms) in inputs.items():
    result[key] = ops.non_max_suppression(prediction, conf, iou, classes=classes, agnostic=agnostic,
                                          max_det=max_det, nc=nc, max_nms=max_nms, max_time_img=10.0)
"""


@pytest.mark.oracle
def test_nms_equals_ultralytics_8_0_120():
    from tests.support.ul120 import run_ul120

    inputs, parts = {}, {}
    for case, (nc, conf, iou, agnostic, classes, max_det, max_nms) in enumerate(ORACLE_CASES):
        boxes, scores, coeffs = _head_outputs(2, 4000, nc, seed=case)
        parts[str(case)] = (boxes, scores, coeffs)
        prediction = torch.cat((boxes, scores, coeffs), dim=1)
        inputs[str(case)] = (prediction, nc, conf, iou, agnostic, classes, max_det, max_nms)
    expected = run_ul120(_UL120_NMS, inputs)
    for key, (_, nc, conf, iou, agnostic, classes, max_det, max_nms) in inputs.items():
        ours = non_max_suppression(*parts[key], conf, iou, max_det, max_nms, agnostic, classes)
        for exp, det in zip(expected[key], ours):
            assert len(det) > 0
            assert torch.equal(_as_rows(det), exp), key
