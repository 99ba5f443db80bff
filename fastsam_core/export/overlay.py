"""Mask overlays as PNG without matplotlib (issue #3 part 4, spec §4.1 `plot`).

Like the official plot: every mask gets its own colour blended at `alpha`, the smallest mask
is on top where masks overlap, and mask borders are drawn. Unlike it, colours come from a
deterministic palette and the image is written by Pillow.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fastsam_core.compact_masks import CompactMasks

_GOLDEN = 0.618033988749895


def palette(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 distinct RGB colours: hues spread by the golden ratio from a seeded start."""
    start = np.random.default_rng(seed).random()
    colours = [
        colorsys.hsv_to_rgb((start + i * _GOLDEN) % 1.0, 0.75 if i % 2 else 0.55, 0.95)
        for i in range(n)
    ]
    return (np.asarray(colours, dtype=np.float64).reshape(n, 3) * 255).round().astype(np.uint8)


def _border(crop: np.ndarray) -> np.ndarray:
    """(h, w) bool: mask pixels with a 4-neighbour outside the mask (outside the crop counts)."""
    padded = np.pad(crop, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return crop & ~interior


def render_overlay(
    image: torch.Tensor | np.ndarray,
    masks: CompactMasks,
    alpha: float = 0.6,
    contours: bool = True,
    seed: int = 0,
    contour_color: Sequence[int] = (0, 0, 255),
) -> np.ndarray:
    """Blend masks over an RGB image.

    Args:
        image: (H, W, 3) uint8 RGB (numpy array or tensor).
        masks: N masks in the same (H, W) frame (use `Results.masks_original()` for
            letterbox-frame masks).
        alpha: colour weight in [0, 1] inside masks.
        contours: draw each mask's border pixels in `contour_color` (opaque, 1 px).
        seed: palette seed; mask i always gets colour `palette(N, seed)[i]`.
        contour_color: RGB of the borders.
    Returns:
        (H, W, 3) uint8 RGB numpy array; pixels outside every mask are unchanged.
    """
    img = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {img.dtype} {img.shape}")
    if tuple(img.shape[:2]) != masks.image_hw:
        raise ValueError(
            f"masks live in a {masks.image_hw} frame but the image is {img.shape[:2]}; "
            "resize the masks first (Results.masks_original())"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    masks = masks.to("cpu")
    n = len(masks)
    out = img.copy()
    if n == 0:
        return out
    height, width = masks.image_hw
    # owner[y, x] = index of the mask drawn at that pixel; painting largest first leaves the
    # smallest covering mask on top (the official plot's area-ascending rule). Stable sort:
    # among equal areas the earlier mask ends on top.
    owner = np.full((height, width), -1, dtype=np.int32)
    areas = masks.areas().numpy()
    for i in reversed(np.argsort(areas, kind="stable").tolist()):
        x0, y0, x1, y1 = masks.regions[i].tolist()
        crop = masks.crop(i).numpy()
        if crop.size:
            owner[y0:y1, x0:x1][crop] = i
    # Row 0 of the lookup table is "no mask"; whole-frame arithmetic beats boolean gathers here.
    colours = np.zeros((n + 1, 3), dtype=np.float32)
    colours[1:] = palette(n, seed)
    blended = (1.0 - alpha) * img.astype(np.float32) + alpha * colours[owner + 1]  # (H, W, 3)
    blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    out = np.where((owner >= 0)[..., None], blended, img)
    if contours:
        colour = np.asarray(contour_color, dtype=np.uint8)
        for i in range(n):
            x0, y0, x1, y1 = masks.regions[i].tolist()
            crop = masks.crop(i).numpy()
            if crop.size:
                out[y0:y1, x0:x1][_border(crop)] = colour
    return out


def save_png(array: np.ndarray | torch.Tensor, path: str | Path, overwrite: bool = False) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as PNG with Pillow; never replaces a file silently."""
    from PIL import Image

    arr = array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(
            f"PNG array must be (H, W, 3) or (H, W) uint8, got {arr.dtype} {arr.shape}"
        )
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # compress_level 1: about 3x faster than Pillow's default 6 for a few % larger files.
    Image.fromarray(arr).save(target, format="PNG", compress_level=1)
    return target
