"""Box prompts: both pixel rules against dense reference computations, order, ties, no match."""

from __future__ import annotations

import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.prompts import prompt, select_boxes
from fastsam_core.prompts.box import box_pixels_official, box_pixels_ultralytics
from fastsam_core.results import Results
from tests.support.official_prompts import official_box_prompt
from tests.support.prompt_data import random_dense_masks, synthetic_results, tight_boxes


def _random_boxes(num: int, hw: tuple[int, int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    height, width = hw
    a = torch.rand(num, 2, generator=gen) * torch.tensor([width, height])
    b = torch.rand(num, 2, generator=gen) * torch.tensor([width, height])
    return torch.cat([torch.minimum(a, b), torch.maximum(a, b)], 1).double()  # (M, 4) float xyxy


def _ultralytics_dense(masks: torch.Tensor, boxes: torch.Tensor) -> list[int]:
    """Spec §4.2 bboxes: int32 truncation, clip to the image, IoU vs the whole mask, argmax."""
    h, w = masks.shape[1:]
    b = boxes.to(torch.int32)
    b[:, 0::2] = b[:, 0::2].clamp(0, w)
    b[:, 1::2] = b[:, 1::2].clamp(0, h)
    box_areas = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    m = masks.to(torch.uint8)
    inter = torch.stack([m[:, y1:y2, x1:x2].sum(dim=(1, 2)) for x1, y1, x2, y2 in b.tolist()])
    union = box_areas[:, None] + m.sum(dim=(1, 2)) - inter
    return torch.argmax(inter / union, dim=1).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_official_rule_matches_reference_same_frame(seed: int) -> None:
    res, dense = synthetic_results(seed=seed)
    boxes = torch.cat(
        [_random_boxes(20, res.orig_hw, seed), tight_boxes(dense)[[0, 1, 3, 5, 6, 7]].double()]
    )
    match = select_boxes(res.masks, boxes, res.orig_hw, "official")
    expected, _ = official_box_prompt(dense.float(), boxes.tolist(), res.orig_hw)
    hit = match.indices >= 0
    assert torch.equal(match.best, torch.tensor(expected))
    assert torch.equal(match.indices[hit], match.best[hit])
    # A box overlapping no mask gives no match (the reference returns mask 0 regardless).
    inter = torch.stack(
        [
            dense[:, int(y1) : int(y2), int(x1) : int(x2)].sum((1, 2))
            for x1, y1, x2, y2 in box_pixels_official(boxes, res.orig_hw, res.orig_hw).tolist()
        ]
    )
    assert torch.equal(~hit, inter.amax(1) == 0)


@pytest.mark.parametrize("seed", range(4))
def test_official_rule_matches_reference_other_frame(seed: int) -> None:
    """Retina off: masks in a (64, 96) frame, boxes scaled with int(v * w / W) (reference quirk)."""
    orig_hw, frame_hw = (60, 80), (64, 96)
    dense = random_dense_masks(10, frame_hw, seed)
    masks = CompactMasks.from_dense(dense)
    boxes = _random_boxes(25, orig_hw, seed + 10)
    match = select_boxes(masks, boxes, orig_hw, "official")
    expected, _ = official_box_prompt(dense.float(), boxes.tolist(), orig_hw)
    assert match.best.tolist() == expected


@pytest.mark.parametrize("seed", range(6))
def test_ultralytics_rule_matches_dense_reference(seed: int) -> None:
    res, dense = synthetic_results(seed=seed)
    boxes = torch.cat(
        [
            _random_boxes(20, res.orig_hw, seed),
            tight_boxes(dense)[[0, 1, 3, 5, 6, 7]].double() + 0.7,
        ]
    )
    boxes = torch.minimum(boxes, torch.tensor([80.0, 60, 80, 60], dtype=torch.float64))
    match = select_boxes(res.masks, boxes, res.orig_hw, "ultralytics")
    assert match.best.tolist() == _ultralytics_dense(dense, boxes)


def test_pixel_rules_differ_as_specified() -> None:
    boxes = torch.tensor([[1.5, 2.5, 10.5, 20.7], [0.4, 0.6, 79.5, 59.6]], dtype=torch.float64)
    # official: round half to even, clamp to the frame
    assert box_pixels_official(boxes, (60, 80), (60, 80)).tolist() == [
        [2, 2, 10, 21],
        [0, 1, 80, 60],
    ]
    # ultralytics: truncation
    assert box_pixels_ultralytics(boxes, (60, 80)).tolist() == [[1, 2, 10, 20], [0, 0, 79, 59]]
    # official other frame: int(v * w / W) first, then round() is a no-op
    assert box_pixels_official(boxes, (60, 80), (30, 40)).tolist() == [
        [0, 1, 5, 10],
        [0, 0, 39, 29],
    ]


def test_iou_values_and_order_with_duplicates() -> None:
    res, dense = synthetic_results(seed=3)
    tight = tight_boxes(dense)
    boxes = torch.stack([tight[7], tight[0], tight[7], tight[1]])  # mask 2 duplicates mask 1
    out = prompt(res, boxes=boxes)
    assert out.source_ids.tolist() == [7, 0, 7, 1]  # box order, duplicates kept, first of a tie
    assert out.prompt_ids.tolist() == [0, 1, 2, 3]
    assert out.prompt_kinds == ("box",) * 4
    for row, src in enumerate(out.source_ids.tolist()):
        x1, y1, x2, y2 = (int(v) for v in boxes[row].tolist())
        inter = dense[src, y1:y2, x1:x2].sum()
        union = (x2 - x1) * (y2 - y1) + dense[src].sum() - inter
        assert out.prompt_scores[row] == pytest.approx(float(inter / union), abs=1e-6)
        assert torch.equal(out.masks.dense(row), dense[src])
    assert torch.equal(out.scores, res.scores[out.source_ids])  # detection scores kept


def test_box_matching_nothing_gives_no_row() -> None:
    dense = torch.zeros((2, 40, 40), dtype=torch.bool)
    dense[0, :10, :10] = True
    dense[1, 5:15, 5:15] = True
    res = Results(
        CompactMasks.from_dense(dense),
        tight_boxes(dense),
        torch.tensor([0.9, 0.8]),
        torch.zeros(2, dtype=torch.int64),
        (40, 40),
    )
    out = prompt(res, boxes=[[30, 30, 39, 39], [6, 6, 14, 14]])
    assert out.source_ids.tolist() == [1] and out.prompt_ids.tolist() == [1]
    assert len(prompt(res, boxes=[[30, 30, 39, 39]])) == 0
    # ultralytics' subset layout keeps its argmax-at-IoU-0 behaviour (mask 0) for parity
    subset = prompt(res, boxes=[[30, 30, 39, 39]], box_rule="ultralytics", output="subset")
    assert subset.source_ids.tolist() == [0]


def test_box_prompt_does_not_densify(monkeypatch: pytest.MonkeyPatch) -> None:
    res, _ = synthetic_results(n=40, hw=(300, 400), seed=1)
    for name in ("to_dense", "dense", "union"):
        monkeypatch.setattr(CompactMasks, name, lambda *a, **k: pytest.fail("densified"))
    boxes = _random_boxes(30, res.orig_hw, 5)
    out = prompt(res, boxes=boxes, box_rule="ultralytics")
    assert len(out) <= 30


def test_ultralytics_rule_needs_original_frame() -> None:
    masks = CompactMasks.from_dense(random_dense_masks(3, (64, 96)))
    with pytest.raises(ValueError, match="original"):
        select_boxes(masks, torch.tensor([[0.0, 0, 5, 5]]), (60, 80), "ultralytics")
    with pytest.raises(ValueError, match="box rule must be"):
        select_boxes(masks, torch.tensor([[0.0, 0, 5, 5]]), (60, 80), "nearest")  # type: ignore[arg-type]
