"""fastsam_core.ops.letterbox: geometry (spec §3.3), cv2-exact resize, batch, oracle LetterBox."""

from __future__ import annotations

import logging
import os
import tempfile

import pytest
import torch

from fastsam_core.ops import letterbox as letterbox_module
from fastsam_core.ops.letterbox import (
    PAD_VALUE,
    LetterboxGeometry,
    check_imgsz,
    letterbox,
    letterbox_batch,
    letterbox_geometry,
    resize_linear,
)
from tests.support.photos import photo

# bundled photos (H x W): 512x512 (no pad at 1024), 427x640 (pad 10/11), chelsea transposed to
# a 451x300 portrait (pad 11/12 on the width)
PHOTOS = ["astronaut.jpg", "rocket.jpg", "chelsea.jpg transposed"]


def _read_bgr(name: str):
    cv2 = pytest.importorskip("cv2")
    file, _, transposed = name.partition(" ")
    bgr = cv2.imread(str(photo(file)))  # (H, W, 3) uint8 BGR
    return bgr.transpose(1, 0, 2).copy() if transposed else bgr


def _hwc(array) -> torch.Tensor:
    return torch.from_numpy(array).contiguous()  # (H, W, C) uint8


# ---------------------------------------------------------------- geometry


def test_geometry_spec_example_no_padding():
    g = letterbox_geometry((603, 1072), 1024)
    assert g == LetterboxGeometry((603, 1072), (576, 1024), (576, 1024), 0, 0, 1024 / 1072)


def test_geometry_minimum_rectangle_and_split():
    g = letterbox_geometry((1500, 2250), 1024)  # r = 1024/2250 -> h = round(682.67) = 683
    assert g.resized_hw == (683, 1024)
    assert g.input_hw == (704, 1024)  # 1024 - 683 = 341, 341 % 32 = 21
    assert (g.pad_top, g.pad_bottom) == (10, 11)  # dh = 10.5: round(10.4) = 10, round(10.6) = 11
    assert (g.pad_left, g.pad_right) == (0, 0)


def test_geometry_without_auto_pads_to_imgsz():
    g = letterbox_geometry((1500, 2250), 1024, auto=False)
    assert g.input_hw == (1024, 1024)
    assert (g.pad_top, g.pad_bottom) == (170, 171)  # 341 / 2 = 170.5


def test_geometry_bankers_rounding():
    # r = min(2/4, 100/5) = 0.5 -> width 2.5 rounds to 2 (half to even), height 2
    g = letterbox_geometry((4, 5), (2, 100), auto=False)
    assert g.resized_hw == (2, 2)


def test_geometry_scaleup_flag():
    assert letterbox_geometry((100, 200), 1024).resized_hw == (512, 1024)
    g = letterbox_geometry((100, 200), 1024, scaleup=False)
    assert g.resized_hw == (100, 200) and g.gain == 1.0
    assert g.input_hw == (128, 224)  # 924 % 32 = 28 -> 14 + 14; 824 % 32 = 24 -> 12 + 12


def test_geometry_thin_image_keeps_one_pixel():
    assert letterbox_geometry((1, 5000), 64).resized_hw == (1, 64)


def test_geometry_rejects_bad_sizes():
    with pytest.raises(ValueError, match="orig_hw must be positive"):
        letterbox_geometry((0, 10), 64)
    with pytest.raises(TypeError, match="imgsz must be an int or"):
        letterbox_geometry((10, 10), "64")  # type: ignore[arg-type]


def test_check_imgsz_rounds_up_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_imgsz(1000) == (1024, 1024)
    assert "not a multiple of stride 32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert check_imgsz((640, 480)) == (640, 480)
        assert check_imgsz([33]) == (64, 64)
    assert "(640, 480)" not in caplog.text
    with pytest.raises(ValueError, match="imgsz must be positive"):
        check_imgsz(0)


# ---------------------------------------------------------------- resize vs cv2

RESIZE_CASES = [
    (37, 53, 101, 77),  # up both, odd
    (480, 640, 333, 517),  # down, odd
    (100, 100, 1024, 1024),  # large upscale
    (603, 1072, 576, 1024),  # spec example
    (64, 64, 32, 32),  # exact 2x down (cv2 switches to INTER_AREA internally)
    (1, 1, 5, 7),
    (5, 1, 9, 2),
    (2, 3, 1, 1),
    (33, 17, 9, 4),
]


@pytest.mark.parametrize("h0,w0,h,w", RESIZE_CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_resize_linear_bit_exact_with_cv2(h0, w0, h, w, channels):
    cv2 = pytest.importorskip("cv2")
    gen = torch.Generator().manual_seed(h0 * 1000 + w0)
    image = torch.randint(0, 256, (h0, w0, channels), dtype=torch.uint8, generator=gen)
    expected = cv2.resize(image.numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
    expected = torch.from_numpy(expected).reshape(h, w, channels)
    assert torch.equal(resize_linear(image, (h, w)), expected)


@pytest.mark.parametrize("name", PHOTOS)
def test_resize_linear_bit_exact_on_photos(name):
    cv2 = pytest.importorskip("cv2")
    bgr = _read_bgr(name)
    h0, w0 = bgr.shape[:2]
    image = _hwc(bgr)
    for h, w in [
        (round(h0 * 1024 / max(h0, w0)), round(w0 * 1024 / max(h0, w0))),
        (h0 + 7, w0 + 13),
    ]:
        expected = _hwc(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR))
        assert torch.equal(resize_linear(image, (h, w)), expected), (name, h, w)


@pytest.mark.parametrize("band_bytes", [1, 4096, 1 << 19])
@pytest.mark.parametrize("h0,w0,h,w", [(37, 53, 101, 77), (603, 1072, 288, 512), (5, 9, 5, 9)])
def test_resize_linear_channel_order_and_bands(monkeypatch, band_bytes, h0, w0, h, w):
    """HWC resize with BGR->RGB reordering equals cv2 + flip for every band split (1 row, a few
    rows, whole image), upscaling (bands share source rows) and downscaling."""
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(letterbox_module, "_BAND_BYTES", band_bytes)
    gen = torch.Generator().manual_seed(h0 + w0)
    bgr = torch.randint(0, 256, (h0, w0, 3), dtype=torch.uint8, generator=gen)
    expected = cv2.resize(bgr.numpy(), (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1].copy()
    out = resize_linear(bgr, (h, w), channels=(2, 1, 0))
    assert out.shape == (h, w, 3) and out.is_contiguous()
    assert torch.equal(out, torch.from_numpy(expected))
    assert torch.equal(resize_linear(bgr, (h, w), channels=(1,)), out[..., 1:2])


def test_resize_linear_rejects_bad_channels():
    with pytest.raises(ValueError, match=r"channels must index the 3 input channels, got \(0, 3\)"):
        resize_linear(torch.zeros(4, 4, 3, dtype=torch.uint8), (2, 2), channels=(0, 3))


def test_resize_linear_rejects_float():
    with pytest.raises(TypeError, match=r"uint8 image, got \(4, 4, 3\) torch.float32"):
        resize_linear(torch.zeros(4, 4, 3), (2, 2))


# ---------------------------------------------------------------- letterbox


def test_letterbox_places_content_and_pads_114():
    image = torch.full((10, 20, 3), 7, dtype=torch.uint8)
    g = letterbox_geometry((10, 20), 64, auto=False)  # content 32 x 64, pad 16 / 16
    out = letterbox(image, g)
    assert out.shape == (64, 64, 3) and out.dtype == torch.uint8
    assert (out[16:48] == 7).all()
    assert (out[:16] == PAD_VALUE).all() and (out[48:] == PAD_VALUE).all() and PAD_VALUE == 114
    assert (letterbox(image, g, pad_value=0)[:16] == 0).all()


def test_letterbox_checks_geometry_matches_image():
    g = letterbox_geometry((10, 20), 64)
    with pytest.raises(ValueError, match=r"image is \(10, 21\) \(H0, W0\) but the geometry"):
        letterbox(torch.zeros(10, 21, 3, dtype=torch.uint8), g)
    with pytest.raises(TypeError, match="uint8"):
        letterbox(torch.zeros(10, 20, 3), g)


def test_letterbox_batch_places_each_image_top_left_in_its_own_geometry():
    """Each image keeps its own minimum-rectangle geometry (as if alone), top-left in a batch
    padded with 114 to the largest shape; equal shapes give the plain stack."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (60, 90, 3), dtype=torch.uint8, generator=gen)  # -> 96 x 128
    b = torch.randint(0, 256, (90, 50, 3), dtype=torch.uint8, generator=gen)  # -> 128 x 96
    geoms = [letterbox_geometry(tuple(im.shape[:2]), 128) for im in (a, b)]
    batch = letterbox_batch([a, b], geoms)
    assert batch.shape == (2, 3, 128, 128) and batch.dtype == torch.uint8
    for image, g, row in zip([a, b], geoms, batch):
        h, w = g.input_hw
        assert torch.equal(row[:, :h, :w], letterbox(image, g).permute(2, 0, 1))
        assert (row[:, h:] == PAD_VALUE).all() and (row[:, :, w:] == PAD_VALUE).all()
    same = letterbox_batch([a, a.clone()], [geoms[0]] * 2)
    assert same.shape == (2, 3, 96, 128)
    assert torch.equal(same[1], letterbox(a, geoms[0]).permute(2, 0, 1))
    with pytest.raises(ValueError, match="one geometry per image"):
        letterbox_batch([], [])


# ---------------------------------------------------------------- oracle


@pytest.fixture(scope="module")
def oracle_letterbox():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))
    pytest.importorskip("ultralytics", reason="oracle extra (ultralytics==8.4.190) not installed")
    from ultralytics.data.augment import LetterBox

    return LetterBox


@pytest.mark.oracle
@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("imgsz,auto", [(1024, True), (640, False)])
def test_letterbox_equals_ultralytics_on_photos(oracle_letterbox, name, imgsz, auto):
    bgr = _read_bgr(name)
    expected = oracle_letterbox(new_shape=(imgsz, imgsz), auto=auto, stride=32)(image=bgr)
    g = letterbox_geometry(bgr.shape[:2], imgsz, auto=auto)
    assert torch.equal(letterbox(_hwc(bgr), g), _hwc(expected))
