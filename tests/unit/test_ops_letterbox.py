"""fastsam_core.ops.letterbox: geometry (spec §3.3), cv2-exact resize, batch letterbox, oracle LetterBox."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest
import torch

from fastsam_core.ops import letterbox as letterbox_module
from fastsam_core.ops.letterbox import (
    LetterboxGeometry,
    check_imgsz,
    letterbox,
    letterbox_batch,
    letterbox_geometry,
    repad_geometry,
    resize_linear,
    resize_linear_hwc,
)

IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "images"
if not IMAGES.is_dir():
    IMAGES = Path("/work/shared/images")
PHOTOS = ["dogs.jpg", "sa_192.jpg", "cat.jpg"]  # 603x1072 (no pad), 1500x2250 (pad 10/11), portrait


def _read_bgr(name: str):
    cv2 = pytest.importorskip("cv2")
    path = IMAGES / name
    if not path.exists():
        pytest.skip(f"missing test photo {path}")
    return cv2.imread(str(path))


def _chw(array) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


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


def test_repad_geometry_recentres():
    g = letterbox_geometry((603, 1072), 1024)
    big = repad_geometry(g, (608, 1024))
    assert (big.pad_top, big.pad_bottom, big.pad_left) == (16, 16, 0)
    with pytest.raises(ValueError, match="smaller than the resized content"):
        repad_geometry(g, (500, 1024))


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
    image = torch.randint(0, 256, (channels, h0, w0), dtype=torch.uint8, generator=gen)
    expected = cv2.resize(image.permute(1, 2, 0).numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
    expected = torch.from_numpy(expected).reshape(h, w, channels).permute(2, 0, 1)
    assert torch.equal(resize_linear(image, (h, w)), expected)


@pytest.mark.parametrize("name", PHOTOS)
def test_resize_linear_bit_exact_on_photos(name):
    cv2 = pytest.importorskip("cv2")
    bgr = _read_bgr(name)
    h0, w0 = bgr.shape[:2]
    image = _chw(bgr)
    for h, w in [
        (round(h0 * 1024 / max(h0, w0)), round(w0 * 1024 / max(h0, w0))),
        (h0 + 7, w0 + 13),
    ]:
        expected = _chw(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR))
        assert torch.equal(resize_linear(image, (h, w)), expected), (name, h, w)


@pytest.mark.parametrize("band_bytes", [1, 4096, 1 << 19])
@pytest.mark.parametrize("h0,w0,h,w", [(37, 53, 101, 77), (603, 1072, 288, 512), (5, 9, 5, 9)])
def test_resize_linear_hwc_channel_order_and_bands(monkeypatch, band_bytes, h0, w0, h, w):
    """HWC resize with BGR->RGB reordering equals cv2 + flip for every band split (1 row, a few
    rows, whole image), upscaling (bands share source rows) and downscaling."""
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(letterbox_module, "_BAND_BYTES", band_bytes)
    gen = torch.Generator().manual_seed(h0 + w0)
    bgr = torch.randint(0, 256, (h0, w0, 3), dtype=torch.uint8, generator=gen)
    expected = cv2.resize(bgr.numpy(), (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1].copy()
    out = resize_linear_hwc(bgr, (h, w), channels=(2, 1, 0))
    assert out.shape == (h, w, 3) and out.is_contiguous()
    assert torch.equal(out, torch.from_numpy(expected))
    assert torch.equal(resize_linear_hwc(bgr, (h, w), channels=(1,)), out[..., 1:2])


def test_resize_linear_hwc_rejects_bad_channels():
    with pytest.raises(ValueError, match=r"channels must index the 3 input channels, got \(0, 3\)"):
        resize_linear_hwc(torch.zeros(4, 4, 3, dtype=torch.uint8), (2, 2), channels=(0, 3))


def test_resize_linear_rejects_float():
    with pytest.raises(TypeError, match=r"uint8 image, got \(3, 4, 4\) torch.float32"):
        resize_linear(torch.zeros(3, 4, 4), (2, 2))


# ---------------------------------------------------------------- letterbox


def test_letterbox_places_content_and_pads_114():
    image = torch.full((3, 10, 20), 7, dtype=torch.uint8)
    g = letterbox_geometry((10, 20), 64, auto=False)  # content 32 x 64, pad 16 / 16
    out = letterbox(image, g)
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert (out[:, 16:48] == 7).all()
    assert (out[:, :16] == 114).all() and (out[:, 48:] == 114).all()
    assert (letterbox(image, g, pad_value=0)[:, :16] == 0).all()


def test_letterbox_checks_geometry_matches_image():
    g = letterbox_geometry((10, 20), 64)
    with pytest.raises(ValueError, match=r"image is \(10, 21\) \(H0, W0\) but the geometry"):
        letterbox(torch.zeros(3, 10, 21, dtype=torch.uint8), g)
    with pytest.raises(TypeError, match="uint8"):
        letterbox(torch.zeros(3, 10, 20), g)


def test_letterbox_batch_upstream_rule():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8, generator=gen)
    b = torch.randint(0, 256, (3, 90, 50), dtype=torch.uint8, generator=gen)
    # different sizes -> auto off -> each padded to the full 128 x 128
    batch, geoms = letterbox_batch([a, b], 128)
    assert batch.shape == (2, 3, 128, 128)
    for image, g, row in zip([a, b], geoms, batch):
        assert g == letterbox_geometry(tuple(image.shape[1:]), 128, auto=False)
        assert torch.equal(row, letterbox(image, g))
    same, geoms_same = letterbox_batch([a, a.clone()], 128)  # same sizes -> minimum rectangle
    assert same.shape == (2, 3, 96, 128) and geoms_same[0] == letterbox_geometry((60, 90), 128)


def test_letterbox_batch_auto_recentres_in_largest():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8, generator=gen)  # -> 96 x 128
    b = torch.randint(0, 256, (3, 90, 50), dtype=torch.uint8, generator=gen)  # -> 128 x 96
    batch, geoms = letterbox_batch([a, b], 128, auto=True)
    assert batch.shape == (2, 3, 128, 128)
    for image, g, row in zip([a, b], geoms, batch):
        own = letterbox_geometry(tuple(image.shape[1:]), 128)
        assert g.resized_hw == own.resized_hw and g.input_hw == (128, 128)
        h, w = g.resized_hw
        content = row[:, g.pad_top : g.pad_top + h, g.pad_left : g.pad_left + w]
        assert torch.equal(content, resize_linear(image, (h, w)))
    with pytest.raises(ValueError, match="at least one image"):
        letterbox_batch([], 128)


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
    assert torch.equal(letterbox(_chw(bgr), g), _chw(expected))
