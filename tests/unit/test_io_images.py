"""fastsam_core.io.images: every source kind -> (H, W, 3) uint8 RGB, clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.io import expand_sources, list_image_files, load_image, load_images

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
