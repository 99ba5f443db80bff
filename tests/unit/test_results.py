"""Results: validation, indexing, sorting, frame mapping and file exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastsam_core import CompactMasks, Results
from fastsam_core.results import PromptResults, results_from_dense

mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools checks the RLE export")

ORIG_HW = (45, 60)


def make_results(with_image: bool = True) -> tuple[Results, torch.Tensor]:
    """Four masks in the original frame, scores not in area order, one tie in area."""
    masks = torch.zeros((4, *ORIG_HW), dtype=torch.bool)
    masks[0, 5:30, 10:50] = True  # area 1000
    masks[1, 0:10, 0:10] = True  # area 100, touches the corner
    masks[2, 40:45, 40:60] = True  # area 100, touches two borders
    masks[3, 20:22, 5:8] = True  # area 6
    masks[0, 12:14, 20:30] = False  # a slit
    boxes = torch.tensor([[10, 5, 50, 30], [0, 0, 10, 10], [40, 40, 60, 45], [5, 20, 8, 22]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.8])
    image = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, size=(*ORIG_HW, 3), dtype=np.uint8)
    )
    results = results_from_dense(
        masks,
        boxes.float(),
        scores,
        ORIG_HW,
        path="photo.jpg",
        orig_image=image if with_image else None,
    )
    return results, masks


def letterbox_results() -> tuple[Results, torch.Tensor, tuple[int, int, int, int]]:
    """Masks in a 64x64 letterbox frame whose content window (top 8, height 48) maps to 45x60."""
    g = torch.Generator().manual_seed(0)
    frame = torch.zeros((3, 64, 64), dtype=torch.bool)
    frame[0, 10:40, 5:30] = torch.rand((30, 25), generator=g) < 0.8
    frame[1, 8:20, 40:64] = True
    frame[2, 50:56, 0:10] = True  # partly in the bottom padding
    window = (8, 0, 48, 64)
    results = Results(
        masks=CompactMasks.from_dense(frame),
        boxes=torch.tensor([[6.0, 2.8, 37.5, 30.0], [50, 0, 60, 10], [0, 39, 12, 45]]),
        scores=torch.tensor([0.9, 0.8, 0.7]),
        class_ids=torch.zeros(3, dtype=torch.int64),
        orig_hw=ORIG_HW,
        mask_window=window,
        orig_image=torch.zeros((*ORIG_HW, 3), dtype=torch.uint8),
    )
    return results, frame, window


def test_validation_errors_name_the_problem() -> None:
    results, _ = make_results()
    with pytest.raises(ValueError, match=r"one row per mask \(4 masks\), got .*'scores': 3"):
        Results(results.masks, results.boxes, results.scores[:3], results.class_ids, ORIG_HW)
    with pytest.raises(ValueError, match=r"masks live in a \(45, 60\) frame but orig_hw is"):
        Results(results.masks, results.boxes, results.scores, results.class_ids, (90, 120))
    with pytest.raises(ValueError, match=r"orig_image must be a \(45, 60, 3\) uint8 RGB"):
        Results(
            results.masks,
            results.boxes,
            results.scores,
            results.class_ids,
            ORIG_HW,
            orig_image=torch.zeros((45, 60, 4), dtype=torch.uint8),
        )


def test_indexing_and_sorting() -> None:
    results, masks = make_results()
    assert len(results) == 4
    assert torch.equal(results.dense_masks, masks)
    assert results.areas.tolist() == [980, 100, 100, 6]
    one = results[2]
    assert len(one) == 1 and torch.equal(one.dense_masks, masks[2:3])
    assert one.boxes.tolist() == [[40.0, 40.0, 60.0, 45.0]]
    sub = results[torch.tensor([True, False, True, False])]
    assert sub.scores.tolist() == pytest.approx([0.5, 0.7])
    assert len(results[1:3]) == 2 and results[[3, 0]].scores.tolist() == pytest.approx([0.8, 0.5])
    by_score = results.sort()
    assert by_score.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.5])
    assert torch.equal(by_score.dense_masks, masks[[1, 3, 2, 0]])
    by_area = results.sort(by="area")
    assert by_area.areas.tolist() == [980, 100, 100, 6]
    assert by_area.scores.tolist() == pytest.approx([0.5, 0.9, 0.7, 0.8])  # tie keeps order
    ascending = results.sort(by="area", descending=False)
    assert ascending.areas.tolist() == [6, 100, 100, 980]
    with pytest.raises(ValueError, match="sort by must be 'score' or 'area', got 'iou'"):
        results.sort(by="iou")  # type: ignore[arg-type]


def test_letterbox_masks_map_to_the_original_frame() -> None:
    results, frame, (top, left, height, width) = letterbox_results()
    assert results.dense_masks.shape == (3, 64, 64)
    window = frame[:, top : top + height, left : left + width].float()[:, None]
    nearest = F.interpolate(window, size=ORIG_HW, mode="nearest")[:, 0] > 0.5
    assert torch.equal(results.masks_original("nearest").to_dense(), nearest)
    # Bilinear: pixels whose exact value is 0.5 (e.g. halfway between a 0 and a 1) are decided
    # by float32 rounding order, which differs between ATen's kernels; only those may differ.
    value = F.interpolate(window.double(), size=ORIG_HW, mode="bilinear", align_corners=False)
    value = value[:, 0]
    differs = results.masks_original("bilinear").to_dense() != (value > 0.5)
    assert bool(((value[differs] - 0.5).abs() < 1e-6).all())
    assert results.masks_original() is results.masks_original()  # cached
    rles = results.to_rle()
    expected = results.masks_original().to_dense().numpy()
    for rle, mask in zip(rles, expected):
        assert rle["size"] == list(ORIG_HW)
        assert np.array_equal(mask_api.decode(rle).astype(bool), mask)


def test_rle_and_json_records(tmp_path: Path) -> None:
    results, masks = make_results()
    for rle, mask in zip(results.to_rle(), masks.numpy()):
        reference = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["counts"] == reference["counts"].decode("ascii")
    doc = results.to_json()
    assert doc["image"] == {"path": "photo.jpg", "height": 45, "width": 60}
    records = doc["annotations"]
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    assert records[2]["bbox"] == [40.0, 40.0, 20.0, 5.0]
    assert records[2]["bbox_xyxy"] == [40.0, 40.0, 60.0, 45.0]
    assert records[0]["area"] == int(mask_api.area(records[0]["segmentation"])) == 980
    assert records[1]["score"] == pytest.approx(0.9)
    assert records[3]["category_id"] == 0 and records[3]["category_name"] == "object"
    path = results.save_json(tmp_path / "out" / "photo.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))


def test_polygons_cover_each_mask() -> None:
    results, masks = make_results()
    polygons = results.to_polygons()
    assert [len(p) for p in polygons] == [1, 1, 1, 1]
    for polys, mask in zip(polygons, masks.numpy()):
        xs, ys = polys[0][:, 0].astype(int), polys[0][:, 1].astype(int)
        assert mask[ys, xs].all()


def test_files_are_never_overwritten_silently(tmp_path: Path) -> None:
    results, _ = make_results()
    writers = {
        "a.json": results.save_json,
        "a.png": results.save_overlay,
        "a.npz": results.save_npz,
    }
    for name, write in writers.items():
        target = tmp_path / name
        target.write_bytes(b"keep me")
        with pytest.raises(FileExistsError, match=f"{name} already exists; pass overwrite=True"):
            write(target)
        assert target.read_bytes() == b"keep me"
        write(target, overwrite=True)
        assert target.read_bytes() != b"keep me"


def test_overlay_png_in_the_original_frame(tmp_path: Path) -> None:
    results, masks = make_results()
    path = results.save_overlay(tmp_path / "overlay.png")
    png = np.asarray(Image.open(path))
    image = results.orig_image.numpy()  # type: ignore[union-attr]
    outside = ~masks.any(dim=0).numpy()
    assert png.shape == (*ORIG_HW, 3)
    assert np.array_equal(png[outside], image[outside])
    assert not np.array_equal(png[~outside], image[~outside])
    letterboxed, _, _ = letterbox_results()
    assert np.asarray(Image.open(letterboxed.save_overlay(tmp_path / "lb.png"))).shape == (
        *ORIG_HW,
        3,
    )
    no_image, _ = make_results(with_image=False)
    with pytest.raises(ValueError, match="plot and save_overlay need orig_image"):
        no_image.save_overlay(tmp_path / "x.png")


@pytest.mark.parametrize("which", ["original", "letterbox", "empty"])
def test_npz_round_trip_packs_bits(tmp_path: Path, which: str) -> None:
    if which == "original":
        results, _ = make_results()
    elif which == "letterbox":
        results, _, _ = letterbox_results()
    else:
        results = make_results()[0][[]]
    path = results.save_npz(tmp_path / "r.npz")
    with np.load(path) as f:
        assert f["mask_bits"].dtype == np.uint8
        assert f["mask_bits"].size == (results.masks.data.numel() + 7) // 8
        assert f["boxes"].shape == (len(results), 4)
    loaded = Results.load_npz(path)
    assert torch.equal(loaded.dense_masks, results.dense_masks)
    assert torch.equal(loaded.boxes, results.boxes) and torch.equal(loaded.scores, results.scores)
    assert loaded.mask_window == results.mask_window and loaded.path == results.path
    assert loaded.orig_hw == results.orig_hw and loaded.names == results.names


def test_empty_results_export(tmp_path: Path) -> None:
    results = make_results()[0][[]]
    assert len(results) == 0 and results.dense_masks.shape == (0, *ORIG_HW)
    assert results.to_json()["annotations"] == [] and results.to_rle() == []
    png = np.asarray(Image.open(results.save_overlay(tmp_path / "empty.png")))
    assert np.array_equal(png, results.orig_image.numpy())  # type: ignore[union-attr]


def test_prompt_results_keep_their_columns_aligned(tmp_path: Path) -> None:
    results, masks = make_results()
    rows = PromptResults.wrap(
        results,
        prompt_scores=torch.tensor([0.1, 0.2, 0.3, 0.4]),
        prompt_ids=torch.tensor([0, 0, 1, 1]),
        source_ids=torch.tensor([3, 2, 1, 0]),
        prompt_kinds=("box", "box", "text", "text"),
    )
    assert isinstance(rows, Results) and rows.masks is results.masks  # no copy
    sub = rows[[2, 0]]
    assert isinstance(sub, PromptResults)
    assert sub.prompt_scores.tolist() == pytest.approx([0.3, 0.1])
    assert sub.prompt_ids.tolist() == [1, 0] and sub.source_ids.tolist() == [1, 3]
    assert sub.prompt_kinds == ("text", "box")
    assert torch.equal(sub.dense_masks, masks[[2, 0]])
    defaults = PromptResults.wrap(results)
    assert defaults.prompt_ids.tolist() == [-1] * 4 and defaults.prompt_kinds == ("subset",) * 4
    assert torch.equal(defaults.prompt_scores, results.scores)
    with pytest.raises(ValueError, match=r"one entry per mask \(4 masks\)"):
        PromptResults.wrap(results, prompt_ids=torch.tensor([0, 1]))
    loaded = Results.load_npz(sub.save_npz(tmp_path / "rows.npz"))
    assert type(loaded) is Results and torch.equal(loaded.dense_masks, masks[[2, 0]])


# ---------------------------------------------------------------------- issue 13: records, plots
def test_sam_style_records_tight_bbox_and_prompt_metadata() -> None:
    results, _ = make_results()
    results.boxes[0] = torch.tensor([8.0, 3.0, 52.0, 33.0])  # detector box looser than the mask
    doc = results.to_json()
    first = doc["annotations"][0]
    assert first["bbox"] == [10, 5, 40, 25]  # mask pixels x 10..49, y 5..29
    assert first["det_bbox"] == [8.0, 3.0, 44.0, 30.0]
    assert first["bbox_xyxy"] == [8.0, 3.0, 52.0, 33.0]
    assert first["score"] == first["predicted_iou"] == pytest.approx(0.5)
    assert torch.equal(results.predicted_iou, results.scores)
    assert first["stability_score"] is None  # built from dense masks: no logits
    assert first["point_coords"] == [[30.0, 18.0]]  # no anchors: the detector box centre
    assert first["crop_box"] == [0, 0, 60, 45]
    with_extras = Results(
        results.masks, results.boxes, results.scores, results.class_ids, ORIG_HW,
        stability_scores=torch.tensor([0.9, 0.8, 0.7, 0.6]),
        point_coords=torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]),
    )  # fmt: skip
    sub = with_extras[[3, 1]]
    assert sub.stability_scores.tolist() == pytest.approx([0.6, 0.8])  # type: ignore[union-attr]
    assert sub.to("cpu").point_coords.tolist() == [[7.0, 8.0], [3.0, 4.0]]  # type: ignore[union-attr]
    records = sub.to_json()["annotations"]
    assert [r["point_coords"] for r in records] == [[[7.0, 8.0]], [[3.0, 4.0]]]
    assert [r["stability_score"] for r in records] == pytest.approx([0.6, 0.8])
    with pytest.raises(ValueError, match="'stability_scores': 2"):
        Results(
            results.masks, results.boxes, results.scores, results.class_ids, ORIG_HW,
            stability_scores=torch.zeros(2),
        )  # fmt: skip
    prompted = PromptResults.wrap(
        with_extras,
        prompt_scores=torch.tensor([0.1, 0.2, 0.3, 0.4]),
        prompt_ids=torch.tensor([0, 1, -1, 0]),
        prompt_kinds=("box", "box", "point", "text"),
    )
    rows = prompted[[2, 3]].to_json()["annotations"]
    assert [(r["prompt_kind"], r["prompt_id"], r["source_id"]) for r in rows] == [
        ("point", -1, -1),
        ("text", 0, -1),
    ]
    assert [r["prompt_score"] for r in rows] == pytest.approx([0.3, 0.4])
    assert rows[0]["stability_score"] == pytest.approx(0.7)


def test_plot_options_draw_boxes_labels_and_prompt_markers() -> None:
    from fastsam_core.prompts.prompt_set import make_prompts

    results, masks = make_results()
    plain = results.plot()
    assert plain.shape == (*ORIG_HW, 3) and plain.dtype == np.uint8
    no_contours = results.plot(contours=False, alpha=1.0)
    colours = np.unique(no_contours[masks[3].numpy()], axis=0)
    assert len(colours) == 1  # alpha 1, no border: the mask is one flat colour
    boxed = results.plot(boxes=True, contours=False)
    x0, y0, x1 = 10, 5, 50  # mask 0's detector box (10, 5, 50, 30): a 2 px outline in its colour
    edge = boxed[y0 : y0 + 2, x0 + 5 : x1 - 5]
    assert (edge == no_contours[y0 + 3, x0 + 5]).all()  # the mask's own colour, opaque
    assert not np.array_equal(edge, results.plot(contours=False)[y0 : y0 + 2, x0 + 5 : x1 - 5])
    labelled = results.plot(labels=True)
    assert not np.array_equal(labelled, plain)
    prompts = make_prompts(boxes=[[2, 2, 58, 43]], points=[[30, 20]], labels=[0])
    marked = results.plot(prompts=prompts, contours=False)
    assert (marked[2, 10:50] == 255).all()  # white prompt box top edge
    assert marked[20, 30].tolist() == [220, 0, 0]  # background point: red
    untouched = ~masks.any(0).numpy()
    untouched[:5], untouched[-5:], untouched[:, :5], untouched[:, -5:] = False, False, False, False
    untouched[14:27, 24:37] = False  # around the point
    assert np.array_equal(marked[untouched], results.orig_image.numpy()[untouched])  # type: ignore[union-attr]


def test_to_supervision_detections() -> None:
    results, masks = make_results()
    sv = pytest.importorskip("supervision")
    detections = results.to_supervision()
    assert isinstance(detections, sv.Detections) and len(detections) == 4
    assert np.array_equal(detections.mask, masks.numpy())
    assert np.allclose(detections.xyxy, results.boxes.numpy())
    assert detections.confidence.tolist() == pytest.approx([0.5, 0.9, 0.7, 0.8])
    assert list(detections.data["class_name"]) == ["object"] * 4
    annotated = sv.MaskAnnotator().annotate(results.orig_image.numpy().copy(), detections)  # type: ignore[union-attr]
    assert annotated.shape == (*ORIG_HW, 3)


def test_to_supervision_without_supervision_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "supervision", None)  # import raises ImportError
    results, _ = make_results()
    with pytest.raises(ImportError, match="pip install supervision"):
        results.to_supervision()


def test_image_error_is_a_one_line_report() -> None:
    from fastsam_core.results import ImageError

    err = ImageError("a/b.jpg", "cannot read image")
    assert str(err) == "a/b.jpg: cannot read image" and err.path == "a/b.jpg"
