"""`OnnxPredictor` and `fastsam segment --model X.onnx` against the PyTorch `Predictor` (issue 14).

Parity on the bundled photos with the exported tiny checkpoint (`tests/support/onnx_graphs`):
same detections (paired by anchor point), boxes and scores within the graph's float tolerance,
mean mask IoU >= 0.99, the same box and point prompt rows, for both post-processing semantics and
retina on / off. Then the runtime in a subprocess where `import torch` raises (CLI and Python API),
and the one-line errors of bad graphs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastsam_core.onnxrt.predictor import OnnxPredictor
from fastsam_core.predictor import Predictor
from fastsam_core.results import Results
from tests.support.onnx_graphs import TINY_CHECKPOINT, GraphRecipe, exported_graph, foreign_graph
from tests.support.photos import photo, photo_paths

pytest.importorskip("onnxruntime", reason="the runtime tests need onnxruntime (the runtime extra)")

REPO = Path(__file__).resolve().parents[2]
IMGSZ = 256
# Graph vs eager network: onnxruntime's convolutions round differently from torch's; box
# coordinates in original pixels (x2.3 of the letterbox on these photos) measured within 5e-3.
BOX_TOL = 1e-2
SCORE_TOL = 1e-4
MIN_MEAN_IOU = 0.99
HEAVY = ("torch", "torchvision", "open_clip", "triton")


@cache
def graph(postprocess: str = "official", dynamic: bool = True) -> Path:
    return exported_graph(GraphRecipe(imgsz=IMGSZ, dynamic=dynamic, postprocess=postprocess))


@cache
def predictors(postprocess: str, retina: bool) -> tuple[OnnxPredictor, Predictor]:
    options = {"imgsz": IMGSZ, "postprocess": postprocess, "retina_masks": retina}
    runtime = OnnxPredictor(graph(postprocess), device="cpu", **options)
    return runtime, Predictor(str(TINY_CHECKPOINT), device="cpu", fast=False, **options)


@cache
def everything(postprocess: str, retina: bool, name: str) -> tuple[Any, Results]:
    """(runtime, torch) everything-mode results of one bundled photo."""
    runtime, torch_predictor = predictors(postprocess, retina)
    return runtime(photo(name))[0], torch_predictor(photo(name))[0]


def pair_rows(ours: Any, theirs: Results) -> list[tuple[int, int]]:
    """(runtime row, torch row) pairs: the same anchor point (unique per detection), then the
    closest box (score ties may order rows differently)."""
    key_a = np.concatenate([ours.point_coords, ours.boxes], 1)
    key_b = np.concatenate([theirs.point_coords.numpy(), theirs.boxes.numpy()], 1)
    pairs, used = [], np.zeros(len(key_a), dtype=bool)
    for i in range(len(key_b)):
        gap = np.where(used, np.inf, np.abs(key_a - key_b[i]).max(1))
        pairs.append((int(gap.argmin()), i))
        used[pairs[-1][0]] = True
    return pairs


def mask_ious(ours: Any, theirs: Results, pairs: list[tuple[int, int]]) -> np.ndarray:
    """IoU of each pair of masks in the original frame (two empty masks: 1)."""
    a, b = ours.masks_original().to_dense(), theirs.masks_original().to_dense().numpy()
    inter = np.array([np.count_nonzero(a[j] & b[i]) for j, i in pairs])
    union = np.array([np.count_nonzero(a[j] | b[i]) for j, i in pairs])
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "no_retina"])
@pytest.mark.parametrize("postprocess", ["official", "ultralytics"])
def test_everything_mode_matches_torch(postprocess: str, retina: bool) -> None:
    report, detections = [], 0
    for path in photo_paths():
        ours, theirs = everything(postprocess, retina, path.name)
        assert len(ours) == len(theirs), path.name
        assert ours.orig_hw == theirs.orig_hw and ours.mask_window == theirs.mask_window
        if not len(ours):
            continue
        pairs = pair_rows(ours, theirs)
        rows_a, rows_b = [j for j, _ in pairs], [i for _, i in pairs]
        np.testing.assert_array_equal(ours.point_coords[rows_a], theirs.point_coords[rows_b])
        box_gap = np.abs(ours.boxes[rows_a] - theirs.boxes[rows_b].numpy()).max()
        assert box_gap <= BOX_TOL, (path.name, box_gap)
        assert np.abs(ours.scores[rows_a] - theirs.scores[rows_b].numpy()).max() <= SCORE_TOL
        np.testing.assert_array_equal(ours.class_ids[rows_a], theirs.class_ids[rows_b])
        ious = mask_ious(ours, theirs, pairs)
        report.append((path.name, float(ious.mean()), float(ious.min()), float(box_gap)))
        detections += len(ours)
    assert detections >= 50, "the parity photos must give detections to compare"
    worst = min(report, key=lambda r: r[1])
    print(f"{postprocess} retina={retina}: worst image {worst}")  # mean IoU, min IoU, box gap
    assert worst[1] >= MIN_MEAN_IOU, report


PROMPTS: dict[str, dict[str, Any]] = {
    "boxes": {"boxes": [[20, 30, 300, 250], [350, 40, 590, 380], [0, 0, 5, 5]]},
    "boxes_reference": {"boxes": [[20, 30, 300, 250], [0, 0, 5, 5]], "box_no_match": "reference"},
    "points": {"points": [[120, 100], [400, 200], [300, 350]], "labels": [1, 1, 0]},
    "points_union": {"points": [[120, 100], [400, 200]], "point_mode": "union"},
    "subset": {"boxes": [[20, 30, 300, 250]], "points": [[400, 200]], "output": "subset"},
}


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "no_retina"])
@pytest.mark.parametrize("postprocess", ["official", "ultralytics"])
@pytest.mark.parametrize("case", list(PROMPTS))
def test_prompt_rows_match_torch(case: str, postprocess: str, retina: bool) -> None:
    runtime, torch_predictor = predictors(postprocess, retina)
    path = photo("coffee.jpg")
    same_row = {i: j for j, i in pair_rows(*everything(postprocess, retina, path.name))}
    ours, theirs = runtime(path, **PROMPTS[case])[0], torch_predictor(path, **PROMPTS[case])[0]
    assert len(ours) == len(theirs) > 0
    assert ours.prompt_kinds == theirs.prompt_kinds
    np.testing.assert_array_equal(ours.prompt_ids, theirs.prompt_ids.numpy())
    expected_sources = [same_row.get(i, -1) for i in theirs.source_ids.tolist()]
    assert ours.source_ids.tolist() == expected_sources
    assert np.abs(ours.boxes - theirs.boxes.numpy()).max() <= BOX_TOL
    rows = [(k, k) for k in range(len(ours))]
    assert mask_ious(ours, theirs, rows).mean() >= MIN_MEAN_IOU


def test_fixed_size_graph_and_its_errors(tmp_path: Path) -> None:
    fixed = OnnxPredictor(graph("official", dynamic=False), device="cpu")
    assert fixed.network.input_hw == (IMGSZ, IMGSZ) and fixed.options.imgsz == (IMGSZ, IMGSZ)
    results = fixed(photo("coffee.jpg"))[0]  # letterboxed to the full 256x256 input
    assert len(results) > 0 and results.orig_hw == (400, 600)
    with pytest.raises(ValueError, match=r"fixed-size graph for imgsz \(256, 256\), got imgsz"):
        fixed(photo("coffee.jpg"), imgsz=320)
    with pytest.raises(ValueError, match="^text prompts need the PyTorch install"):
        fixed(photo("coffee.jpg"), texts="a cup")


def test_stream_yields_results_and_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    runtime, _ = predictors("official", True)
    out = list(runtime.stream([photo("coffee.jpg"), broken, tmp_path / "missing.jpg"]))
    assert type(out[0]).__name__ == "NumpyResults" and len(out[0]) > 0
    assert [type(o).__name__ for o in out[1:]] == ["ImageError", "ImageError"]
    assert "broken.jpg" in str(out[1]) and "missing.jpg" in str(out[2])


def test_stream_video_frames_like_torch(tmp_path: Path) -> None:
    """`OnnxPredictor.stream(video, vid_stride=2)` decodes ahead through `io.images` like
    `Predictor.stream`: the same kept frames, each result carrying its frame index."""
    pytest.importorskip("av", reason="video sources need PyAV (the video extra)")
    from tests.support.videos import make_video

    clip = make_video(tmp_path / "clip.mp4", count=7)
    runtime, torch_predictor = predictors("official", True)
    ours = list(runtime.stream(clip, vid_stride=2, prefetch=1))
    theirs = list(torch_predictor.stream(clip, vid_stride=2))
    assert [type(r).__name__ for r in ours] == ["NumpyResults"] * 4
    assert [r.frame for r in ours] == [r.frame for r in theirs] == [0, 2, 4, 6]
    assert {r.path for r in ours} == {str(clip)} and ours[0].orig_hw == (120, 160)
    assert [len(r) for r in ours] == [len(r) for r in theirs]
    with pytest.raises(ValueError, match="vid_stride"):
        runtime.stream(clip, vid_stride=0)


def test_options_are_predict_options() -> None:
    """The runtime validates `PredictOptions` (same messages); mask_backend is refused."""
    from fastsam_core.predict_options import PredictOptions

    runtime, _ = predictors("official", True)
    assert isinstance(runtime.options, PredictOptions)
    with pytest.raises(ValueError, match="conf must be in"):
        runtime(photo("coffee.jpg"), conf=2.0)
    with pytest.raises(ValueError, match="mask_backend='triton' applies to PyTorch models"):
        runtime(photo("coffee.jpg"), mask_backend="triton")
    with pytest.raises(ValueError, match="mask_backend='reference' applies to PyTorch models"):
        OnnxPredictor(graph(), mask_backend="reference")


# ---------------------------------------------------------------------- without torch
_BLOCK_TORCH = f"""
import importlib.abc, sys

class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, _BlockTorch())
"""

_API = """
import json, sys
import fastsam_core
predictor = fastsam_core.OnnxPredictor(sys.argv[1], device="cpu")
everything = predictor(sys.argv[2])[0]
boxes = predictor(sys.argv[2], boxes=[[20, 30, 300, 250]], points=[[400, 200]])[0]
everything.save_npz(sys.argv[3])
streamed = [type(r).__name__ for r in predictor.stream([sys.argv[2], sys.argv[2] + ".missing"])]
print(json.dumps({
    "n": len(everything), "kinds": list(boxes.prompt_kinds), "rle": everything.to_rle()[0],
    "stream": streamed, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
}))
"""


def _python_without_torch(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH + code, *args],
        check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip


def _segment_without_torch(*argv: str) -> subprocess.CompletedProcess[str]:
    code = "import runpy; sys.argv = ['fastsam', *sys.argv[1:]]\n"
    code += "runpy.run_module('fastsam_core.cli', run_name='__main__')"
    return _python_without_torch(code, "segment", *argv)


def test_cli_without_torch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _segment_without_torch(
        str(photo("coffee.jpg")), "--model", str(graph()), "--out", str(out),
        "--format", "png,json,npz,polygons", "--box", "20,30,300,250", "--point", "400,200",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "blocked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "coffee.json", "coffee.npz", "coffee.png", "coffee.polygons.json",
    ]  # fmt: skip
    document = json.loads((out / "coffee.json").read_text())
    kinds = [a["prompt_kind"] for a in document["annotations"]]
    assert kinds[0] == "box" and set(kinds[1:]) == {"point"}, kinds
    expected = predictors("official", True)[0](
        photo("coffee.jpg"), boxes=[[20, 30, 300, 250]], points=[[400, 200]]
    )[0]  # the same rows as the runtime in this (torch) process
    assert document == json.loads(json.dumps(expected.to_json()))
    back = Results.load_npz(out / "coffee.npz")
    assert back.to_rle() == expected.to_rle()


def test_cli_video_without_torch(tmp_path: Path) -> None:
    """`fastsam segment clip.mp4 --vid-stride 2 --model x.onnx`: one output set per kept frame,
    named <video>_f<frame>, with torch blocked."""
    pytest.importorskip("av", reason="video sources need PyAV (the video extra)")
    from tests.support.videos import make_video

    clip = make_video(tmp_path / "clip.mp4", count=5)
    out = tmp_path / "out"
    done = _segment_without_torch(
        str(clip), "--vid-stride", "2", "--model", str(graph()), "--out", str(out),
        "--format", "json,npz",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "blocked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    stems = [f"clip_f{i:06d}" for i in (0, 2, 4)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}{suffix}" for s in stems for suffix in (".json", ".npz")
    )
    expected = list(predictors("official", True)[0].stream(clip, vid_stride=2))
    for stem, result in zip(stems, expected):
        assert Results.load_npz(out / f"{stem}.npz").to_rle() == result.to_rle()


def test_python_api_without_torch(tmp_path: Path) -> None:
    npz = tmp_path / "coffee.npz"
    done = _python_without_torch(_API, str(graph()), str(photo("coffee.jpg")), str(npz))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = everything("official", True, "coffee.jpg")[0]
    assert out["torch"] == []
    assert out["n"] == len(expected) > 0
    assert out["kinds"][0] == "box" and set(out["kinds"][1:]) == {"point"}, out["kinds"]
    assert out["rle"] == expected.to_rle()[0]
    assert out["stream"] == ["NumpyResults", "ImageError"]
    assert len(Results.load_npz(npz)) == out["n"]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: (d / "weights.onnx").write_text("not a graph") and d / "weights.onnx",
         "is not a readable ONNX model"),
        (lambda d: foreign_graph(d / "other.onnx"), "other.onnx"),
    ],
    ids=["not_onnx", "another_model"],
)  # fmt: skip
def test_bad_graphs_give_one_line(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        OnnxPredictor(path)
    done = _segment_without_torch(str(photo("coffee.jpg")), "--model", str(path), "--out",
                                  str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastsam segment: error: "), done.stderr
    assert message in lines[0]


def test_wrong_input_size_gives_one_line(tmp_path: Path) -> None:
    done = _segment_without_torch(
        str(photo("coffee.jpg")), "--model", str(graph("official", dynamic=False)),
        "--imgsz", "320", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "fixed-size graph for imgsz (256, 256)" in lines[0], done.stderr
