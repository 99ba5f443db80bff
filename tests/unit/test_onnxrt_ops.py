"""fastsam_core.onnxrt preprocess / nms / boxes: each numpy function against its torch twin in
`fastsam_core.ops` (issue 14 item 3), on the same inputs in one parametrized test per concept."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.onnxrt import boxes as np_boxes
from fastsam_core.onnxrt import nms as np_nms
from fastsam_core.onnxrt import preprocess
from fastsam_core.ops import boxes as torch_boxes
from fastsam_core.ops import geometry
from fastsam_core.ops import letterbox as torch_letterbox
from fastsam_core.ops import nms as torch_nms
from tests.support.photos import photo


def test_geometry_is_shared_not_copied():
    # one implementation serves both paths: the torch module re-exports the torch-free one
    for name in ("LetterboxGeometry", "letterbox_geometry", "check_imgsz", "PAD_VALUE"):
        assert getattr(torch_letterbox, name) is getattr(geometry, name)
        assert getattr(preprocess, name) is getattr(geometry, name)


def test_runtime_modules_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import fastsam_core.onnxrt.preprocess, fastsam_core.onnxrt.nms\n"
        "import fastsam_core.onnxrt.boxes, fastsam_core.onnxrt.masks\n"
        "import fastsam_core.onnxrt.postprocess, fastsam_core.onnxrt.stability\n"
        "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- letterbox (bit-exact)
def _photo_case(name: str) -> np.ndarray:
    return np.array(Image.open(photo(name)).convert("RGB"))  # (H0, W0, 3) uint8, writable


LETTERBOX_CASES = [
    *[(name, 1024, True) for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")],
    ("coffee.jpg", 640, False),  # fixed-size graph: padded to exactly imgsz
    ("rocket.jpg", (320, 416), True),
    *[(seed, None, None) for seed in range(24)],  # random sizes: tiny, odd, upscaling
]


@pytest.mark.parametrize(("case", "imgsz", "auto"), LETTERBOX_CASES)
def test_letterbox_matches_torch(case, imgsz, auto):
    if isinstance(case, str):
        images = [_photo_case(case)]
    else:
        rng = np.random.default_rng(case)
        imgsz = int(rng.choice([32, 64, 96, 160, 640]))
        auto = bool(case % 2)
        sides = rng.integers(1, 400, size=(1 + case % 3, 2))  # 1..3 images, 1 px and up
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sides]
    geometries = [geometry.letterbox_geometry(im.shape[:2], imgsz, auto=auto) for im in images]
    want = torch_letterbox.letterbox_batch([torch.from_numpy(im) for im in images], geometries)
    got = preprocess.letterbox_batch(images, geometries)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    assert got.shape == tuple(want.shape)
    assert np.array_equal(got, want.numpy())


def test_letterbox_errors():
    g = geometry.letterbox_geometry((10, 20), 64)
    with pytest.raises(ValueError, match="geometry was computed for"):
        preprocess.letterbox(np.zeros((11, 20, 3), np.uint8), g)
    with pytest.raises(TypeError, match="uint8 numpy array"):
        preprocess.letterbox(np.zeros((10, 20, 3), np.float32), g)
    with pytest.raises(ValueError, match="one geometry per image"):
        preprocess.letterbox_batch([np.zeros((10, 20, 3), np.uint8)], [])


# ---------------------------------------------------------------- NMS (identical indices)
def _head_outputs(seed: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B=2, 4, A) xywh, (B, nc, A) scores, (B, K, A) coeffs: clustered boxes on a half-pixel
    grid (exact IoU ties such as 0.25 or 0.5) and scores on a coarse grid (many score ties)."""
    rng = np.random.default_rng(seed)
    a, objects = 600, 25
    centres = rng.uniform(40, 600, (2, 2, objects))
    sizes = rng.uniform(8, 200, (2, 2, objects))
    owner = rng.integers(0, objects, (2, a))
    xy = np.take_along_axis(centres, owner[:, None].repeat(2, 1), 2) + rng.normal(0, 6, (2, 2, a))
    wh = np.take_along_axis(sizes, owner[:, None].repeat(2, 1), 2) * rng.uniform(
        0.8, 1.2, (2, 2, a)
    )
    boxes = np.round(np.concatenate([xy, wh], 1) * 2) / 2  # (2, 4, A) half-pixel grid
    scores = np.round(rng.uniform(0, 1, (2, num_classes, a)) * 20) / 20  # ties everywhere
    coeffs = rng.normal(size=(2, 8, a))
    return boxes.astype(np.float32), scores.astype(np.float32), coeffs.astype(np.float32)


NMS_CASES = [
    dict(seed=s, num_classes=nc, iou=iou, max_det=md, agnostic=ag, classes=cl)
    for s, (nc, iou, md, ag, cl) in enumerate([
        (1, 0.9, 300, False, None), (1, 0.5, 300, False, None), (1, 0.25, 7, False, None),
        (1, 0.0, 300, False, None), (1, 1.0, 300, False, None), (3, 0.7, 300, False, None),
        (3, 0.5, 300, True, None), (3, 0.5, 40, False, (0, 2)), (2, 0.6, 1, False, None),
        (1, 0.45, 300, False, None), (4, 0.9, 300, False, (3,)), (1, 0.7, 300, False, ()),
    ])
]  # fmt: skip


@pytest.mark.parametrize("case", NMS_CASES, ids=lambda c: f"seed{c['seed']}")
@pytest.mark.parametrize("conf", [0.0, 0.5])
def test_nms_matches_torch(case, conf):
    boxes, scores, coeffs = _head_outputs(case["seed"], case["num_classes"])
    options = dict(
        conf_threshold=conf, iou_threshold=case["iou"], max_det=case["max_det"],
        agnostic=case["agnostic"], classes=case["classes"], max_nms=500,
    )  # fmt: skip
    want = torch_nms.non_max_suppression(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(coeffs), **options
    )
    got = np_nms.non_max_suppression(boxes, scores, coeffs, **options)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert np.array_equal(g.anchor_indices, w.anchor_indices.numpy())
        assert g.anchor_indices.dtype == g.class_ids.dtype == np.int64
        for name in ("boxes", "scores", "class_ids", "coeffs"):
            assert np.array_equal(getattr(g, name), getattr(w, name).numpy()), name
    assert sum(len(g) for g in got) > 0 or case["classes"] == ()


def test_nms_errors():
    with pytest.raises(ValueError, match=r"boxes_xywh must be \(B, 4, A\)"):
        np_nms.non_max_suppression(np.zeros((1, 5, 3)), np.zeros((1, 1, 3)), np.zeros((1, 0, 3)))
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        np_nms.non_max_suppression(
            np.zeros((1, 4, 3)), np.zeros((1, 1, 3)), np.zeros((1, 0, 3)), iou_threshold=2
        )


# ---------------------------------------------------------------- boxes
def _boxes_case(seed: int) -> tuple[np.ndarray, geometry.LetterboxGeometry]:
    rng = np.random.default_rng(seed)
    orig = tuple(int(v) for v in rng.integers(20, 3000, 2))
    g = geometry.letterbox_geometry(orig, int(rng.choice([320, 640, 1024])), auto=bool(seed % 2))
    h, w = g.input_hw
    xy = rng.uniform(-30, 1, (40, 2)) * [w, h] / 30 + rng.uniform(0, 1, (40, 2)) * [w, h]
    wh = rng.uniform(0, 1.1, (40, 2)) * [w, h]
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)  # (40, 4), past the edges too
    boxes[:3] = [[3.0, 2.0, w - 4.0, h - 1.0], [0, 0, w, h], [19.5, 20.0, w - 19.5, h - 20]]
    return boxes, g


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(
    "function", ["scale_official", "scale_ultralytics", "clip", "xywh", "iou", "step_official",
                 "step_ultralytics"],
)  # fmt: skip
def test_boxes_match_torch(function, seed):
    boxes, g = _boxes_case(seed)
    if seed % 3 == 0:  # exactly one near-full box: the official step replaces it
        boxes[1:3] = [[5.0, 6.0, 30.5, 41.0], [8.0, 9.5, 8.0, 60.0]]
    elif seed % 3 == 2:  # two: the official step is ambiguous
        boxes[1] = boxes[0] = [1.0, 2.0, g.input_hw[1] - 1.0, g.input_hw[0]]
    t = torch.from_numpy(boxes)
    calls = {
        "scale_official": lambda m, b: m.scale_boxes(b, g, rule="official"),
        "scale_ultralytics": lambda m, b: m.scale_boxes(b, g, rule="ultralytics"),
        "clip": lambda m, b: m.clip_boxes(b, (g.input_hw[0] // 2, g.input_hw[1] // 3)),
        "xywh": lambda m, b: m.xywh_to_xyxy(b),
        "iou": lambda m, b: m.box_iou(b, b[::-1].copy() if isinstance(b, np.ndarray) else b.flip(0),
                                      eps=1e-7 * (seed % 2)),
        "step_official": lambda m, b: m.full_box_step_official(b, g.input_hw),
        "step_ultralytics": lambda m, b: m.full_box_step_ultralytics(
            m.scale_boxes(b, g, rule="ultralytics"), g.orig_hw),
    }  # fmt: skip
    got, want = calls[function](np_boxes, boxes), calls[function](torch_boxes, t)
    if function.startswith("step"):
        assert got.ambiguous == want.ambiguous
        assert np.array_equal(got.matched, want.matched.numpy())
        got, want = got.boxes, want.boxes
    assert got.dtype == np.float32
    assert np.array_equal(got, want.numpy(), equal_nan=True)
    assert not np.shares_memory(got, boxes)  # a new array, input untouched


@pytest.mark.parametrize("rule", ["official", "ultralytics"])
@pytest.mark.parametrize("seed", range(4))
def test_anchor_points_match_predictor(seed, rule):
    from fastsam_core.ops.anchors import make_anchors

    _, g = _boxes_case(seed)
    h, w = g.input_hw
    points, strides = make_anchors([(h // s, w // s) for s in (8, 16, 32)])  # (A, 2), (A, 1)
    anchor_xy = points * strides  # (A, 2) the graph's `anchors` output
    index = torch.from_numpy(np.random.default_rng(seed).integers(0, len(points), 50))
    xy = anchor_xy[index].float()  # Predictor._postprocess's point_coords
    want = torch_boxes.scale_boxes(torch.cat([xy, xy], 1), g, rule)[:, :2]
    got = np_boxes.anchor_points(anchor_xy.numpy(), index.numpy(), g, rule)
    assert np.array_equal(got, want.numpy())


def test_boxes_errors():
    with pytest.raises(ValueError, match=r"must have shape \(N, 4\)"):
        np_boxes.clip_boxes(np.zeros((2, 3), np.float32), (4, 4))
    with pytest.raises(ValueError, match="rule must be"):
        np_boxes.scale_boxes(np.zeros((1, 4), np.float32), geometry.letterbox_geometry((8, 8), 32),
                             rule="x")  # fmt: skip
