"""Point prompts: official union vs its dense reference (quirks included), ultralytics instances."""

from __future__ import annotations

import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.prompts import prompt, select_instances, union_mask
from fastsam_core.prompts.point import point_pixels
from fastsam_core.results import Results
from tests.support.official_prompts import official_point_prompt
from tests.support.prompt_data import random_dense_masks, synthetic_results, tight_boxes


def _random_points(num: int, hw: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pts = torch.rand(num, 2, generator=gen) * torch.tensor([hw[1], hw[0]])
    labels = (torch.rand(num, generator=gen) < 0.6).long()
    return pts.double(), labels


def _instances_dense(dense: torch.Tensor, pts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Spec §4.2 points: any-positive selects (all if every label is 0), any-negative deselects."""
    coords = pts.long()
    hits = dense[:, coords[:, 1], coords[:, 0]]  # (N, P)
    sel = (
        torch.ones(len(dense), dtype=torch.bool)
        if labels.sum() == 0
        else hits[:, labels == 1].any(1)
    )
    return sel & ~hits[:, labels == 0].any(1)


@pytest.mark.parametrize("seed", range(8))
def test_union_matches_official_reference(seed: int) -> None:
    res, dense = synthetic_results(seed=seed)
    pts, labels = _random_points(1 + seed % 5, res.orig_hw, seed)
    out = prompt(res, points=pts, labels=labels, point_mode="union")
    expected = official_point_prompt(
        dense.numpy(), pts.long().tolist(), labels.tolist(), res.orig_hw
    )
    if not expected.any():
        assert (
            len(out) == 0
        )  # nothing set: an empty result (the reference returns an all-false mask)
        return
    assert len(out) == 1 and out.prompt_kinds == ("point",) and out.source_ids.tolist() == [-1]
    assert torch.equal(out.masks.dense(0), torch.from_numpy(expected))
    ys, xs = torch.from_numpy(expected).nonzero(as_tuple=True)
    assert out.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_union_quirk_smaller_positive_resets_cleared_pixels() -> None:
    """Largest first: big mask cleared by a negative, a smaller nested one set again by a positive."""
    dense = torch.zeros((3, 30, 30), dtype=torch.bool)
    dense[0, 10:20, 10:20] = True  # small, nested in 1
    dense[1, 5:25, 5:25] = True  # big
    dense[2, 0:4, 0:4] = True
    res = Results(
        CompactMasks.from_dense(dense),
        tight_boxes(dense),
        torch.tensor([0.9, 0.8, 0.7]),
        torch.zeros(3, dtype=torch.int64),
        (30, 30),
    )
    # positive on the small one (also on the big one), then negative on the big one only: the big
    # mask is set then cleared (its last point is negative), then the small one sets its pixels
    out = prompt(res, points=[[15, 15], [6, 6]], labels=[1, 0], point_mode="union")
    assert torch.equal(out.masks.dense(0), dense[0])
    ref = official_point_prompt(dense.numpy(), [[15, 15], [6, 6]], [1, 0], (30, 30))
    assert torch.equal(torch.from_numpy(ref), dense[0])
    # the other order: the big mask's last point is positive, so the union is the big mask
    out = prompt(res, points=[[6, 6], [15, 15]], labels=[0, 1], point_mode="union")
    assert torch.equal(out.masks.dense(0), dense[1])
    # positive then negative on the same (small) mask: the last point on a mask decides
    out = prompt(res, points=[[15, 15], [16, 16], [2, 2]], labels=[1, 0, 1], point_mode="union")
    expected = official_point_prompt(
        dense.numpy(), [[15, 15], [16, 16], [2, 2]], [1, 0, 1], (30, 30)
    )
    assert torch.equal(out.masks.dense(0), torch.from_numpy(expected))
    assert torch.equal(torch.from_numpy(expected), dense[2])
    assert out.scores.tolist() == pytest.approx([0.7])  # the score of the mask that set pixels


@pytest.mark.parametrize("seed", range(4))
def test_union_other_frame_scales_points_like_reference(seed: int) -> None:
    orig_hw, frame_hw = (60, 80), (64, 96)
    dense = random_dense_masks(10, frame_hw, seed)
    pts, labels = _random_points(4, orig_hw, seed)
    frame_pts = point_pixels(pts, orig_hw, frame_hw)
    mask, _ = union_mask(CompactMasks.from_dense(dense), frame_pts, labels)
    expected = official_point_prompt(dense.numpy(), pts.long().tolist(), labels.tolist(), orig_hw)
    got = mask.to_dense()[0] if len(mask) else torch.zeros(frame_hw, dtype=torch.bool)
    assert torch.equal(got, torch.from_numpy(expected))


@pytest.mark.parametrize("seed", range(8))
def test_instances_match_dense_rule(seed: int) -> None:
    res, dense = synthetic_results(seed=seed)
    pts, labels = _random_points(1 + seed % 4, res.orig_hw, seed + 100)
    if seed == 3:
        labels = torch.zeros_like(labels)  # all negative: start from every mask
    expected = _instances_dense(dense, pts, labels)
    out = prompt(res, points=pts, labels=labels)  # default point_mode="instances"
    assert out.source_ids.tolist() == expected.nonzero().flatten().tolist()  # original order
    assert out.prompt_kinds == ("point",) * len(out)
    assert torch.equal(out.prompt_scores, res.scores[out.source_ids])
    subset = prompt(res, points=pts, labels=labels, output="subset")
    assert subset.source_ids.tolist() == out.source_ids.tolist()


def test_points_on_nothing_give_empty_result_and_never_wrap() -> None:
    dense = torch.zeros((2, 30, 40), dtype=torch.bool)
    dense[0, 25:30, 35:40] = True  # bottom-right corner: where (-1, -1) would wrap to
    dense[1, 0:5, 0:5] = True
    res = Results(
        CompactMasks.from_dense(dense),
        tight_boxes(dense),
        torch.tensor([0.9, 0.8]),
        torch.zeros(2, dtype=torch.int64),
        (30, 40),
    )
    assert len(prompt(res, points=[[20, 15]])) == 0
    assert len(prompt(res, points=[[20, 15]], point_mode="union")) == 0
    clipped = prompt(res, points=[[-1, -1]])  # clipped to (0, 0), not wrapped
    assert clipped.source_ids.tolist() == [1]


def test_instances_do_not_densify(monkeypatch: pytest.MonkeyPatch) -> None:
    res, dense = synthetic_results(n=30, hw=(200, 300), seed=2)
    for name in ("to_dense", "dense", "union"):
        monkeypatch.setattr(CompactMasks, name, lambda *a, **k: pytest.fail("densified"))
    pts, labels = _random_points(6, res.orig_hw, 9)
    out = select_instances(res.masks, pts.long(), labels)
    assert torch.equal(out, _instances_dense(dense, pts, labels))


def test_union_box_in_original_pixels_for_letterbox_frame() -> None:
    """Retina off: the union mask stays in the letterbox frame, its box maps back through the window."""
    frame = torch.zeros((1, 64, 96), dtype=torch.bool)
    frame[0, 20:40, 8 + 10 : 8 + 50] = True  # content window starts at left = 8
    res = Results(CompactMasks.from_dense(frame), torch.tensor([[5.0, 10, 25, 20]]),
                  torch.tensor([0.9]), torch.zeros(1, dtype=torch.int64), (32, 40),
                  mask_window=(0, 8, 64, 80))  # fmt: skip
    # official point scaling ignores the window: x_frame = int(x * 96 / 40), y = int(y * 64 / 32)
    out = prompt(res, points=[[10, 15]], point_mode="union")
    assert len(out) == 1 and out.masks.image_hw == (64, 96) and out.mask_window == (0, 8, 64, 80)
    assert torch.equal(out.masks.dense(0), frame[0])
    # tight box [18, 20, 58, 40) in the frame -> ((x - 8) * 40 / 80, y * 32 / 64)
    assert out.boxes[0].tolist() == [5.0, 10.0, 25.0, 20.0]
