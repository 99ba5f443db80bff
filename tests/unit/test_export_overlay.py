"""Overlay rendering: colours inside masks, untouched background, smallest on top, contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.export.overlay import palette, render_overlay, save_png


def scene() -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    masks = torch.zeros((3, 40, 50), dtype=torch.bool)
    masks[0, 5:30, 5:40] = True  # large
    masks[1, 10:20, 10:20] = True  # small, inside the large one
    masks[2, 32:38, 42:49] = True  # separate
    return image, masks


def blend(pixel: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    return np.round((1 - alpha) * pixel.astype(np.float32) + alpha * colour).astype(np.uint8)


def test_fill_colours_background_and_stacking_order() -> None:
    image, dense = scene()
    alpha = 0.6
    out = render_overlay(image, CompactMasks.from_dense(dense), alpha=alpha, contours=False)
    colours = palette(3, seed=0).astype(np.float32)
    assert out.shape == image.shape and out.dtype == np.uint8
    covered = dense.any(dim=0).numpy()
    assert np.array_equal(out[~covered], image[~covered])
    # Smallest mask on top where masks overlap (official plot: area ascending).
    assert np.array_equal(out[15, 15], blend(image[15, 15], colours[1], alpha))
    assert np.array_equal(out[25, 30], blend(image[25, 30], colours[0], alpha))
    assert np.array_equal(out[35, 45], blend(image[35, 45], colours[2], alpha))
    # Reordered input: colour i still belongs to mask i, stacking still follows area.
    flipped = render_overlay(
        image, CompactMasks.from_dense(dense[[1, 0, 2]]), alpha=alpha, contours=False
    )
    assert np.array_equal(flipped[15, 15], blend(image[15, 15], colours[0], alpha))
    assert np.array_equal(flipped[25, 30], blend(image[25, 30], colours[1], alpha))


def test_contours_drawn_on_mask_borders_only() -> None:
    image, dense = scene()
    colour = (0, 0, 255)
    out = render_overlay(image, CompactMasks.from_dense(dense), contour_color=colour)
    is_colour = np.all(out == np.asarray(colour, dtype=np.uint8), axis=-1)
    for i, (y0, y1, x0, x1) in enumerate([(5, 30, 5, 40), (10, 20, 10, 20), (32, 38, 42, 49)]):
        assert is_colour[y0, x0:x1].all() and is_colour[y1 - 1, x0:x1].all(), i
        assert is_colour[y0:y1, x0].all() and is_colour[y0:y1, x1 - 1].all(), i
    assert not is_colour[25, 30] and not is_colour[0, 0]
    plain = render_overlay(image, CompactMasks.from_dense(dense), contours=False)
    assert not np.array_equal(plain[5, 5], out[5, 5])


def test_palette_is_distinct_and_deterministic() -> None:
    colours = palette(64, seed=3)
    assert len({tuple(c) for c in colours.tolist()}) == 64
    assert np.array_equal(colours, palette(64, seed=3))
    assert not np.array_equal(colours, palette(64, seed=4))
    assert np.array_equal(palette(5, seed=3), colours[:5])


def test_empty_masks_and_tensor_image() -> None:
    image, _ = scene()
    out = render_overlay(torch.from_numpy(image), CompactMasks.empty((40, 50)))
    assert np.array_equal(out, image)


def test_errors_name_the_problem() -> None:
    image, dense = scene()
    masks = CompactMasks.from_dense(dense)
    with pytest.raises(ValueError, match=r"masks live in a \(40, 50\) frame but the image is"):
        render_overlay(image[:20], masks)
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\) uint8"):
        render_overlay(image.astype(np.float32), masks)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        render_overlay(image, masks, alpha=1.5)


def test_save_png_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    image, dense = scene()
    out = render_overlay(image, CompactMasks.from_dense(dense))
    path = save_png(out, tmp_path / "sub" / "overlay.png")
    assert np.array_equal(np.asarray(Image.open(path)), out)
    with pytest.raises(FileExistsError, match="overlay.png already exists"):
        save_png(out, path)
    save_png(image, path, overwrite=True)
    assert np.array_equal(np.asarray(Image.open(path)), image)
