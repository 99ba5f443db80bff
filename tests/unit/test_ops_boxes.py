"""fastsam_core.ops.boxes: conversions, IoU, clipping, scale rules and the full-image-box steps (spec §3.7-§3.8).

Oracles: ultralytics 8.4.190 (in process) and 8.0.120 (``tests.support.ul120`` subprocess) for scale_boxes.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torchvision

from fastsam_core.ops.boxes import (
    adjust_boxes_to_border,
    box_iou,
    clip_boxes,
    full_box_step_official,
    full_box_step_ultralytics,
    scale_boxes,
    xywh_to_xyxy,
)
from fastsam_core.ops.letterbox import letterbox_geometry

# (orig_hw, imgsz, auto): the photos' sizes, odd sizes, padding on either axis, no-auto squares
GEOMETRY_CASES = [
    ((603, 1072), 1024, True),
    ((1500, 2250), 1024, True),
    ((1920, 1080), 1024, True),
    ((1500, 2000), 1024, True),
    ((517, 333), 1024, True),
    ((333, 517), 640, False),
    ((101, 999), 640, True),
    ((7, 5), 64, False),
]


def _random_boxes(n: int, hw: tuple[int, int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    h, w = hw
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 1.2, h * 1.2]) - torch.tensor(
        [w * 0.1, h * 0.1]
    )
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w / 2, h / 2])
    return torch.cat((xy - wh / 2, xy + wh / 2), dim=1)  # (n, 4) xyxy, some past the edges


def test_xywh_to_xyxy():
    out = xywh_to_xyxy(torch.tensor([[10.0, 20.0, 4.0, 6.0]]))
    assert out.tolist() == [[8.0, 17.0, 12.0, 23.0]]
    assert xywh_to_xyxy(torch.zeros(2, 3, 4)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="dimension of 4"):
        xywh_to_xyxy(torch.zeros(3, 5))


def test_box_iou_matches_torchvision():
    a, b = (
        _random_boxes(7, (100, 120), 0).clamp(min=0),
        _random_boxes(5, (100, 120), 1).clamp(min=0),
    )
    a[:, 2:] = torch.maximum(a[:, 2:], a[:, :2] + 1)
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(N, 4\), got \(3,\)"):
        box_iou(a, torch.zeros(3))


def test_clip_boxes_returns_new_tensor():
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 70.0], [3.0, 4.0, 5.0, 6.0]])
    before = boxes.clone()
    out = clip_boxes(boxes, (60, 40))
    assert out.tolist() == [[0.0, 0.0, 40.0, 60.0], [3.0, 4.0, 5.0, 6.0]]
    assert torch.equal(boxes, before)


def test_adjust_boxes_to_border_thresholds():
    boxes = torch.tensor([[19.9, 20.0, 80.0, 80.1], [25.0, 5.0, 81.0, 79.0]])
    before = boxes.clone()
    out = adjust_boxes_to_border(boxes, (100, 100), threshold=20)
    # strict comparisons: x1 < 20 -> 0, y1 < 20 -> 0, x2 > 80 -> W, y2 > 80 -> H
    assert out.tolist() == [[0.0, 20.0, 80.0, 100.0], [25.0, 0.0, 100.0, 79.0]]
    assert torch.equal(boxes, before), "must not modify its input (upstream works in place)"


@pytest.mark.parametrize("orig_hw,imgsz,auto", GEOMETRY_CASES)
def test_scale_boxes_inverts_letterbox(orig_hw, imgsz, auto):
    g = letterbox_geometry(orig_hw, imgsz, auto=auto)
    h0, w0 = orig_hw
    orig = torch.tensor([[0.0, 0.0, w0, h0], [w0 * 0.25, h0 * 0.5, w0 * 0.75, h0 * 0.9]])
    # forward map with the geometry, then back: both rules land within about one original pixel
    fwd = orig.clone()
    fwd[:, 0::2] = orig[:, 0::2] * g.resized_hw[1] / w0 + g.pad_left
    fwd[:, 1::2] = orig[:, 1::2] * g.resized_hw[0] / h0 + g.pad_top
    for rule in ("official", "ultralytics"):
        back = scale_boxes(fwd, g, rule)
        assert (back - orig).abs().max() <= max(1.0, 1.0 / g.gain), rule


def test_scale_boxes_rules_differ_and_validate():
    g = letterbox_geometry((1500, 2250), 1024)  # content 683 rows: gain_y 683/1500 != 1024/2250
    box = torch.tensor([[100.0, 100.0, 500.0, 500.0]])
    official, current = scale_boxes(box, g, "official"), scale_boxes(box, g, "ultralytics")
    assert official[0, 0] == current[0, 0]  # x: same gain, no padding
    # y: official pad round(10.67 - 0.1) = 11, gain 1024/2250; ultralytics pad round(10.5 - 0.1) = 10, 683/1500
    torch.testing.assert_close(official[0, 1], torch.tensor((100.0 - 11) / (1024 / 2250)))
    torch.testing.assert_close(current[0, 1], torch.tensor((100.0 - 10) / (683 / 1500)))
    with pytest.raises(ValueError, match="rule must be 'official' or 'ultralytics'"):
        scale_boxes(box, g, "v5")  # type: ignore[arg-type]


# ---------------------------------------------------------------- full-image-box steps


def test_full_box_official_single_match_replaced_and_all_snapped():
    input_hw = (704, 1024)
    boxes = torch.tensor(
        [
            [3.0, 12.0, 1020.0, 690.0],  # near-full (content rows 10..693) -> snapped -> full box
            [15.0, 300.0, 400.0, 500.0],  # x1 < 20 -> snapped to 0, not a match
            [100.0, 100.0, 200.0, 200.0],
        ]
    )
    before = boxes.clone()
    step = full_box_step_official(boxes, input_hw)
    assert not step.ambiguous and step.matched.tolist() == [0]
    assert step.boxes[0].tolist() == [0.0, 0.0, 1024.0, 704.0]  # the PADDED input box
    assert step.boxes[1].tolist() == [0.0, 300.0, 400.0, 500.0]
    assert step.boxes[2].tolist() == [100.0, 100.0, 200.0, 200.0]
    assert torch.equal(boxes, before)


def test_full_box_official_uses_padded_input_box():
    # covers the content rows 10..693 of a 704-row input: IoU = 683/704 = 0.970 > 0.9 after snapping x
    step = full_box_step_official(torch.tensor([[0.0, 40.0, 1024.0, 663.0]]), (704, 1024))
    assert step.matched.numel() == 0  # 623/704 = 0.885 <= 0.9: no match
    step = full_box_step_official(torch.tensor([[0.0, 21.0, 1024.0, 683.0]]), (704, 1024))
    assert step.matched.tolist() == [0]  # 662/704 = 0.940


def test_full_box_official_two_matches_is_ambiguous():
    boxes = torch.tensor(
        [[1.0, 1.0, 1000.0, 700.0], [0.0, 25.0, 1024.0, 690.0], [50.0, 50.0, 60.0, 60.0]]
    )
    step = full_box_step_official(boxes, (704, 1024))
    assert step.ambiguous and step.matched.tolist() == [0, 1]
    # snapped, but not replaced (upstream raises inside the replacement and returns None)
    assert step.boxes[0].tolist() == [0.0, 0.0, 1000.0, 704.0]
    assert step.boxes[1].tolist() == [0.0, 25.0, 1024.0, 704.0]


def test_full_box_official_empty():
    step = full_box_step_official(torch.zeros(0, 4), (64, 64))
    assert step.boxes.shape == (0, 4) and step.matched.numel() == 0 and not step.ambiguous


def test_full_box_ultralytics_replaces_every_match():
    boxes = torch.tensor(
        [[1.0, 1.0, 1000.0, 700.0], [0.0, 25.0, 1072.0, 590.0], [50.0, 50.0, 60.0, 60.0]]
    )
    step = full_box_step_ultralytics(boxes, (603, 1072))
    assert step.matched.tolist() == [0, 1] and not step.ambiguous
    assert step.boxes[:2].tolist() == [[0.0, 0.0, 1072.0, 603.0]] * 2
    assert step.boxes[2].tolist() == [50.0, 50.0, 60.0, 60.0]


# ---------------------------------------------------------------- oracles


@pytest.fixture(scope="module")
def ul():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))
    pytest.importorskip("ultralytics", reason="oracle extra (ultralytics==8.4.190) not installed")
    from ultralytics.models.fastsam.utils import adjust_bboxes_to_image_border
    from ultralytics.utils import metrics, ops

    return ops, metrics, adjust_bboxes_to_image_border


@pytest.mark.oracle
@pytest.mark.parametrize("orig_hw,imgsz,auto", GEOMETRY_CASES)
def test_scale_boxes_ultralytics_equals_oracle(ul, orig_hw, imgsz, auto):
    ops, _, _ = ul
    g = letterbox_geometry(orig_hw, imgsz, auto=auto)
    boxes = _random_boxes(50, g.input_hw, seed=sum(orig_hw))
    expected = ops.scale_boxes(g.input_hw, boxes.clone(), orig_hw)
    assert torch.equal(scale_boxes(boxes, g, "ultralytics"), expected)


@pytest.mark.oracle
def test_iou_clip_xyxy_adjust_equal_oracle(ul):
    ops, metrics, adjust = ul
    boxes = _random_boxes(40, (576, 1024), 3)
    xywh = torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), 1)
    assert torch.equal(xywh_to_xyxy(xywh), ops.xywh2xyxy(xywh))
    assert torch.equal(clip_boxes(boxes, (576, 1024)), ops.clip_boxes(boxes.clone(), (576, 1024)))
    assert torch.equal(
        adjust_boxes_to_border(boxes, (576, 1024)), adjust(boxes.clone(), (576, 1024))
    )
    a = clip_boxes(boxes, (576, 1024))
    assert torch.equal(box_iou(a[:5], a, eps=1e-7), metrics.box_iou(a[:5], a))


@pytest.mark.oracle
def test_full_box_ultralytics_equals_oracle_postprocess(ul):
    _, metrics, adjust = ul
    orig_hw = (603, 1072)
    boxes = _random_boxes(30, orig_hw, 4)
    boxes[:3] = torch.tensor(
        [[2.0, 5.0, 1060.0, 600.0], [0.0, 30.0, 1072.0, 580.0], [5.0, 5.0, 990.0, 560.0]]
    )
    # 8.4.190 FastSAMPredictor.postprocess, applied to a copy: snap in place, then replace matches
    expected = boxes.clone()
    full = torch.tensor([0, 0, orig_hw[1], orig_hw[0]], dtype=torch.float32)
    snapped = adjust(expected, orig_hw)
    idx = torch.nonzero(metrics.box_iou(full[None], snapped)[0] > 0.9).flatten()
    expected[idx] = full
    step = full_box_step_ultralytics(boxes, orig_hw)
    assert idx.numel() >= 2 and torch.equal(step.matched, idx)
    assert torch.equal(step.boxes, expected)


_UL120_SCALE_BOXES = """
result = {key: ops.scale_boxes(input_hw, boxes.clone(), orig_hw)
          for key, (boxes, input_hw, orig_hw) in inputs.items()}
"""


@pytest.mark.oracle
def test_scale_boxes_official_equals_ultralytics_8_0_120():
    from tests.support.ul120 import run_ul120

    inputs, geoms = {}, {}
    for i, (orig_hw, imgsz, auto) in enumerate(GEOMETRY_CASES):
        g = letterbox_geometry(orig_hw, imgsz, auto=auto)
        geoms[str(i)] = g
        inputs[str(i)] = (_random_boxes(50, g.input_hw, seed=i), g.input_hw, orig_hw)
    expected = run_ul120(_UL120_SCALE_BOXES, inputs)
    for key, (boxes, _, _) in inputs.items():
        assert torch.equal(scale_boxes(boxes, geoms[key], "official"), expected[key]), geoms[key]
