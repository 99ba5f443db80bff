"""Box prompts: both pixel rules against dense reference computations, order, ties, no match
(one row per box, always: an empty row or, with box_no_match="reference", the references' pick)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.prompts import parse_boxes, prompt, select_boxes
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
    # Through prompt(): one row per box, in order; "reference" is the official pick for ALL boxes.
    reference = prompt(res, boxes=boxes, box_no_match="reference")
    assert reference.source_ids.tolist() == expected
    assert reference.prompt_ids.tolist() == list(range(len(boxes)))
    ours = prompt(res, boxes=boxes)
    assert ours.source_ids.tolist() == match.indices.tolist()
    assert ours.prompt_ids.tolist() == list(range(len(boxes)))
    assert (ours.masks.areas()[~hit] == 0).all() and (ours.prompt_scores[~hit] == 0).all()


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
    reference = prompt(res, boxes=boxes, box_rule="ultralytics", box_no_match="reference")
    assert reference.source_ids.tolist() == _ultralytics_dense(dense, boxes)  # every box


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


def _two_squares(frame_hw: tuple[int, int] = (40, 40), **kwargs: object) -> Results:
    dense = torch.zeros((2, *frame_hw), dtype=torch.bool)
    dense[0, :10, :10] = True
    dense[1, 5:15, 5:15] = True
    return Results(
        CompactMasks.from_dense(dense),
        tight_boxes(dense),
        torch.tensor([0.9, 0.8]),
        torch.zeros(2, dtype=torch.int64),
        kwargs.pop("orig_hw", frame_hw),  # type: ignore[arg-type]
        orig_image=torch.full((40, 40, 3), 7, dtype=torch.uint8),
        **kwargs,  # type: ignore[arg-type]
    )


FAR, NEAR = [30, 30, 39, 39], [6, 6, 14, 14]  # FAR overlaps no mask; NEAR is best on mask 1


def test_box_matching_nothing_gives_an_empty_row_in_order() -> None:
    res = _two_squares()
    out = prompt(res, boxes=[FAR, NEAR, FAR, NEAR, [0, 0, 10, 10]])
    assert len(out) == 5  # exactly one row per box, in the given order, duplicates kept
    assert out.prompt_ids.tolist() == [0, 1, 2, 3, 4]
    assert out.source_ids.tolist() == [-1, 1, -1, 1, 0]
    assert out.prompt_kinds == ("box",) * 5
    assert out.masks.areas().tolist() == [0, 100, 0, 100, 100]
    assert not out.masks.to_dense()[[0, 2]].any()  # empty rows are all False
    assert out.boxes[[0, 2]].eq(0).all() and out.scores[[0, 2]].eq(0).all()
    assert out.prompt_scores[[0, 2]].eq(0).all() and out.prompt_scores[1] == pytest.approx(0.64)
    assert out.class_ids.tolist() == [0] * 5
    assert torch.equal(out.masks.dense(1), res.masks.dense(1))
    assert out.boxes[1].tolist() == res.boxes[1].tolist() and out.scores[1] == res.scores[1]
    alone = prompt(res, boxes=[FAR])
    assert len(alone) == 1 and alone.source_ids.tolist() == [-1]


def test_box_no_match_reference_is_the_references_argmax() -> None:
    res = _two_squares()
    boxes = [FAR, NEAR, FAR]
    out = prompt(res, boxes=boxes, box_no_match="reference")
    match = select_boxes(res.masks, parse_boxes(boxes, res.orig_hw), res.orig_hw)
    assert out.source_ids.tolist() == match.best.tolist() == [0, 1, 0]  # argmax of zeros: mask 0
    assert out.prompt_scores.tolist() == pytest.approx([0.0, 0.64, 0.0])  # IoU 0 for the pick
    assert torch.equal(out.masks.dense(0), res.masks.dense(0))
    for rule in ("official", "ultralytics"):  # the dense spec §4.1 / §4.2 computations agree
        got = prompt(res, boxes=boxes, box_rule=rule, box_no_match="reference")
        assert got.source_ids.tolist() == [0, 1, 0]
    expected, _ = official_box_prompt(res.masks.to_dense().float(), boxes, res.orig_hw)
    assert expected == [0, 1, 0]
    assert _ultralytics_dense(res.masks.to_dense(), torch.tensor(boxes).double()) == [0, 1, 0]
    # ultralytics' subset layout keeps its argmax-at-IoU-0 behaviour (mask 0) in both modes
    for no_match in ("empty", "reference"):
        subset = prompt(
            res, boxes=[FAR], box_rule="ultralytics", output="subset", box_no_match=no_match
        )
        assert subset.source_ids.tolist() == [0]


@pytest.mark.parametrize("no_match", ["empty", "reference"])
def test_zero_masks_give_one_empty_row_per_box(no_match: str) -> None:
    res = _two_squares()[[]]  # everything mode found nothing
    boxes = [NEAR, FAR, [0, 0, 40, 40]]
    out = prompt(res, boxes=boxes, box_no_match=no_match)
    assert len(out) == 3 and out.prompt_ids.tolist() == [0, 1, 2]
    assert out.source_ids.tolist() == [-1, -1, -1]  # nothing to pick, even for "reference"
    assert out.masks.areas().tolist() == [0, 0, 0] and out.prompt_scores.tolist() == [0, 0, 0]
    assert out.masks.image_hw == res.masks.image_hw
    assert len(prompt(res, boxes=boxes, output="subset", box_no_match=no_match)) == 0
    assert len(prompt(res, points=[[5, 5]])) == 0  # points still select nothing
    match = select_boxes(res.masks, parse_boxes(boxes, res.orig_hw), res.orig_hw)
    assert match.best.tolist() == [-1, -1, -1] and match.indices.tolist() == [-1, -1, -1]


def test_box_past_the_edge_is_clipped_entirely_outside_is_refused() -> None:
    """A box reaching past the image is clipped to it (as both references and SAM), so it picks
    the same mask as its clipped twin; a box with no pixel in the image is an error."""
    res = _two_squares()
    out = prompt(res, boxes=[[-20, -20, 10, 10], [30, 30, 70, 70], [6, 6, 14, 14]])
    clipped = prompt(res, boxes=[[0, 0, 10, 10], [30, 30, 40, 40], NEAR])
    assert out.source_ids.tolist() == clipped.source_ids.tolist() == [0, -1, 1]
    assert out.prompt_scores.tolist() == clipped.prompt_scores.tolist()
    with pytest.raises(ValueError, match=r"entirely outside the 40x40 image"):
        prompt(res, boxes=[[50, 50, 70, 70], NEAR])
    with pytest.raises(ValueError, match=r"entirely outside"):
        prompt(res, boxes=[[-20, -20, -5, -5]])
    with pytest.raises(ValueError, match=r"NaN or infinity"):
        prompt(res, boxes=[[0, 0, float("inf"), 10]])


def test_box_rows_then_point_rows_with_a_miss() -> None:
    res = _two_squares()
    out = prompt(res, boxes=[FAR, NEAR], points=[[2, 2]])
    assert out.prompt_kinds == ("box", "box", "point")
    assert out.source_ids.tolist() == [-1, 1, 0] and out.prompt_ids.tolist() == [0, 1, -1]


@pytest.mark.parametrize("window", [False, True], ids=["retina", "letterbox"])
def test_every_export_copes_with_empty_rows(tmp_path: Path, window: bool) -> None:
    """Empty rows through RLE, polygons, JSON, overlay, npz, dense and original-frame views."""
    from fastsam_core.export.rle import decode

    # letterbox: masks in a (48, 40) frame with the 40x40 image at rows 4..44
    res = _two_squares((48, 40), orig_hw=(40, 40), mask_window=(4, 0, 40, 40)) if window else None
    res = res or _two_squares()
    out = prompt(res, boxes=[FAR, NEAR, FAR])
    assert out.source_ids.tolist() == [-1, 1, -1]
    assert out.masks.to_dense().shape == (3, *res.masks.image_hw)
    for mode in ("nearest", "bilinear"):
        original = out.masks_original(mode)
        assert original.image_hw == (40, 40) and original.areas()[[0, 2]].tolist() == [0, 0]
    rles = out.to_rle()
    assert len(rles) == 3 and not decode(rles[0]).any() and decode(rles[1]).any()
    assert decode(rles[0]).shape == (40, 40)
    polygons = out.to_polygons()
    assert polygons[0] == [] and polygons[2] == [] and len(polygons[1]) >= 1
    doc = out.to_json()
    first = doc["annotations"][0]
    assert len(doc["annotations"]) == 3
    assert first["area"] == 0 and first["bbox"] == [0, 0, 0, 0] and first["score"] == 0
    assert json.loads(json.dumps(doc)) == doc
    out.save_overlay(tmp_path / "o.png")
    empty_only = out[[0]]
    empty_only.save_overlay(tmp_path / "e.png")  # nothing drawn over the image
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "e.png").convert("RGB")), np.full((40, 40, 3), 7)
    )
    out.save_npz(tmp_path / "o.npz")
    loaded = Results.load_npz(tmp_path / "o.npz")
    assert loaded.masks.areas().tolist() == out.masks.areas().tolist()
    assert torch.equal(loaded.masks.to_dense(), out.masks.to_dense())
    assert out.sort("area").source_ids.tolist() == [1, -1, -1]
    assert out[[2, 1]].prompt_ids.tolist() == [2, 1]


def test_box_no_match_option_is_validated() -> None:
    res = _two_squares()
    with pytest.raises(ValueError, match=r"box_no_match must be one of \('empty', 'reference'\)"):
        prompt(res, boxes=[NEAR], box_no_match="argmax")
    with pytest.raises(ValueError, match="box_no_match must be one of"):
        prompt(res[[]], boxes=[NEAR], box_no_match=None)


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


@pytest.mark.gpu
def test_empty_box_rows_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    res = _two_squares().to("cuda")
    out = prompt(res, boxes=[FAR, NEAR, FAR])
    assert out.source_ids.tolist() == [-1, 1, -1] and out.masks.device.type == "cuda"
    assert out.masks.areas().tolist() == [0, 100, 0]
    assert prompt(res[[]], boxes=[FAR, NEAR]).source_ids.tolist() == [-1, -1]
    assert len(out.to_json()["annotations"]) == 3
