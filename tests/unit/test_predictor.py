"""Predictor: input validation, empty results, batching, full-image box decisions, output frames.

Uses a YOLOv8n-seg with random weights made realistic in-test (no oracle): BatchNorm statistics
recalibrated on real photos, then the class bias shifted so conf 0.4 keeps a few dozen boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core import Predictor
from fastsam_core.config import yolov8_seg_config
from fastsam_core.io import load_image
from fastsam_core.model.yolov8_seg import YoloV8Seg, build_model
from fastsam_core.ops.letterbox import letterbox, letterbox_geometry
from fastsam_core.ops.nms import Detections
from tests.support.small_nets import calibrate_random_net, small_photos

IMGSZ = 320


def _photos() -> list[torch.Tensor]:
    """Four real photos downscaled (long side 400 px; sizes differ) as (H, W, 3) uint8 RGB."""
    return small_photos(4, 400)


@pytest.fixture(scope="module")
def model() -> YoloV8Seg:
    torch.manual_seed(0)
    net = build_model(yolov8_seg_config("n", imgsz=IMGSZ))
    inputs = [
        letterbox(im, letterbox_geometry(im.shape[:2], IMGSZ)).permute(2, 0, 1)[None].float() / 255
        for im in _photos()
    ]  # exactly what the predictor feeds, (1, 3, H, W) each
    return calibrate_random_net(net, inputs)  # >= 20 anchors above conf 0.4 on every photo


@pytest.fixture(scope="module")
def predictor(model: YoloV8Seg) -> Predictor:
    return Predictor(model)  # the defaults: device "auto", fast path


@pytest.fixture(scope="module")
def plain(model: YoloV8Seg) -> Predictor:
    """The exact plain network path (fp32 NCHW): batching is compared on it, free of the
    layout's own rounding (channels_last convolutions round per batch shape)."""
    return Predictor(model, fast=False)


def test_defaults_and_detections(predictor: Predictor) -> None:
    opts = predictor.options
    assert (opts.imgsz, opts.conf, opts.iou, opts.max_det) == ((IMGSZ, IMGSZ), 0.4, 0.9, 300)
    assert opts.retina_masks and opts.postprocess == "official" and opts.mask_rule == "logit"
    photo = _photos()[0]
    (res,) = predictor(photo)
    h0, w0 = res.orig_hw
    assert res.orig_hw == tuple(photo.shape[:2]) and res.path == "image0"
    assert 0 < len(res) <= 300
    assert res.masks.image_hw == (h0, w0)  # retina: original frame
    assert torch.all(res.scores > 0.4) and torch.all(res.scores[:-1] >= res.scores[1:])
    assert torch.all(res.boxes[:, 0::2] >= 0) and torch.all(res.boxes[:, 0::2] <= w0)
    assert torch.all(res.boxes[:, 1::2] >= 0) and torch.all(res.boxes[:, 1::2] <= h0)
    assert res.boxes.dtype == torch.float32 and res.class_ids.dtype == torch.int64


@pytest.mark.parametrize("postprocess", ["official", "ultralytics"])
def test_non_retina_masks_in_letterbox_frame(predictor: Predictor, postprocess: str) -> None:
    photo = _photos()[1]
    (res,) = predictor(photo, retina_masks=False, postprocess=postprocess)
    geometry = letterbox_geometry(res.orig_hw, IMGSZ)
    assert res.masks.image_hw == geometry.input_hw
    assert res.mask_window == (geometry.pad_top, geometry.pad_left, *geometry.resized_hw)
    assert res.masks_original().image_hw == res.orig_hw
    if postprocess == "ultralytics":
        assert torch.all(res.masks.areas() > 0)  # 8.4.190 drops empty masks


@pytest.mark.parametrize("postprocess", ["official", "ultralytics"])
@pytest.mark.parametrize("retina", [True, False])
def test_no_detections_gives_empty_results(
    predictor: Predictor, postprocess: str, retina: bool
) -> None:
    (res,) = predictor(_photos()[0], conf=1.0, postprocess=postprocess, retina_masks=retina)
    assert len(res) == 0 and res.boxes.shape == (0, 4) and res.scores.shape == (0,)
    assert len(res.masks) == 0 and res.to_rle() == [] and res.to_json()["annotations"] == []


def test_batch_equals_one_by_one_same_size(plain: Predictor) -> None:
    a = _photos()[0]
    b = a.flip(1).contiguous()  # same size, different content
    one = [plain(x)[0] for x in (a, b)]
    both = plain([a, b], batch_size=2)
    for r1, r2 in zip(one, both):
        # Batched convolutions round differently from single ones (~1e-6 relative; on box
        # coordinates after the DFL softmax up to 9.4e-5 relative = 0.0036 px seen on the bundled
        # photos), hence tolerances rather than equality: 0.01 px absolute.
        assert len(r1) == len(r2) > 0
        torch.testing.assert_close(r2.boxes, r1.boxes, rtol=5e-5, atol=1e-2)
        torch.testing.assert_close(r2.scores, r1.scores, rtol=5e-5, atol=1e-5)
        differ = (r2.masks.to_dense() != r1.masks.to_dense()).flatten(1).float().mean(1)  # (N,)
        assert float(differ.max()) <= 1e-3


def test_batch_of_different_sizes(predictor: Predictor) -> None:
    """Different shapes share one forward; each image keeps its own geometry and frame."""
    images = _photos()[:2] + [torch.full((333, 517, 3), 90, dtype=torch.uint8)]
    one = [predictor(x)[0] for x in images]
    batched = predictor(images, batch_size=len(images))
    assert [r.orig_hw for r in batched] == [tuple(x.shape[:2]) for x in images]
    for r1, r2 in zip(one, batched):
        assert r2.masks.image_hw == r1.masks.image_hw
        # Only the receptive-field effect of the extra bottom/right padding differs: most of
        # the top detections keep their box (documented in fastsam_core.predictor).
        n = min(len(r1), len(r2), 5)
        if n:
            close = (r2.boxes[:n, None] - r1.boxes[None]).abs().amax(-1).amin(-1) < 2.0
            assert close.float().mean() >= 0.6


def test_input_kinds_agree(predictor: Predictor, tmp_path: Path) -> None:
    rgb = _photos()[0].numpy()
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    ref = predictor(tmp_path / "photo.png")[0]
    assert ref.path == str(tmp_path / "photo.png") and len(ref) > 0
    for source, kwargs in [
        (rgb, {}),
        (np.ascontiguousarray(rgb[:, :, ::-1]), {"bgr": True}),
        (torch.from_numpy(rgb).permute(2, 0, 1), {}),
        (Image.fromarray(rgb), {}),
    ]:
        res = predictor(source, **kwargs)[0]
        assert torch.equal(res.boxes, ref.boxes) and res.path == "image0"


def _fake_detections(boxes: list[list[float]], k: int = 32) -> Detections:
    n = len(boxes)
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.linspace(0.9, 0.5, n),
        class_ids=torch.zeros(n, dtype=torch.int64),
        coeffs=torch.ones(n, k),
        anchor_indices=torch.arange(n),
    )


def test_full_image_box_official_every_image_and_multi_hit(
    predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    image = load_image(torch.zeros(3, 256, 320, dtype=torch.uint8))
    geometry = letterbox_geometry(image.hw, IMGSZ)  # input (256, 320), no padding
    protos = torch.ones(32, 64, 80)  # every logit > 0: mask = box
    opts = predictor.resolve_options(retina_masks=False)
    det = _fake_detections([[5, 3, 318, 250], [50, 50, 100, 120], [15, 10, 300, 240]])
    # second image of a batch: the reference skips it; our default still applies the step
    with caplog.at_level(logging.WARNING, logger="fastsam_core.postprocess"):
        res = predictor._postprocess(det, protos, geometry, image, opts, index_in_batch=1)
    full = torch.tensor([0.0, 0.0, 320.0, 256.0])
    assert torch.equal(res.boxes[0], full) and torch.equal(res.boxes[2], full)  # both hits replaced
    assert torch.equal(res.boxes[1], torch.tensor([50.0, 50.0, 100.0, 120.0]))
    assert int(res.masks.areas()[0]) == 256 * 320  # the mask is cropped with the replaced box
    assert "reference fails" in caplog.text or "multi_full_box" in predictor_warned()
    strict = predictor.resolve_options(retina_masks=False, full_box="first_image")
    res = predictor._postprocess(det, protos, geometry, image, strict, index_in_batch=1)
    assert torch.equal(res.boxes[0], torch.tensor([5.0, 3.0, 318.0, 250.0]))  # untouched
    single = _fake_detections([[5, 3, 318, 250], [50, 50, 100, 120]])
    res = predictor._postprocess(single, protos, geometry, image, strict, index_in_batch=0)
    assert torch.equal(res.boxes[0], full)


def predictor_warned() -> set[str]:
    from fastsam_core import postprocess as module

    return module._warned


def test_imgsz_rounded_up_with_warning(
    predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        opts = predictor.resolve_options(imgsz=300)
    assert opts.imgsz == (320, 320) and "multiple" in caplog.text
    assert predictor.resolve_options(imgsz=(200, 333)).imgsz == (224, 352)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"conf": -0.1}, ValueError, r"conf must be in \[0, 1\], got -0.1"),
        ({"conf": float("nan")}, ValueError, r"conf must be in \[0, 1\], got nan"),
        ({"iou": 1.5}, ValueError, r"iou must be in \[0, 1\], got 1.5"),
        ({"conf": "0.4"}, TypeError, "conf must be a number"),
        ({"max_det": 0}, ValueError, "max_det must be >= 1, got 0"),
        ({"max_det": 2.5}, TypeError, "max_det must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"imgsz": -32}, ValueError, "imgsz must be positive"),
        ({"postprocess": "v5"}, ValueError, "postprocess must be one of"),
        (
            {"postprocess": "ultralytics", "mask_rule": "sigmoid"},
            ValueError,
            "only for postprocess='official'",
        ),
        ({"mask_backend": "warp"}, ValueError, "unknown mask_backend 'warp'"),
        (
            {"confidence": 0.3},
            TypeError,
            (
                r"unknown keyword\(s\) \['confidence'\].*'conf'.*prompt arguments \['boxes', "
                r"'bboxes', 'points', 'labels', 'texts'\].*'point_mode'"
            ),
        ),
    ],
)
def test_bad_options(predictor: Predictor, overrides: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        predictor(_photos()[0], **overrides)


def test_default_device_is_auto_and_default_network_path_is_fast(
    predictor: Predictor, plain: Predictor
) -> None:
    """With no options: device "auto" (CUDA when present, else CPU) and the "default" fast
    preset (channels_last), whose results equal the plain path's within the tolerances
    tests/unit/test_runtime.py asserts for it (boxes 5e-2 px, scores 1e-4, masks 99.9 %)."""
    from fastsam_core.devices import resolve_device
    from fastsam_core.runtime import FAST_PRESETS

    assert predictor.device == resolve_device("auto")
    assert predictor.runner.options == FAST_PRESETS["default"]
    assert plain.runner.options is None
    for photo in _photos()[:2]:
        (fast_res,) = predictor(photo)
        (plain_res,) = plain(photo)
        assert len(fast_res) == len(plain_res) > 0
        torch.testing.assert_close(fast_res.boxes, plain_res.boxes, rtol=0, atol=5e-2)
        torch.testing.assert_close(fast_res.scores, plain_res.scores, rtol=0, atol=1e-4)
        differ = (fast_res.masks.to_dense() != plain_res.masks.to_dense()).flatten(1)
        assert float(differ.float().mean(1).max()) <= 1e-3


def test_stage_timer_hooks(predictor: Predictor) -> None:
    """`timer=` receives every stage the predictor runs, in the predictor's own words."""
    from fastsam_core.profiling import STAGES, StageClock

    clock = StageClock()
    (res,) = predictor(_photos()[0], boxes=[10, 10, 200, 150], timer=clock)
    assert len(res) == 1  # one row for the one box
    assert set(clock.seconds) == set(STAGES) and all(v > 0 for v in clock.seconds.values())
    split = clock.split(total=10.0)
    assert set(split) == {*STAGES, "other"} and sum(split.values()) == pytest.approx(10.0)
    untimed = StageClock()
    predictor(_photos()[0])  # default timer: nothing accumulated anywhere
    assert untimed.seconds == {}


def test_bad_constructor_arguments(model: YoloV8Seg) -> None:
    with pytest.raises(ValueError, match=r"conf must be in \[0, 1\]"):
        Predictor(model, conf=-1)
    with pytest.raises(TypeError, match="model must be a YoloV8Seg"):
        Predictor(42)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="weights file not found: missing.pt"):
        Predictor("missing.pt")
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        Predictor(model, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(model, device="cuda")
    with pytest.raises(ValueError, match=r"'cuda:5' does not exist|CUDA is not available"):
        Predictor(model, device="cuda:5")


def test_bad_sources(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        predictor(tmp_path / "nope.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        predictor(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="zero size"):
        predictor(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"must have shape"):
        predictor(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        predictor(np.zeros((10, 10, 3), np.int16))


def test_tiny_and_gray_images(predictor: Predictor) -> None:
    for image in (np.full((1, 1), 128, np.uint8), np.full((7, 300, 3), 50, np.uint8)):
        (res,) = predictor(image)
        assert res.orig_hw == image.shape[:2] and res.masks.image_hw == image.shape[:2]


# ---------------------------------------------------------------------- streaming (issue 13)
def test_stream_matches_the_list_call_and_reports_bad_files(
    plain: Predictor, tmp_path: Path
) -> None:
    photos = _photos()[:3]
    for i, photo in enumerate(photos):
        Image.fromarray(photo.numpy()).save(tmp_path / f"p{i}.png")
    (tmp_path / "p1_broken.png").write_bytes(b"not an image")  # sorts between p1 and p2
    from fastsam_core.results import ImageError

    streamed = list(plain.stream(tmp_path))
    assert [type(r).__name__ for r in streamed] == ["Results", "Results", "ImageError", "Results"]
    bad = streamed[2]
    assert isinstance(bad, ImageError) and bad.path.endswith("p1_broken.png") and bad.message
    listed = plain([tmp_path / f"p{i}.png" for i in range(3)])
    for got, want in zip([r for r in streamed if not isinstance(r, ImageError)], listed):
        assert got.path == want.path and torch.equal(got.boxes, want.boxes)
        assert torch.equal(got.masks.to_dense(), want.masks.to_dense())
        assert got.stability_scores is not None and got.point_coords is not None
    # prompt keywords apply to every image; overrides work as in the list call
    boxed = list(plain.stream(tmp_path / "p0.png", boxes=[[0, 0, 100, 100]], conf=0.3))
    assert type(boxed[0]).__name__ == "PromptResults" and len(boxed[0]) == 1


def test_stream_decodes_ahead_a_bounded_number(
    plain: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator is lazy: after the first result, at most `prefetch` more images were
    decoded, however long the source list; closing it stops the decoding thread."""
    import time

    from fastsam_core.io import prefetch as prefetch_module

    decoded: list[int] = []
    real = prefetch_module.load_image

    def counting(item, *, bgr=False, index=0, array=False):  # type: ignore[no-untyped-def]
        decoded.append(index)
        return real(item, bgr=bgr, index=index, array=array)

    monkeypatch.setattr(prefetch_module, "load_image", counting)
    photo = _photos()[0].numpy()
    stream = plain.stream([photo] * 12, prefetch=2)
    first = next(stream)
    time.sleep(0.3)  # let the thread run ahead as far as it can
    assert len(first) > 0 and len(decoded) <= 1 + 1 + 2  # yielded, blocked in put, queue of 2
    stream.close()
    seen = len(decoded)
    time.sleep(0.2)
    assert len(decoded) == seen < 12
