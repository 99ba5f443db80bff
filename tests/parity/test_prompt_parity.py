"""Prompt parity (issue #4 part 5).

* ultralytics 8.4.190: `FastSAMPredictor.prompt` (the oracle) and our `prompt(...,
  box_rule="ultralytics", point_mode="instances", output="subset")` on the SAME everything-mode
  masks: synthetic masks (ties, duplicates, edge boxes, all-negative labels, retina off) and the
  oracle's own results on real photos from an oracle-made random-weight checkpoint. Text: the
  oracle's CLIP crops equal ours pixel for pixel, and given the same similarities both pick the
  same masks.
* FastSAM repo (official): its rules re-stated in `tests/support/official_prompts.py` (spec §4.1,
  quirks included) on the same real-photo masks, vs `box_rule="official"` / `point_mode="union"`.

Measured agreement is printed at the end (`pytest -s`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.prompts import masked_crops, prompt, select_boxes
from fastsam_core.results import Results
from tests.support.official_prompts import official_box_prompt, official_point_prompt
from tests.support.photos import photo
from tests.support.prompt_data import random_dense_masks, tight_boxes

pytestmark = pytest.mark.oracle

PHOTOS = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]  # bundled (support/photos)
MEASURED: dict[str, list[int]] = {}


def _count(key: str, agree: bool) -> None:
    ok, total = MEASURED.setdefault(key, [0, 0])
    MEASURED[key] = [ok + int(agree), total + 1]


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield
    for key, (ok, total) in sorted(MEASURED.items()):
        unit = "" if "pixels" in key else " prompts agree"
        print(f"\n[prompt parity] {key}: {ok}/{total}{unit}")


@pytest.fixture(scope="module")
def oracle() -> object:
    """ultralytics' FastSAMPredictor, only for its `prompt` method (CPU)."""
    pytest.importorskip("ultralytics", reason="the oracle extra: pip install -e '.[oracle]'")
    from tests.support import oracle_models

    oracle_models.import_oracle()
    from ultralytics.models.fastsam import FastSAMPredictor

    predictor = FastSAMPredictor(overrides={"device": "cpu", "verbose": False})
    predictor.device = torch.device("cpu")
    return predictor


# ---------------------------------------------------------------------------- conversions
def _window(frame_hw: tuple[int, int], orig_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """ultralytics `scale_masks` content window (top, left, height, width) of a letterbox frame."""
    (h1, w1), (h0, w0) = frame_hw, orig_hw
    gain = min(h1 / h0, w1 / w0)
    pad_w, pad_h = (w1 - max(round(w0 * gain), 1)) / 2, (h1 - max(round(h0 * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    return top, left, max(round(h0 * gain), 1), max(round(w0 * gain), 1)


def _ours(ul: object, rgb: torch.Tensor, frame: str = "own") -> Results:
    """Our Results holding exactly the oracle result's masks, boxes and scores.

    frame "own": masks in the oracle's mask frame (letterbox frame when retina is off, with the
    `scale_masks` window). frame "original": masks upsampled by the oracle's own `scale_masks`
    (> 0.5), isolating the prompt rules from our bilinear resize (see `_resize_agreement`).
    """
    masks = ul.masks.data.cpu().bool()
    orig_hw = tuple(ul.orig_shape)
    window = None if tuple(masks.shape[1:]) == orig_hw else _window(tuple(masks.shape[1:]), orig_hw)
    if frame == "original" and window is not None:
        from ultralytics.utils.ops import scale_masks

        masks, window = scale_masks(masks[None].float(), orig_hw)[0] > 0.5, None
    return Results(
        masks=CompactMasks.from_dense(masks),
        boxes=ul.boxes.xyxy.cpu(),
        scores=ul.boxes.conf.cpu(),
        class_ids=ul.boxes.cls.cpu().long(),
        orig_hw=orig_hw,
        orig_image=rgb,
        mask_window=window,
    )


def _resize_agreement(ul: object, ours: Results, key: str) -> None:
    """Record how many pixels our bilinear upsampling (Results.masks_original) differs from
    ultralytics' scale_masks > 0.5. Known: values within float rounding of exactly 0.5 can fall
    on either side (operation order / FMA in ATen's kernel), a few pixels per mask set."""
    from ultralytics.utils.ops import scale_masks

    theirs = scale_masks(ul.masks.data.cpu()[None].float(), ours.orig_hw)[0] > 0.5
    mine = ours.masks_original("bilinear").to_dense()
    MEASURED.setdefault(f"{key}: pixels where masks_original != scale_masks", [0, 0])
    entry = MEASURED[f"{key}: pixels where masks_original != scale_masks"]
    entry[0] += int((mine != theirs).sum())
    entry[1] += theirs.numel()


def _ul_results(masks: torch.Tensor, boxes: torch.Tensor, rgb: torch.Tensor) -> object:
    """An ultralytics Results from dense masks; scores are unique so rows can be identified."""
    from ultralytics.engine.results import Results as ULResults

    n = masks.shape[0]
    conf = torch.linspace(0.95, 0.41, n)
    data = torch.cat([boxes.float(), conf[:, None], torch.zeros(n, 1)], 1)  # (N, 6)
    bgr = np.ascontiguousarray(rgb.numpy()[:, :, ::-1])
    return ULResults(bgr, "synthetic", {0: "object"}, boxes=data, masks=masks.float())


def _oracle_rows(oracle: object, ul: object, **prompts: object) -> list[int]:
    """Rows of `ul` the oracle's prompt keeps (matched by their unique confidence)."""
    (out,) = oracle.prompt([ul], **prompts)
    conf = ul.boxes.conf.tolist()
    return sorted(conf.index(c) for c in out.boxes.conf.tolist())


def _random_boxes(
    num: int, hw: tuple[int, int], gen: torch.Generator, near: torch.Tensor
) -> torch.Tensor:
    """Half jittered copies of result boxes (some past the border), half uniform random boxes."""
    height, width = hw
    picks = near[torch.randint(0, len(near), (num // 2,), generator=gen)]
    jitter = picks + (torch.rand(picks.shape, generator=gen) - 0.5) * 0.2 * max(hw)
    a = torch.rand(num - num // 2, 2, generator=gen) * torch.tensor([width, height])
    b = torch.rand(num - num // 2, 2, generator=gen) * torch.tensor([width, height])
    uniform = torch.cat([torch.minimum(a, b), torch.maximum(a, b)], 1)
    boxes = torch.cat([jitter, uniform]).double()
    x1, x2 = torch.minimum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = torch.minimum(boxes[:, 1], boxes[:, 3]), torch.maximum(boxes[:, 1], boxes[:, 3])
    return torch.stack([x1, y1, x2 + 1, y2 + 1], 1)


def _check_boxes(oracle: object, ul: object, ours: Results, boxes: torch.Tensor, key: str) -> None:
    picks = []  # the oracle's one mask per box, for every box (IoU 0 ones included)
    for box in boxes:
        expected = _oracle_rows(oracle, ul, bboxes=box.tolist())
        got = prompt(ours, boxes=box, box_rule="ultralytics", output="subset")
        _count(key, got.source_ids.tolist() == expected)
        assert got.source_ids.tolist() == expected, f"box {box.tolist()}"
        assert len(expected) == 1
        picks += expected
    # several boxes at once: the OR, in original order, each row once
    expected = _oracle_rows(oracle, ul, bboxes=boxes.tolist())
    got = prompt(ours, boxes=boxes, box_rule="ultralytics", output="subset")
    assert got.source_ids.tolist() == expected
    # our per-box layout with the references' no-match pick: one row per box, the oracle's mask
    per_box = prompt(ours, boxes=boxes, box_rule="ultralytics", box_no_match="reference")
    assert per_box.source_ids.tolist() == picks
    assert per_box.prompt_ids.tolist() == list(range(len(boxes)))
    # default layout: the same rows where the box overlaps its mask, an empty row where not
    default = prompt(ours, boxes=boxes, box_rule="ultralytics")
    overlaps = per_box.prompt_scores > 0
    assert default.source_ids[overlaps].tolist() == per_box.source_ids[overlaps].tolist()
    assert (default.source_ids[~overlaps] == -1).all()
    assert (default.masks.areas()[~overlaps] == 0).all()


def _check_points(
    oracle: object, ul: object, ours: Results, gen: torch.Generator, key: str
) -> None:
    height, width = ours.orig_hw
    for trial in range(8):
        num = 1 + trial % 4
        pts = torch.rand(num, 2, generator=gen) * torch.tensor([width + 20.0, height + 20.0]) - 10
        labels = (torch.rand(num, generator=gen) < 0.6).long()
        if trial % 6 == 5:
            labels[:] = 0  # only negatives: everything but the masks under them
        expected = _oracle_rows(oracle, ul, points=pts.tolist(), labels=labels.tolist())
        got = prompt(ours, points=pts, labels=labels, output="subset")
        _count(key, got.source_ids.tolist() == expected)
        assert got.source_ids.tolist() == expected, (
            f"points {pts.tolist()} labels {labels.tolist()}"
        )


# ---------------------------------------------------------------------------- synthetic masks
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("frame", ["retina", "letterbox"])
def test_ultralytics_prompt_parity_synthetic(oracle: object, seed: int, frame: str) -> None:
    orig_hw = (90, 120)
    frame_hw = orig_hw if frame == "retina" else (96, 128)  # letterbox frame: padding + scale
    dense = random_dense_masks(14, frame_hw, seed, with_empty=False)
    dense = dense[dense.flatten(1).any(1)]
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (*orig_hw, 3), dtype=torch.uint8, generator=gen)
    boxes = tight_boxes(dense)
    if frame != "retina":  # boxes are always original pixels
        boxes = boxes * torch.tensor([orig_hw[1] / frame_hw[1], orig_hw[0] / frame_hw[0]] * 2)
    ul = _ul_results(dense, boxes, rgb)
    if frame != "retina":
        _resize_agreement(ul, _ours(ul, rgb), "synthetic letterbox")
    ours = _ours(ul, rgb, frame="original")
    _check_boxes(
        oracle, ul, ours, _random_boxes(24, orig_hw, gen, boxes), f"synthetic {frame} boxes"
    )
    _check_points(oracle, ul, ours, gen, f"synthetic {frame} points")


def test_ultralytics_box_ties_and_duplicates(oracle: object) -> None:
    dense = torch.zeros((4, 40, 50), dtype=torch.bool)
    dense[0, 5:15, 5:15] = True
    dense[1, 5:15, 5:15] = True  # identical to 0: the tie goes to the first
    dense[2, 20:35, 20:45] = True
    dense[3, 0:40, 0:50] = True
    rgb = torch.zeros((40, 50, 3), dtype=torch.uint8)
    ul = _ul_results(dense, tight_boxes(dense), rgb)
    ours = _ours(ul, rgb)
    boxes = [[5, 5, 15, 15], [20, 20, 45, 35], [5, 5, 15, 15], [45, 0, 50, 3]]
    expected = _oracle_rows(oracle, ul, bboxes=boxes)
    got = prompt(ours, boxes=boxes, box_rule="ultralytics", output="subset")
    assert got.source_ids.tolist() == expected == [0, 2, 3]
    per_box = prompt(ours, boxes=boxes, box_rule="ultralytics")  # our default layout
    assert per_box.source_ids.tolist() == [0, 2, 0, 3]


def test_ultralytics_box_overlapping_no_mask(oracle: object) -> None:
    """A box far from every mask: the oracle returns mask 0 (argmax over all-zero IoUs); so does
    box_no_match="reference", while the default gives an empty row in the box's place."""
    dense = torch.zeros((3, 40, 50), dtype=torch.bool)
    dense[0, 20:35, 20:45] = True
    dense[1, 0:10, 0:10] = True
    dense[2, 2:8, 2:8] = True
    rgb = torch.zeros((40, 50, 3), dtype=torch.uint8)
    ul = _ul_results(dense, tight_boxes(dense), rgb)
    ours = _ours(ul, rgb)
    far, near = [45, 0, 50, 12], [0, 0, 9, 9]
    assert _oracle_rows(oracle, ul, bboxes=far) == [0]
    boxes = [far, near, far]
    picks = [_oracle_rows(oracle, ul, bboxes=b)[0] for b in boxes]
    reference = prompt(ours, boxes=boxes, box_rule="ultralytics", box_no_match="reference")
    assert reference.source_ids.tolist() == picks == [0, 1, 0]
    assert reference.prompt_scores[[0, 2]].tolist() == [0.0, 0.0]
    default = prompt(ours, boxes=boxes, box_rule="ultralytics")
    assert default.source_ids.tolist() == [-1, 1, -1]
    subset = prompt(ours, boxes=boxes, box_rule="ultralytics", output="subset")
    assert subset.source_ids.tolist() == _oracle_rows(oracle, ul, bboxes=boxes) == [0, 1]
    # no masks at all: the oracle passes the empty result through; we give empty rows per box
    empty_ul = _ul_results(dense[:0], torch.zeros((0, 4)), rgb)
    (theirs,) = oracle.prompt([empty_ul], bboxes=boxes)
    assert len(theirs) == 0
    assert len(prompt(ours[[]], boxes=boxes, box_rule="ultralytics", output="subset")) == 0
    for no_match in ("empty", "reference"):
        rows = prompt(ours[[]], boxes=boxes, box_rule="ultralytics", box_no_match=no_match)
        assert rows.source_ids.tolist() == [-1, -1, -1]


# ---------------------------------------------------------------------------- real photos
def _downscale(rgb: torch.Tensor, long_side: int = 800) -> torch.Tensor:
    """Photos are 1-3 MP; prompt rules are size-independent, so keep the (dense) oracle fast."""
    from PIL import Image

    h, w = rgb.shape[:2]
    r = long_side / max(h, w)
    if r >= 1:
        return rgb
    small = Image.fromarray(rgb.numpy()).resize((round(w * r), round(h * r)), Image.BILINEAR)
    return torch.from_numpy(np.asarray(small).copy())


@pytest.fixture(scope="module")
def everything() -> Callable[[str, bool], tuple[object, torch.Tensor]]:
    """(photo, retina) -> (the oracle's everything result, RGB image), from a calibrated
    random-weight FastSAM-s checkpoint at imgsz 640 (cached per module)."""
    pytest.importorskip("ultralytics", reason="the oracle extra: pip install -e '.[oracle]'")
    from tests.support import oracle_models

    oracle_models.import_oracle()
    from ultralytics import FastSAM

    from fastsam_core.io import load_image

    model = FastSAM(str(oracle_models.calibrated_oracle_checkpoint("s", 16)))
    cache: dict[tuple[str, bool], tuple[object, torch.Tensor]] = {}

    def get(name: str, retina: bool) -> tuple[object, torch.Tensor]:
        if (name, retina) not in cache:
            rgb = _downscale(load_image(photo(name)).image)
            bgr = np.ascontiguousarray(rgb.numpy()[:, :, ::-1])
            threads = torch.get_num_threads()
            (res,) = model.predict(
                bgr, device="cpu", imgsz=640, conf=0.4, iou=0.9, retina_masks=retina, verbose=False
            )
            torch.set_num_threads(threads)
            if len(res) == 0:
                pytest.skip(f"no detections on {name}")
            cache[(name, retina)] = (res, rgb)
        return cache[(name, retina)]

    return get


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "letterbox"])
@pytest.mark.parametrize("name", PHOTOS)
def test_ultralytics_prompt_parity_photos(
    oracle: object, everything: Callable, name: str, retina: bool
) -> None:
    ul, rgb = everything(name, retina)
    if not retina:
        _resize_agreement(ul, _ours(ul, rgb), "photos letterbox")
    ours = _ours(ul, rgb, frame="original")
    gen = torch.Generator().manual_seed(PHOTOS.index(name))
    key = "retina" if retina else "letterbox"
    boxes = _random_boxes(10, ours.orig_hw, gen, ours.boxes)
    _check_boxes(oracle, ul, ours, boxes, f"photos {key} boxes (ultralytics)")
    _check_points(oracle, ul, ours, gen, f"photos {key} points (ultralytics)")


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "letterbox"])
@pytest.mark.parametrize("name", PHOTOS[:3])
def test_ultralytics_text_crops_and_selection(
    oracle: object, everything: Callable, name: str, retina: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oracle's CLIP inputs equal our crops; with the same similarities, the same masks."""
    ul, rgb = everything(name, retina)
    ours = _ours(ul, rgb, frame="original")
    captured: list[list[np.ndarray]] = []
    gen = torch.Generator().manual_seed(3)

    def fake_clip(images: list, texts: list[str]) -> torch.Tensor:
        captured.append([np.asarray(im) for im in images])
        return torch.rand(len(texts), len(images), generator=gen)  # (M, N)

    monkeypatch.setattr(oracle, "_clip_inference", fake_clip, raising=False)
    texts = ["a dog", "a cat", "a tree"]
    expected = _oracle_rows(oracle, ul, texts=texts)
    crops, _ = masked_crops(rgb, ours.masks_original("bilinear"), ours.boxes)
    assert len(captured) == 1 and len(captured[0]) == len(crops)
    for theirs, mine in zip(captured[0], crops):
        assert np.array_equal(theirs, mine)

    class SameScores:  # replays the similarities the oracle saw
        def similarity(self, crops: list, texts: list[str]) -> torch.Tensor:
            return torch.rand(len(texts), len(crops), generator=torch.Generator().manual_seed(3))

    got = prompt(ours, texts=texts, clip_scorer=SameScores(), output="subset")  # type: ignore[arg-type]
    assert got.source_ids.tolist() == expected
    _count("photos text (ultralytics, same similarities)", got.source_ids.tolist() == expected)


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "letterbox"])
@pytest.mark.parametrize("name", PHOTOS)
def test_official_prompt_rules_photos(everything: Callable, name: str, retina: bool) -> None:
    """Spec §4.1 box and point rules (tests/support/official_prompts.py) on the same masks."""
    ul, rgb = everything(name, retina)
    ours = _ours(ul, rgb)
    masks = ul.masks.data.cpu().float()  # (N, h, w): orig (retina) or letterbox frame
    gen = torch.Generator().manual_seed(10 + PHOTOS.index(name))
    key = "retina" if retina else "letterbox"
    height, width = ours.orig_hw
    boxes = _random_boxes(16, ours.orig_hw, gen, ours.boxes)
    boxes = torch.minimum(
        boxes.clamp(min=0), torch.tensor([width, height] * 2, dtype=torch.float64)
    )
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]  # the repo asserts x2, y2 != 0
    per_box, dedup = official_box_prompt(masks, boxes.tolist(), ours.orig_hw)
    match = select_boxes(ours.masks, boxes, ours.orig_hw, "official")
    for mine, theirs in zip(match.best.tolist(), per_box):
        _count(f"photos {key} boxes (official)", mine == theirs)
    assert match.best.tolist() == per_box
    assert sorted(dedup) == sorted(set(match.best.tolist()))
    rows = prompt(ours, boxes=boxes, box_no_match="reference")  # one row per box, ALL boxes
    assert rows.source_ids.tolist() == per_box
    default = prompt(ours, boxes=boxes)
    hit = match.indices >= 0
    assert default.source_ids.tolist() == match.indices.tolist()
    assert default.source_ids[hit].tolist() == rows.source_ids[hit].tolist()
    for trial in range(10):
        num = 1 + trial % 4
        pts = (torch.rand(num, 2, generator=gen) * torch.tensor([width, height])).long()  # CLI ints
        labels = (torch.rand(num, generator=gen) < 0.6).long()
        expected = official_point_prompt(
            masks.bool().numpy(), pts.long().tolist(), labels.tolist(), ours.orig_hw
        )
        got = prompt(ours, points=pts, labels=labels, point_mode="union")
        mine = got.masks.dense(0) if len(got) else torch.zeros(masks.shape[1:], dtype=torch.bool)
        agree = torch.equal(mine, torch.from_numpy(expected))
        _count(f"photos {key} points (official union)", agree)
        assert agree


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", PHOTOS[:3])
def test_predictor_prompts_end_to_end(
    everything: Callable, name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`Predictor(..., postprocess="ultralytics")(image, boxes=, points=, output="subset")` vs
    ultralytics `FastSAM(...)(image, bboxes=, points=, labels=)`: same checkpoint, same pixels."""
    from fastsam_weights_convert import convert_file
    from ultralytics import FastSAM

    from fastsam_core import Predictor
    from tests.support import oracle_models

    checkpoint = oracle_models.calibrated_oracle_checkpoint("s", 16)
    weights = tmp_path_factory.mktemp("e2e") / "s.safetensors"
    convert_file(checkpoint, weights)
    ul, rgb = everything(name, True)
    gen = torch.Generator().manual_seed(20 + PHOTOS.index(name))
    h0, w0 = rgb.shape[:2]
    boxes = _random_boxes(4, (h0, w0), gen, ul.boxes.xyxy.cpu())
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w0, h0] * 2, dtype=torch.float64))
    points = (torch.rand(3, 2, generator=gen) * torch.tensor([w0, h0])).floor()
    labels = [1, 1, 0]
    bgr = np.ascontiguousarray(rgb.numpy()[:, :, ::-1])
    threads = torch.get_num_threads()
    (theirs,) = FastSAM(str(checkpoint)).predict(
        bgr, device="cpu", imgsz=640, conf=0.4, iou=0.9, retina_masks=True, verbose=False,
        bboxes=boxes.tolist(), points=points.tolist(), labels=labels,
    )  # fmt: skip
    torch.set_num_threads(threads)
    predictor = Predictor(weights, imgsz=640, postprocess="ultralytics", fast=False)
    (mine,) = predictor(rgb, boxes=boxes, points=points, labels=labels, output="subset")
    assert predictor(rgb)[0].boxes.shape == ul.boxes.xyxy.shape  # same everything-mode result
    assert mine.boxes.shape == theirs.boxes.xyxy.shape
    # same rows selected; coordinates carry the network's fp32 differences (<= 0.01 px measured)
    torch.testing.assert_close(mine.boxes, theirs.boxes.xyxy.cpu(), atol=1e-2, rtol=0)
    _count("end to end Predictor vs ultralytics FastSAM (boxes + points)", True)
