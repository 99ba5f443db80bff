"""fastsam_core.io.images: every source kind -> (H, W, 3) uint8 RGB, clear errors on bad input."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.io import (
    expand_sources,
    image_hw,
    list_image_files,
    load_image,
    load_images,
    max_pixels,
    set_max_pixels,
)
from fastsam_core.io.pixel_limit import DEFAULT_MAX_PIXELS
from tests.support.photos import PHOTOS_DIR

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)  # (H, W, 3)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp"])
def test_lossless_files_round_trip(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"img{ext}"
    kwargs = {"lossless": True} if ext == ".webp" else {}
    Image.fromarray(RGB).save(path, **kwargs)
    loaded = load_image(path)
    assert loaded.image.dtype == torch.uint8 and loaded.image.shape == (7, 11, 3)
    assert np.array_equal(loaded.image.numpy(), RGB)
    assert loaded.path == path and loaded.name == str(path)


def test_jpeg_decodes_close(tmp_path: Path) -> None:
    smooth = np.full((32, 48, 3), (200, 30, 90), np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    got = load_image(tmp_path / "a.jpg").image.numpy().astype(int)
    assert np.abs(got - smooth).max() <= 3


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.png", exif=exif)
    got = load_image(tmp_path / "rot.png").image.numpy()
    assert got.shape == (11, 7, 3)
    assert np.array_equal(got, np.rot90(RGB, k=-1))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_image_hw_reads_the_upright_size_from_the_header(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RGB).save(tmp_path / "o.jpg", exif=exif)
    assert image_hw(tmp_path / "o.jpg") == load_image(tmp_path / "o.jpg").hw
    assert image_hw(tmp_path / "o.jpg") == ((11, 7) if orientation >= 5 else (7, 11))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image .*junk.png"):
        image_hw(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError, match="image file not found: .*nope.png"):
        image_hw(tmp_path / "nope.png")


def test_grayscale_palette_rgba_16bit_converted(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, size=(5, 6), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    got = load_image(tmp_path / "gray.png").image.numpy()
    assert np.array_equal(got, np.repeat(gray[:, :, None], 3, 2))

    rgba = np.concatenate([RGB, np.zeros((7, 11, 1), np.uint8)], axis=2)  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png").image.numpy(), RGB)  # alpha dropped

    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "pal.png")
    expected = np.asarray(pal.convert("RGB"))
    assert np.array_equal(load_image(tmp_path / "pal.png").image.numpy(), expected)

    g16 = RNG.integers(0, 65536, size=(4, 9), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    got = load_image(tmp_path / "g16.png").image.numpy()
    assert np.array_equal(got[:, :, 0], (g16 >> 8).astype(np.uint8))
    assert np.array_equal(got[:, :, 0], got[:, :, 2])


def test_numpy_rgb_and_bgr_flag() -> None:
    assert np.array_equal(load_image(RGB).image.numpy(), RGB)
    bgr = np.ascontiguousarray(RGB[:, :, ::-1])
    assert np.array_equal(load_image(bgr, bgr=True).image.numpy(), RGB)
    assert np.array_equal(load_image(RGB[:, :, 0]).image.numpy()[:, :, 1], RGB[:, :, 0])
    assert np.array_equal(load_image(RGB.astype(np.float32) / 255).image.numpy(), RGB)


def test_pil_and_tensor_layouts() -> None:
    assert np.array_equal(load_image(Image.fromarray(RGB)).image.numpy(), RGB)
    hwc = torch.from_numpy(RGB)
    assert torch.equal(load_image(hwc).image, hwc)
    assert torch.equal(load_image(hwc.permute(2, 0, 1)).image, hwc)
    assert torch.equal(load_image(hwc.permute(2, 0, 1).float() / 255).image, hwc)
    batch = torch.stack([hwc.permute(2, 0, 1)] * 2)  # (2, 3, H, W)
    loaded = load_images(batch)
    assert len(loaded) == 2 and loaded[1].name == "image1"


def test_directory_and_glob_sorted(tmp_path: Path) -> None:
    for name in ["b.png", "a.jpg", "c.webp", "notes.txt"]:
        if name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            Image.fromarray(RGB).save(tmp_path / name)
    assert [p.name for p in list_image_files(tmp_path)] == ["a.jpg", "b.png", "c.webp"]
    assert [Path(p).name for p in expand_sources(str(tmp_path / "*.png"))] == ["b.png"]
    assert len(load_images([tmp_path, RGB])) == 4


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found: .*missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png.*empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    with pytest.raises(ValueError, match="cannot read image .*junk.jpg"):
        load_image(tmp_path / "junk.jpg")
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read image .*trunc.jpg"):
        load_image(tmp_path / "trunc.jpg")
    with pytest.raises(ValueError, match=r"zero size"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"must have shape .* got \(4, 5, 2\)"):
        load_image(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(
        ValueError, match=r"must have shape \(3, H, W\) or \(H, W, 3\), got \(4, 5\)"
    ):
        load_image(torch.zeros(4, 5, dtype=torch.uint8))
    with pytest.raises(TypeError, match="dtype int32"):
        load_image(np.zeros((4, 5, 3), np.int32))
    with pytest.raises(TypeError, match="dtype torch.int64"):
        load_image(torch.zeros(3, 4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        load_image(np.full((4, 5, 3), np.nan, np.float32))
    with pytest.raises(TypeError, match="unsupported image source type int"):
        load_image(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no image files match"):
        expand_sources(str(tmp_path / "*.nothing"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_images(tmp_path / "sub")


# ---------------------------------------------------------------------------- odd but valid files
def test_tiny_images_1x1_and_1xn(tmp_path: Path) -> None:
    for shape in [(1, 1, 3), (1, 9, 3), (9, 1, 3)]:
        pixels = RNG.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "tiny.png")
        assert np.array_equal(load_image(tmp_path / "tiny.png").image.numpy(), pixels)
        assert np.array_equal(load_image(pixels).image.numpy(), pixels)
        assert load_image(torch.from_numpy(pixels)).hw == shape[:2]


def test_more_pillow_modes(tmp_path: Path) -> None:
    """LA (gray + alpha), 1-bit, palette with a transparent index, CMYK JPEG, EXIF-rotated JPEG."""
    Image.new("LA", (5, 4), (100, 50)).save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png").image == 100).all()  # alpha dropped, gray repeated
    Image.new("1", (5, 4), 1).save(tmp_path / "bw.png")
    assert (load_image(tmp_path / "bw.png").image == 255).all()
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(tmp_path / "pt.png", transparency=1)  # the only colour used is transparent
    assert load_image(tmp_path / "pt.png").image[0, 0].tolist() == [0, 255, 0]  # not composited
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "red.jpg", quality=95)
    red = load_image(tmp_path / "red.jpg").image.numpy().astype(int)
    assert np.abs(red - np.array([255, 0, 0])).max() <= 3
    img = Image.fromarray(RNG.integers(0, 256, size=(8, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "rot.jpg").image.shape == (16, 8, 3)


def test_16bit_and_cmyk_files_match_cv2(tmp_path: Path) -> None:
    """16-bit RGB/RGBA PNG keep the high byte and CMYK JPEG converts as cv2.imread(COLOR)."""
    cv2 = pytest.importorskip("cv2", reason="cv2 comes with the oracle extra")
    rgb16 = RNG.integers(0, 65536, size=(4, 6, 3), dtype=np.uint16)
    alpha = np.full((4, 6, 1), 1000, np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[:, :, ::-1])  # cv2 writes BGR
    cv2.imwrite(str(tmp_path / "rgba16.png"), np.concatenate([rgb16[:, :, ::-1], alpha], 2))
    for name in ("rgb16.png", "rgba16.png"):
        got = load_image(tmp_path / name).image.numpy()
        assert np.array_equal(got, (rgb16 >> 8).astype(np.uint8))
        assert np.array_equal(got, cv2.imread(str(tmp_path / name))[:, :, ::-1])
    cmyk = RNG.integers(0, 256, size=(16, 16, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    got = load_image(tmp_path / "cmyk.jpg").image.numpy().astype(int)
    theirs = cv2.imread(str(tmp_path / "cmyk.jpg"))[:, :, ::-1].astype(int)
    assert np.abs(got - theirs).max() <= 3  # decoder rounding only


def test_directory_skips_hidden_files_and_literal_glob_names(tmp_path: Path) -> None:
    Image.fromarray(RGB).save(tmp_path / "a.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS companion
    (tmp_path / "b.JPG").write_bytes((tmp_path / "a.png").read_bytes())  # content sniffed
    assert [p.name for p in list_image_files(tmp_path)] == ["a.png", "b.JPG"]
    Image.fromarray(RGB).save(tmp_path / "c[1].png")  # an existing file is not a pattern
    assert expand_sources(str(tmp_path / "c[1].png")) == [tmp_path / "c[1].png"]


# ---------------------------------------------------------------------------- bad arrays/tensors
@pytest.mark.parametrize(
    "array, error, match",
    [
        (np.full((4, 5, 3), 255.0), ValueError, r"values in \[0, 1\], got \[255, 255\].*255"),
        (np.full((4, 5, 3), -0.5, np.float32), ValueError, r"values in \[0, 1\], got \[-0.5"),
        (np.full((4, 5, 3), np.inf), ValueError, "NaN or infinite"),
        (np.zeros((4, 5, 3), np.int64), TypeError, r"dtype int64.*astype\(np.uint8\)"),
        (np.zeros((4, 5, 3), np.int8), TypeError, "dtype int8"),
        (np.zeros((4, 5, 3), np.complex64), TypeError, "dtype complex64"),
        (np.zeros((4, 5, 3), object), TypeError, "dtype object"),
        (np.zeros((4, 5, 3), "U1"), TypeError, "dtype <U1"),
        (np.zeros((3, 10, 12), np.uint8), ValueError, r"got \(3, 10, 12\).*transpose\(1, 2, 0\)"),
        (np.zeros((2, 4, 5, 3), np.uint8), ValueError, r"got \(2, 4, 5, 3\)"),
        (np.zeros((1, 1, 3, 4, 5), np.uint8), ValueError, r"got \(1, 1, 3, 4, 5\)"),
        (np.zeros(5, np.uint8), ValueError, r"got \(5,\)"),
        (np.array(3, np.uint8), ValueError, r"got \(\)"),
        (np.zeros((4, 0, 3), np.uint8), ValueError, "zero size"),
    ],
)
def test_bad_numpy_images(array: np.ndarray, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_image(array)


def test_numpy_value_conversions() -> None:
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    got = load_image(mask).image
    assert got[1, 2].tolist() == [255] * 3 and int(got.sum()) == 255 * 3
    noisy = RGB / 255.0
    noisy[0, 0, 0], noisy[0, 0, 1] = 1.002, -0.002  # resampling overshoot within 1/255: clamped
    got = load_image(noisy).image.numpy()
    assert got[0, 0, 0] == 255 and got[0, 0, 1] == 0
    assert np.array_equal(got[1:], RGB[1:])
    assert np.array_equal(load_image((RGB / 255).astype(np.float16)).image.numpy(), RGB)
    assert np.array_equal(load_image(RGB.astype(np.uint16) * 257).image.numpy(), RGB)
    assert np.array_equal(load_image(RGB.astype(">u2") * 257).image.numpy(), RGB)  # big-endian


def test_bad_and_odd_tensors() -> None:
    hwc = torch.from_numpy(RGB)
    assert torch.equal(load_image(hwc.bool()).image, hwc.bool().to(torch.uint8) * 255)
    grad = (hwc.float() / 255).requires_grad_()
    assert torch.equal(load_image(grad).image, hwc)
    assert torch.equal(load_image(hwc.permute(2, 0, 1).half() / 255).image, hwc)
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got \[0, 255\]"):
        load_image(hwc.float())  # 0-255 floats: the usual mistake
    with pytest.raises(
        ValueError, match="dense tensor with data, got layout torch.strided on meta"
    ):
        load_image(torch.zeros(3, 4, 5, device="meta"))
    with pytest.raises(ValueError, match="dense tensor with data, got layout torch.sparse_coo"):
        load_image(torch.zeros(3, 4, 5).to_sparse())
    with pytest.raises(TypeError, match=r"dtype torch.complex64.*to\(torch.uint8\)"):
        load_image(torch.zeros(3, 4, 5, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"got \(1, 1, 3, 4, 5\)"):
        load_images(torch.zeros(1, 1, 3, 4, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must have shape .* got \(2, 4, 5\)"):
        load_images(torch.zeros(2, 4, 5, dtype=torch.uint8))  # 3-D is one image, not a batch


@pytest.mark.gpu
def test_cuda_tensor_image() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    hwc = torch.from_numpy(RGB)
    assert torch.equal(load_image(hwc.cuda()).image, hwc)
    assert load_image(hwc.cuda()).image.device.type == "cpu"


# ---------------------------------------------------------------------------- bad files
def test_unreadable_and_undecodable_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(RGB).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match=r"is a directory"):
        load_image(tmp_path)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) - 30])
    with pytest.raises(ValueError, match="cannot read image .*cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="cannot decode PIL image image0"):
        load_image(Image.open(tmp_path / "cut.png"))  # opened lazily by the caller
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in list_image_files(tmp_path)] == ["cut.png", "ok.png"]  # not dir.png

    def denied(*args: object, **kwargs: object) -> Image.Image:
        raise PermissionError(13, "Permission denied", str(args[0]))

    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", denied)
        with pytest.raises(ValueError, match="cannot read image .*ok.png.*Permission denied"):
            load_image(tmp_path / "ok.png")
    with monkeypatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 7x11 = 77 > 2 * 10: a "bomb"
        with pytest.raises(ValueError, match="cannot read image .*ok.png.*decompression bomb"):
            load_image(tmp_path / "ok.png")


def test_directory_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert expand_sources(tmp_path) == []
    with pytest.raises(ValueError, match=r"no images found in .*expected image files"):
        load_images(tmp_path)
    with pytest.raises(ValueError, match="no images found in"):
        load_images([])


def test_multi_frame_image_warns_and_uses_the_first_frame(tmp_path, caplog):
    frames = [Image.new("RGB", (8, 6), color) for color in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with caplog.at_level("WARNING", logger="fastsam_core.io.images"):
        loaded = load_image(path)
    assert "has 2 frames; segmenting the first only" in caplog.text
    assert tuple(loaded.image[0, 0].tolist())[0] > 200  # red: frame 1


# ---------------------------------------------------------------------------- pixel limit
def _black_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit black PNG written row by row: a 180 MP file in ~25 kB, made in a fraction of a
    second without holding its pixels in memory."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(1)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def pixel_limit(monkeypatch: pytest.MonkeyPatch):
    """set_max_pixels changes process-wide state: restore PIL's limit and the warning filters."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    with warnings.catch_warnings():
        yield


def test_huge_image_refused_by_default_and_read_with_max_pixels(
    tmp_path: Path, pixel_limit
) -> None:
    huge = _black_png(tmp_path / "huge.png", 15_000, 12_100)  # 181.5 MP > PIL's 178.96 MP
    one_line = (
        r"cannot read image .*huge\.png: 181,500,000 pixels \(181\.5 MP\), over the limit of "
        r"178,956,970 pixels .*pass --max-pixels 181500000 or more \(0: no limit\)"
    )
    assert max_pixels() == DEFAULT_MAX_PIXELS == 178_956_970  # PIL's own refusal point
    with pytest.raises(ValueError, match=one_line) as caught:
        load_image(huge)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=one_line):
        image_hw(huge)
    set_max_pixels(200_000_000)
    with warnings.catch_warnings(record=True) as shown:
        assert image_hw(huge) == (12_100, 15_000)  # opened: the header says its size
    assert not [w for w in shown if w.category is Image.DecompressionBombWarning]
    set_max_pixels(100_000_000)  # now our check refuses, with the same message
    with pytest.raises(ValueError, match=r"huge\.png: 181,500,000 pixels .* of 100,000,000"):
        load_image(huge)


def test_set_max_pixels_limits_and_lifts(tmp_path: Path, pixel_limit) -> None:
    Image.fromarray(RGB).save(tmp_path / "small.png")  # 7 x 11 = 77 pixels
    set_max_pixels(76)
    with pytest.raises(ValueError, match=r"small\.png: 77 pixels .* of 76 pixels"):
        load_image(tmp_path / "small.png")
    set_max_pixels(77)
    assert np.array_equal(load_image(tmp_path / "small.png").image.numpy(), RGB)
    for off in (0, None, "none", "0"):
        set_max_pixels(50)
        set_max_pixels(off)
        assert max_pixels() is None
        assert load_image(tmp_path / "small.png").hw == (7, 11)
    set_max_pixels("2.5e8")
    assert max_pixels() == 250_000_000
    for bad in (-1, "lots", "1.5", 2.5, True):
        with pytest.raises(ValueError, match="max pixels must be an integer >= 0"):
            set_max_pixels(bad)  # type: ignore[arg-type]


def test_decoding_to_arrays_never_imports_torch() -> None:
    """The torch-free runtime (`fastsam_core.onnxrt`) decodes through this module: with
    `array=True` a directory of photos decodes to numpy arrays while `import torch` raises."""
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from fastsam_core.io.images import load_images\n"
        f"images = load_images({str(PHOTOS_DIR)!r}, array=True)\n"
        "print(len(images), type(images[0].image).__name__, images[0].image.dtype)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(list(PHOTOS_DIR.glob("*.jpg")))), "ndarray", "uint8"]


def test_large_images_are_copied_in_strips_equal_to_one_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Big photos are copied out of Pillow a strip of rows at a time (bounded extra memory); the
    array equals the one-copy path's, whatever the strip size."""
    from fastsam_core.io import images

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (157, 211, 3), dtype=np.uint8))
    expected = np.array(img)
    for strip in (3 * 211, 3 * 211 * 10, 3 * 211 * 156):  # strips of 1, 2 and 39 rows
        monkeypatch.setattr(images, "_STRIP_BYTES", strip // 4)
        out = images._rgb_array(img)
        assert out.flags.writeable and out.flags.c_contiguous
        np.testing.assert_array_equal(out, expected)
