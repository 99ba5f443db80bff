"""A tiny synthetic instance-segmentation dataset (shapes on textured backgrounds, COCO JSON).

For tests and demos: circles, rectangles and triangles of random colours, non-overlapping, on a
noisy striped background. Categories: 1 circle, 2 rectangle, 3 triangle. A fraction of the
annotations is written as compressed RLE instead of polygons so both loaders get exercised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = [
    {"id": 1, "name": "circle"},
    {"id": 2, "name": "rectangle"},
    {"id": 3, "name": "triangle"},
]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-contrast noise plus stripes, (H, W, 3) uint8."""
    base = rng.integers(60, 200, 3)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(8, 32)
    stripes = 20 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    noise = rng.normal(0, 12, (height, width, 3))
    img = base[None, None, :] + stripes[..., None] + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_polygon(
    kind: int, cx: float, cy: float, r: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    if kind == 1:  # circle as a 32-gon
        return [
            (cx + r * math.cos(t), cy + r * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)
        ]
    rot = rng.uniform(0, 2 * math.pi)
    if kind == 2:  # rectangle, random aspect and rotation
        a, b = r, r * rng.uniform(0.5, 1.0)
        corners = [(-a, -b), (a, -b), (a, b), (-a, b)]
    else:  # triangle
        corners = [
            (r * math.cos(t), r * math.sin(t)) for t in (0, 2 * math.pi / 3, 4 * math.pi / 3)
        ]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def make_synthetic_dataset(
    out_dir: str | Path,
    num_images: int = 16,
    image_size: tuple[int, int] = (160, 192),
    max_objects: int = 4,
    seed: int = 0,
    rle_fraction: float = 0.25,
    name: str = "annotations.json",
) -> Path:
    """Write `out_dir/images/*.png` and `out_dir/<name>` (COCO instances) and return the json path.

    Args:
        out_dir: destination folder (created).
        num_images: images to draw.
        image_size: (height, width) of every image.
        max_objects: objects per image are drawn from 1..max_objects.
        seed: the dataset is a pure function of its arguments.
        rle_fraction: share of annotations stored as compressed RLE.
        name: annotation file name.
    """
    from fastsam_core.export.rle import encode_dense

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    H, W = image_size
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id in range(1, num_images + 1):
        canvas = Image.fromarray(_background(rng, H, W))
        draw = ImageDraw.Draw(canvas)
        placed: list[tuple[float, float, float]] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(20):  # rejection sampling for non-overlapping shapes
                r = rng.uniform(0.08, 0.2) * min(H, W)
                cx, cy = rng.uniform(r, W - r), rng.uniform(r, H - r)
                if all(math.hypot(cx - px, cy - py) > r + pr + 2 for px, py, pr in placed):
                    break
            else:
                continue
            placed.append((cx, cy, r))
            kind = int(rng.integers(1, 4))
            # Rounded as written to the json, so the stored polygon and the mask/area agree.
            poly = [(round(x, 2), round(y, 2)) for x, y in _shape_polygon(kind, cx, cy, r, rng)]
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.polygon(poly, fill=colour)
            mask_img = Image.new("L", (W, H), 0)
            ImageDraw.Draw(mask_img).polygon(poly, fill=1, outline=1)
            mask = np.asarray(mask_img, dtype=bool)
            ys, xs = np.nonzero(mask)
            bbox = [
                float(xs.min()),
                float(ys.min()),
                float(xs.max() + 1 - xs.min()),
                float(ys.max() + 1 - ys.min()),
            ]
            if rng.random() < rle_fraction:
                segmentation: object = encode_dense(mask)
                if isinstance(segmentation["counts"], bytes):  # type: ignore[index]
                    segmentation["counts"] = segmentation["counts"].decode()  # type: ignore[index]
            else:
                segmentation = [[v for xy in poly for v in xy]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": kind,
                    "segmentation": segmentation,
                    "bbox": bbox,
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                }
            )
        file_name = f"{image_id:05d}.png"
        canvas.save(out_dir / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": H, "width": W})
    ann_path = out_dir / name
    with open(ann_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return ann_path
