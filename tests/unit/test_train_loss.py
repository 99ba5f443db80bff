"""Loss pieces: CIoU, DFL, bbox2dist, mask cropping, the assigner, and YoloSegLoss contracts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fastsam_core.config import yolov8_seg_config
from fastsam_core.model.yolov8_seg import build_model
from fastsam_core.train.assigner import TaskAlignedAssigner
from fastsam_core.train.ciou import complete_iou
from fastsam_core.train.loss import (
    SegTargets,
    YoloSegLoss,
    bbox2dist,
    crop_to_boxes,
    distribution_focal_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    return torch.cat((xy, xy + wh), 1)


def test_ciou_matches_torchvision():
    a, b = _random_boxes(200, 0), _random_boxes(200, 1)
    ours = complete_iou(a, b).squeeze(-1)
    ref = torchvision.ops.complete_box_iou(a, b).diagonal()
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(complete_iou(a, a).squeeze(-1), torch.ones(200), atol=1e-5)


def test_ciou_alpha_has_no_gradient():
    a = _random_boxes(5, 2).requires_grad_(True)
    b = _random_boxes(5, 3)
    complete_iou(a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_dfl_is_cross_entropy_at_integer_targets():
    logits = torch.randn(6, 4, 16)
    target = torch.randint(0, 15, (6, 4)).float()
    ce = F.cross_entropy(logits.reshape(-1, 16), target.long().flatten(), reduction="none").view(
        6, 4
    )
    assert torch.allclose(
        distribution_focal_loss(logits, target).squeeze(-1), ce.mean(-1), atol=1e-6
    )
    # Halfway between bins: the mean of both cross-entropies.
    half = distribution_focal_loss(logits, target + 0.5).squeeze(-1)
    ce_right = F.cross_entropy(
        logits.reshape(-1, 16), target.long().flatten() + 1, reduction="none"
    ).view(6, 4)
    assert torch.allclose(half, ((ce + ce_right) / 2).mean(-1), atol=1e-6)


def test_bbox2dist_clamps_below_last_bin():
    points = torch.tensor([[5.0, 5.0]])
    boxes = torch.tensor([[0.0, 3.0, 40.0, 6.0]])
    assert torch.allclose(bbox2dist(points, boxes, 15), torch.tensor([[5.0, 2.0, 14.99, 1.0]]))


def test_crop_keeps_half_open_box():
    maps = torch.ones(1, 4, 6)
    out = crop_to_boxes(maps, torch.tensor([[1.0, 1.0, 3.0, 4.0]]))
    expected = torch.zeros(1, 4, 6)
    expected[0, 1:4, 1:3] = 1
    assert torch.equal(out, expected)


def test_assigner_picks_anchors_inside_the_box_and_ignores_padding():
    # 8 x 8 grid of anchors (centres at 0.5 .. 7.5), one gt covering x, y in [2, 5], plus a padding row.
    ys, xs = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(8) + 0.5, indexing="ij")
    points = torch.stack((xs, ys), -1).view(-1, 2)
    gt = torch.tensor([[[2.0, 2.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[[1.0], [0.0]]])
    valid = gt.sum(-1, keepdim=True) > 0
    pred = gt[:, :1].expand(1, 64, 4).clone()  # every anchor predicts the gt box exactly
    scores = torch.full((1, 64, 2), 0.5)
    a = TaskAlignedAssigner(num_classes=2, topk=4)(scores, pred, points, labels, gt, valid)
    inside = ((points > 2) & (points < 5)).all(-1)  # 9 anchors; top-4 by metric (ties) are kept
    assert a.foreground.sum() == 4 and (a.foreground[0] <= inside).all()
    assert (a.gt_index[0][a.foreground[0]] == 0).all() and (a.labels[0][a.foreground[0]] == 1).all()
    # Perfect boxes: every positive anchor's soft score is the gt's best IoU (1) in its class column.
    assert torch.allclose(
        a.scores[0][a.foreground[0]], torch.tensor([0.0, 1.0]).expand(4, 2), atol=1e-5
    )
    assert a.scores[0][~a.foreground[0]].abs().sum() == 0


def test_assigner_min_box_side_widens_tiny_boxes():
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0]])
    gt = torch.tensor([[[10.0, 2.0, 11.0, 6.0]]])  # 1 px wide: no anchor centre inside
    args = (
        torch.full((1, 2, 1), 0.5),
        gt.expand(1, 2, 4),
        points,
        torch.zeros(1, 1, 1),
        gt,
        torch.ones(1, 1, 1),
    )
    assert TaskAlignedAssigner(1).__call__(*args).foreground.sum() == 0
    assert TaskAlignedAssigner(1, min_box_side=16).__call__(*args).foreground.sum() == 2


@pytest.fixture(scope="module")
def outputs():
    torch.manual_seed(0)
    model = build_model(yolov8_seg_config("n", num_classes=2)).train()
    images = torch.rand(2, 3, 64, 96)
    return model, images


def _targets(with_objects: bool) -> SegTargets:
    if not with_objects:
        return SegTargets(
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, 4),
            torch.zeros(0, 16, 24),
        )
    masks = torch.zeros(2, 16, 24)
    masks[0, 2:10, 3:12] = 1
    masks[1, 5:15, 10:20] = 1
    return SegTargets(
        torch.tensor([0, 1]),
        torch.tensor([1, 0]),
        torch.tensor([[12.0, 8.0, 48.0, 40.0], [40.0, 20.0, 80.0, 60.0]]),
        masks,
    )


def test_loss_without_targets_trains_only_background_but_touches_every_parameter(outputs):
    model, images = outputs
    model.zero_grad()
    loss = YoloSegLoss(2)(model(images), _targets(False))
    box, seg, cls, dfl = loss.items.tolist()
    assert box == 0 and seg == 0 and dfl == 0 and cls > 0
    loss.total.backward()
    # DDP requires a gradient (possibly zero) on every trainable parameter.
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_loss_with_targets_backpropagates_into_all_branches(outputs):
    model, images = outputs
    model.zero_grad()
    loss = YoloSegLoss(2)(model(images), _targets(True))
    assert (loss.items > 0).all() and torch.isclose(loss.total, loss.items.sum() * 2)
    loss.total.backward()
    head = model.head
    for branch in (
        head.box_branch[0][-1],
        head.class_branch[0][-1],
        head.coeff_branch[0][-1],
        head.proto.conv3.conv,
    ):
        assert branch.weight.grad.abs().sum() > 0


def test_masks_of_another_size_are_resized_to_the_prototypes(outputs):
    model, images = outputs
    with torch.no_grad():
        out = model(images)
    t = _targets(True)
    big = SegTargets(
        t.batch_idx, t.classes, t.boxes, t.masks.repeat_interleave(4, 1).repeat_interleave(4, 2)
    )
    assert torch.allclose(YoloSegLoss(2)(out, big).items, YoloSegLoss(2)(out, t).items)


def test_loss_rejects_bad_class_ids_and_wrong_head(outputs):
    model, images = outputs
    with torch.no_grad():
        out = model(images)
    t = _targets(True)
    bad = SegTargets(t.batch_idx, torch.tensor([0, 2]), t.boxes, t.masks)
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 2\)"):
        YoloSegLoss(2)(out, bad)
    with pytest.raises(ValueError, match="reg_max=26"):
        YoloSegLoss(2, reg_max=26)(out, t)
    with pytest.raises(ValueError, match="seg_normalization"):
        YoloSegLoss(2, seg_normalization="mean")  # type: ignore[arg-type]
