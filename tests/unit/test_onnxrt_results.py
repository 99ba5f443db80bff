"""The torch-free runtime's masks and results against the PyTorch ones on the same data (issue 14).

`NumpyCompactMasks` (and `onnxrt.resample`) is checked method by method against `CompactMasks`
(and `compact_resample`) on random masks; `NumpyResults` / `NumpyPromptResults` against
`Results` / `PromptResults`: identical JSON, RLE, polygons, overlay PNG bytes and npz files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.compact_resample import resize_masks
from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.onnxrt.resample import resize_masks as resize_masks_np
from fastsam_core.onnxrt.results import NumpyPromptResults, NumpyResults
from fastsam_core.results import PromptResults, Results

FRAME = (37, 53)


def random_dense(n: int, hw: tuple[int, int] = FRAME, seed: int = 0) -> np.ndarray:
    """(n, H, W) bool blobs of random size and density; mask 1 empty, one touching the border."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n, *hw), dtype=bool)
    for i in range(n):
        y0, x0 = rng.integers(0, hw[0] - 2), rng.integers(0, hw[1] - 2)
        y1, x1 = rng.integers(y0 + 1, hw[0] + 1), rng.integers(x0 + 1, hw[1] + 1)
        dense[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.uniform(0.3, 1.0)
    if n > 1:
        dense[1] = False
    if n > 2:
        dense[2, :, -3:] = True
    return dense


def both(dense: np.ndarray) -> tuple[CompactMasks, NumpyCompactMasks]:
    return CompactMasks.from_dense(torch.from_numpy(dense)), NumpyCompactMasks.from_dense(dense)


def as_np(value: Any) -> Any:
    """Tensors / masks / lists -> comparable numpy values."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, (CompactMasks, NumpyCompactMasks)):
        return [as_np(value.regions), as_np(value.data), as_np(value.offsets), value.image_hw]
    if isinstance(value, (list, tuple)):
        return [as_np(v) for v in value]
    return value


def assert_same(a: Any, b: Any) -> None:
    a, b = as_np(a), as_np(b)
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
        return
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, (a.dtype, getattr(b, "dtype", b))
        np.testing.assert_array_equal(a, b)
        return
    assert a == b


BOXES_FEW = np.array([[0, 0, 10, 10], [5, 3, 60, 20], [20, 20, 20, 30], [-4, 30, 9, 50]])
BOXES_MANY = np.random.default_rng(1).integers(-5, 60, size=(20, 4))
POINTS = np.array([[0, 0], [10, 5], [52, 36], [53, 10], [-1, 4], [30, 20]])
IDX = [0, 2, 2, 1]

# (method name, call) pairs: each call gets one mask set and returns a comparable value.
METHODS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("len", lambda m, xp: len(m)),
    ("getitem_int", lambda m, xp: m[-1]),
    ("getitem_slice", lambda m, xp: m[1::2]),
    ("getitem_list", lambda m, xp: m[IDX[: len(m)] if len(m) > 2 else []]),
    ("getitem_bool", lambda m, xp: m[xp.asarray(np.arange(len(m)) % 2 == 0)]),
    ("crops", lambda m, xp: m.crops()),
    ("areas", lambda m, xp: m.areas()),
    ("tight_boxes", lambda m, xp: m.tight_boxes()),
    ("contains_points", lambda m, xp: m.contains_points(xp.asarray(POINTS))),
    ("box_overlap_few", lambda m, xp: m.box_overlap(xp.asarray(BOXES_FEW))),
    ("box_overlap_many", lambda m, xp: m.box_overlap(xp.asarray(BOXES_MANY))),
    ("to_dense", lambda m, xp: m.to_dense()),
    ("union", lambda m, xp: m.union()),
    ("dense", lambda m, xp: m.dense(len(m) - 1)),
    ("cat", lambda m, xp: type(m).cat([m, m[[len(m) - 1, 0]]])),
    ("empty", lambda m, xp: type(m).empty(m.image_hw)),
    ("device", lambda m, xp: str(m.to("cpu").device)),
]


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("name,call", METHODS, ids=[name for name, _ in METHODS])
def test_numpy_compact_masks_equal_compact_masks(
    name: str, call: Callable[[Any, Any], Any], n: int
) -> None:
    dense = random_dense(n, seed=n)
    torch_masks, np_masks = both(dense)
    assert_same(torch_masks, np_masks)  # the layout itself
    assert_same(call(torch_masks, torch), call(np_masks, np))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("window,out_hw", [((3, 0, 30, 53), (61, 107)), (None, (20, 17))])
def test_resize_masks_equal_compact_resample(
    mode: str, window: tuple[int, int, int, int] | None, out_hw: tuple[int, int]
) -> None:
    torch_masks, np_masks = both(random_dense(6, seed=5))
    expected = resize_masks(torch_masks, out_hw, window, mode)  # type: ignore[arg-type]
    assert_same(expected, resize_masks_np(np_masks, out_hw, window, mode))  # type: ignore[arg-type]


def test_from_crops_clips_like_compact_masks() -> None:
    regions = np.array([[-3, -2, 5, 4], [50, 30, 60, 40], [60, 0, 70, 5]])
    crops = [
        np.random.default_rng(i).random((r[3] - r[1], r[2] - r[0])) < 0.5
        for i, r in enumerate(regions)
    ]
    expected = CompactMasks.from_crops(
        torch.from_numpy(regions), [torch.from_numpy(c) for c in crops], FRAME
    )
    assert_same(expected, NumpyCompactMasks.from_crops(regions, crops, FRAME))


def test_numpy_compact_masks_errors() -> None:
    with pytest.raises(TypeError, match="regions must be int64"):
        NumpyCompactMasks(
            np.zeros((1, 4), np.int32), np.zeros(0, bool), np.zeros(2, np.int64), FRAME
        )
    with pytest.raises(ValueError, match=r"offsets\[-1\] \(3\) must equal data.size \(0\)"):
        NumpyCompactMasks(np.zeros((1, 4), np.int64), np.zeros(0, bool), np.array([0, 3]), FRAME)
    with pytest.raises(IndexError, match="out of range for 2 masks"):
        NumpyCompactMasks.from_dense(random_dense(2))[5]
    with pytest.raises(ValueError, match="numpy masks live on the cpu"):
        NumpyCompactMasks.empty(FRAME).to("cuda")


# ---------------------------------------------------------------------- results
def result_pair(window: bool, prompt_rows: bool) -> tuple[Results, NumpyResults]:
    """The same rows as a PyTorch and a runtime result (letterbox-frame masks with `window`)."""
    rng = np.random.default_rng(3)
    orig_hw = (29, 41) if window else FRAME
    dense = random_dense(6, FRAME, seed=7)
    fields: dict[str, Any] = {
        "boxes": rng.uniform(0, 29, size=(6, 4)).astype(np.float32).cumsum(1),
        "scores": rng.uniform(0.3, 1, size=6).astype(np.float32),
        "class_ids": np.array([0, 0, 1, 0, 1, 0]),
        "orig_hw": orig_hw,
        "names": ("object", "thing"),
        "path": "photo.jpg",
        "mask_window": (4, 2, 30, 50) if window else None,
        "stability_scores": rng.uniform(0, 1, size=6).astype(np.float32),
        "point_coords": rng.uniform(0, 29, size=(6, 2)).astype(np.float32),
        "frame": 12,  # a video frame: carried by indexing and sorting
    }
    image = rng.integers(0, 256, size=(*orig_hw, 3), dtype=np.uint8)
    torch_fields = {
        k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in fields.items()
    }
    torch_masks, np_masks = both(dense)
    ours = Results(masks=torch_masks, orig_image=torch.from_numpy(image), **torch_fields)
    theirs = NumpyResults(masks=np_masks, orig_image=image, **fields)
    if prompt_rows:
        columns = {
            "prompt_scores": rng.uniform(0, 1, size=6).astype(np.float32),
            "prompt_ids": np.array([0, 1, -1, -1, 2, 0]),
            "source_ids": np.array([3, -1, 2, 2, 0, 1]),
            "prompt_kinds": ("box", "box", "point", "point", "box", "box"),
        }
        t_columns = {
            k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in columns.items()
        }
        return PromptResults.wrap(ours, **t_columns), NumpyPromptResults.wrap(theirs, **columns)
    return ours, theirs


RESULT_VIEWS: list[tuple[str, Callable[[Any], Any]]] = [
    ("len", len),
    ("frame", lambda r: (r.frame, r[[2, 1]].frame, r.sort("area").frame)),
    ("boxes", lambda r: r.boxes),
    ("areas", lambda r: r.areas),
    ("dense_masks", lambda r: r.dense_masks),
    ("masks_original_bilinear", lambda r: r.masks_original("bilinear")),
    ("getitem", lambda r: r[[4, 0, 0]].to_json()),
    ("getitem_bool", lambda r: r[np.array([True, False] * 3)].to_json()),
    ("sort_score", lambda r: r.sort().to_json()),
    ("sort_area_ascending", lambda r: r.sort("area", descending=False).to_json()),
    ("to_json", lambda r: r.to_json()),
    ("to_rle", lambda r: r.to_rle()),
    ("to_polygons", lambda r: r.to_polygons()),
    ("to_polygon_rings", lambda r: r.to_polygon_rings()),
    ("plot", lambda r: r.plot(boxes=True, labels=True)),
]


@pytest.mark.parametrize("prompt_rows", [False, True], ids=["everything", "prompt_rows"])
@pytest.mark.parametrize("window", [False, True], ids=["retina", "letterbox_frame"])
@pytest.mark.parametrize("name,view", RESULT_VIEWS, ids=[name for name, _ in RESULT_VIEWS])
def test_numpy_results_equal_results(
    name: str, view: Callable[[Any], Any], window: bool, prompt_rows: bool
) -> None:
    ours, theirs = result_pair(window, prompt_rows)
    expected, got = view(ours), view(theirs)
    if name.startswith(("getitem", "sort", "to_json")):
        assert json.dumps(expected) == json.dumps(got)
    else:
        assert_same(expected, got)


@pytest.mark.parametrize("window", [False, True], ids=["retina", "letterbox_frame"])
def test_files_are_byte_identical_and_cross_readable(tmp_path: Path, window: bool) -> None:
    ours, theirs = result_pair(window, prompt_rows=True)
    for suffix, save in (("png", "save_overlay"), ("json", "save_json")):
        a = getattr(ours, save)(tmp_path / f"torch.{suffix}")
        b = getattr(theirs, save)(tmp_path / f"numpy.{suffix}")
        assert a.read_bytes() == b.read_bytes(), suffix
    ours.save_npz(tmp_path / "torch.npz")
    theirs.save_npz(tmp_path / "numpy.npz")
    with np.load(tmp_path / "torch.npz") as a, np.load(tmp_path / "numpy.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    back = Results.load_npz(tmp_path / "numpy.npz")  # the torch side reads the runtime's file
    assert_same(back.masks, ours.masks)
    assert json.dumps(back.to_json()["annotations"][0]["segmentation"]) == json.dumps(
        ours.to_rle()[0]
    )
    again = NumpyResults.load_npz(tmp_path / "torch.npz")
    assert_same(again.masks, theirs.masks)
    assert_same(again.boxes, theirs.boxes)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        theirs.save_npz(tmp_path / "numpy.npz")


def test_numpy_results_errors() -> None:
    _, theirs = result_pair(window=False, prompt_rows=False)
    with pytest.raises(ValueError, match=r"Results needs one row per mask \(6 masks\)"):
        NumpyResults(masks=theirs.masks, boxes=np.zeros((2, 4)), scores=theirs.scores,
                     class_ids=theirs.class_ids, orig_hw=FRAME)  # fmt: skip
    with pytest.raises(ValueError, match="pass mask_window"):
        NumpyResults(masks=theirs.masks, boxes=theirs.boxes, scores=theirs.scores,
                     class_ids=theirs.class_ids, orig_hw=(10, 10))  # fmt: skip
    with pytest.raises(ValueError, match="sort by must be 'score' or 'area'"):
        theirs.sort("size")  # type: ignore[arg-type]
