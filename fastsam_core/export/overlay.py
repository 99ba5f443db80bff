"""Mask overlays as PNG without matplotlib (issue #3 part 4, spec §4.1 `plot`).

Like the official plot: every mask gets its own colour blended at `alpha`, the smallest mask
is on top where masks overlap, and mask borders are drawn (optional). Boxes, labels and prompt
markers are optional extras (`export.markers`). Unlike it, colours come from a
deterministic palette and the image is written by Pillow.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastsam_core.export.arrays import as_numpy

if TYPE_CHECKING:
    from fastsam_core.compact_masks import CompactMasks
    from fastsam_core.onnxrt.compact import NumpyCompactMasks
    from fastsam_core.prompts.prompt_set import Prompts
    from fastsam_core.results import Results

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


_STRIP_ROWS = 256  # rows blended at a time: temporaries stay ~ 256 x W x 3 floats


def _blend_window(
    out: np.ndarray, img: np.ndarray, crop: np.ndarray, region: list[int], colour: np.ndarray,
    alpha: float,
) -> None:  # fmt: skip
    """out[window][crop] = round((1 - alpha) * img + alpha * colour), a strip of rows at a time."""
    x0, y0, x1, y1 = region
    for top in range(0, y1 - y0, _STRIP_ROWS):
        sel = crop[top : top + _STRIP_ROWS]  # (h', w) bool
        rows = slice(y0 + top, y0 + top + sel.shape[0])
        pixels = img[rows, x0:x1][sel].astype(np.float32)  # (k, 3)
        blended = (1.0 - alpha) * pixels + alpha * colour  # same float32 arithmetic as before
        out[rows, x0:x1][sel] = np.clip(np.round(blended), 0, 255).astype(np.uint8)


def render_overlay(
    image: Any,
    masks: CompactMasks | NumpyCompactMasks,
    alpha: float = 0.6,
    contours: bool = True,
    seed: int = 0,
    contour_color: Sequence[int] = (0, 0, 255),
    boxes: Any = None,
    labels: Sequence[str] | None = None,
    prompt_boxes: Any = None,
    prompt_points: Any = None,
    point_labels: Any = None,
) -> np.ndarray:
    """Blend masks over an RGB image, optionally with boxes, labels and prompt markers.

    Drawn window by window (each mask's own region, in strips of rows): besides the output
    image, memory stays a few MB whatever the image size.

    Args:
        image: (H, W, 3) uint8 RGB (numpy array or tensor).
        masks: N masks in the same (H, W) frame (use `Results.masks_original()` for
            letterbox-frame masks).
        alpha: colour weight in [0, 1] inside masks.
        contours: draw each mask's border pixels in `contour_color` (opaque, 1 px).
        seed: palette seed; mask i always gets colour `palette(N, seed)[i]`.
        contour_color: RGB of the borders.
        boxes: (N, 4) xyxy boxes drawn in each mask's colour (2 px), or None.
        labels: N strings written at the top-left of each box (of `boxes`, else of the mask's
            region), or None.
        prompt_boxes: (M, 4) xyxy prompt boxes drawn in white, or None.
        prompt_points: (P, 2) xy prompt points drawn as 9 px squares: green for foreground,
            red for background (`point_labels` (P,) 1/0; all foreground if None).
    Returns:
        (H, W, 3) uint8 RGB numpy array; pixels outside every mask and marker are unchanged.
    """
    from fastsam_core.export.markers import draw_box, draw_label, draw_point

    img = as_numpy(image)
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
    for name, value in (("boxes", boxes), ("labels", labels)):
        if value is not None and len(value) != n:
            raise ValueError(f"overlay {name} needs one entry per mask ({n}), got {len(value)}")
    out = img.copy()
    colours = palette(n, seed).astype(np.float32)  # (N, 3)
    regions = masks.regions.tolist()
    # Painting largest first leaves the smallest covering mask on top (the official plot's
    # area-ascending rule); stable sort: among equal areas the earlier mask ends on top.
    areas = as_numpy(masks.areas())
    for i in reversed(np.argsort(areas, kind="stable").tolist()):
        crop = as_numpy(masks.crop(i))
        if crop.size:
            _blend_window(out, img, crop, regions[i], colours[i], alpha)
    if contours:
        colour = np.asarray(contour_color, dtype=np.uint8)
        for i in range(n):
            x0, y0, x1, y1 = regions[i]
            crop = as_numpy(masks.crop(i))
            if crop.size:
                out[y0:y1, x0:x1][_border(crop)] = colour
    label_boxes = regions if boxes is None else as_numpy(boxes).astype(np.float64).tolist()
    if boxes is not None:
        for i, box in enumerate(label_boxes):
            draw_box(out, box, colours[i].astype(np.uint8))
    if labels is not None:
        for i, text in enumerate(labels):
            draw_label(out, text, label_boxes[i][:2], colours[i].astype(np.uint8))
    if prompt_boxes is not None:
        for box in as_numpy(prompt_boxes).astype(np.float64).reshape(-1, 4).tolist():
            draw_box(out, box, np.array([255, 255, 255], dtype=np.uint8))
    if prompt_points is not None:
        points = as_numpy(prompt_points).astype(np.float64).reshape(-1, 2)
        fg = np.ones(len(points)) if point_labels is None else as_numpy(point_labels)
        for (x, y), positive in zip(points.tolist(), fg.reshape(-1).tolist()):
            draw_point(out, (x, y), positive > 0)
    return out


def plot_results(
    results: Results,
    alpha: float = 0.6,
    contours: bool = True,
    seed: int = 0,
    boxes: bool = False,
    labels: bool = False,
    prompts: Prompts | None = None,
) -> np.ndarray:
    """`Results.plot`: `render_overlay` of the masks in the original frame, with the detector
    boxes, "name score" labels and the boxes / points of `prompts` when asked."""
    if results.orig_image is None:
        raise ValueError(
            "plot and save_overlay need orig_image; build Results with orig_image=(H0, W0, 3) uint8"
        )
    names = results.names
    texts = None
    if labels:
        texts = [
            f"{names[c] if 0 <= c < len(names) else c} {s:.2f}"
            for c, s in zip(results.class_ids.tolist(), results.scores.tolist())
        ]
    return render_overlay(
        results.orig_image,
        results.masks_original(),
        alpha=alpha,
        contours=contours,
        seed=seed,
        boxes=results.boxes if boxes else None,
        labels=texts,
        prompt_boxes=None if prompts is None else prompts.boxes,
        prompt_points=None if prompts is None else prompts.points,
        point_labels=None if prompts is None else prompts.labels,
    )


def save_png(array: Any, path: str | Path, overwrite: bool = False) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as PNG with Pillow; never replaces silently."""
    from PIL import Image

    arr = as_numpy(array)
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
