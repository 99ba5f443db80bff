"""fastsam_core.ops.anchors: anchor grid order/values and dist2bbox (spec §1.5), vs the 8.4.190 oracle."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from fastsam_core.ops.anchors import decode_boxes, dist2bbox, make_anchors


def test_make_anchors_order_and_values():
    points, strides = make_anchors([(2, 3), (1, 2)], strides=(8, 16))
    assert points.shape == (8, 2) and strides.shape == (8, 1)
    # level P3 row-major: y outer, x inner, at cell centres
    expected_p3 = [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5]]
    assert points[:6].tolist() == expected_p3
    assert points[6:].tolist() == [[0.5, 0.5], [1.5, 0.5]]
    assert strides.flatten().tolist() == [8.0] * 6 + [16.0] * 2


def test_make_anchors_count_at_1024():
    points, _ = make_anchors([(128, 128), (64, 64), (32, 32)])
    assert points.shape == (21504, 2)  # spec §1.5


def test_make_anchors_dtype_and_errors():
    points, strides = make_anchors([(2, 2)], strides=(8,), dtype=torch.float16)
    assert points.dtype == strides.dtype == torch.float16
    with pytest.raises(ValueError, match="2 feature sizes but 3 strides"):
        make_anchors([(2, 2), (1, 1)], strides=(8, 16, 32))


def test_dist2bbox_both_formats():
    points = torch.tensor([[2.5, 3.5]])  # (A=1, 2)
    dist = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])  # (1, 4, 1) l, t, r, b
    xyxy = dist2bbox(dist, points, xywh=False)[0, :, 0].tolist()
    assert xyxy == [1.5, 1.5, 5.5, 7.5]
    xywh = dist2bbox(dist, points, xywh=True)[0, :, 0].tolist()
    assert xywh == [3.5, 4.5, 4.0, 6.0]
    with pytest.raises(ValueError, match=r"distance \(B, 4, A\) and points \(A, 2\)"):
        dist2bbox(dist, torch.zeros(2, 2))


def test_decode_boxes_scales_by_stride():
    points, strides = make_anchors([(2, 2), (1, 1)], strides=(8, 16))
    dist = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(0)) * 3
    boxes = decode_boxes(dist, points, strides)
    assert torch.equal(boxes, dist2bbox(dist, points) * strides.T)
    assert torch.equal(boxes[:, :, 4], dist2bbox(dist, points)[:, :, 4] * 16)


@pytest.fixture(scope="module")
def ul_ops():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))
    pytest.importorskip("ultralytics", reason="oracle extra (ultralytics==8.4.190) not installed")
    from ultralytics.utils import tal

    return tal


@pytest.mark.oracle
def test_anchors_and_decode_equal_ultralytics(ul_ops):
    sizes = [(18, 32), (9, 16), (5, 8)]  # non-square, odd
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    ref_points, ref_strides = ul_ops.make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    points, strides = make_anchors(sizes)
    assert torch.equal(points, ref_points) and torch.equal(strides, ref_strides)

    gen = torch.Generator().manual_seed(0)
    dist = torch.rand(2, 4, points.shape[0], generator=gen) * 15
    # upstream head: dist2bbox(dfl(box), anchors.unsqueeze(0), xywh=True, dim=1) * strides
    expected = ul_ops.dist2bbox(dist, ref_points.T.unsqueeze(0), xywh=True, dim=1) * ref_strides.T
    assert torch.equal(decode_boxes(dist, points, strides), expected)
    expected_xyxy = ul_ops.dist2bbox(dist, ref_points.T.unsqueeze(0), xywh=False, dim=1)
    assert torch.equal(dist2bbox(dist, points, xywh=False), expected_xyxy)


@pytest.mark.parametrize("reg_max", [16, 26])
def test_dfl_decode_equals_the_heads_dfl_bit_for_bit(reg_max: int) -> None:
    """The public decode the predictor calls (instead of reaching into model.head.dfl)."""
    from fastsam_core.model.head import DFL
    from fastsam_core.ops.anchors import dfl_decode

    box_dist = torch.randn(2, 4 * reg_max, 700, generator=torch.Generator().manual_seed(reg_max))
    out = dfl_decode(box_dist * 4, reg_max)
    assert out.shape == (2, 4, 700) and bool((out >= 0).all() and (out <= reg_max - 1).all())
    assert torch.equal(out, DFL(reg_max)(box_dist * 4))
    with pytest.raises(ValueError, match=r"box_dist must be \(B, 4 \* 16, A\), got \(2, 60, 700\)"):
        dfl_decode(box_dist[:, :60], 16)
