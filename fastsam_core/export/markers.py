"""Box outlines, text labels and prompt points drawn in place on an RGB uint8 image (overlays).

Each marker touches only its own few pixels (numpy slices; Pillow draws a label on a small
patch), so drawing costs no full-frame copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_WHITE = np.array([255, 255, 255], dtype=np.uint8)
_BLACK = np.array([0, 0, 0], dtype=np.uint8)


def draw_box(out: np.ndarray, box: Sequence[float], colour: np.ndarray, width: int = 2) -> None:
    """Outline xyxy `box` (pixel edges, clipped to the image) `width` px wide inside it."""
    h, w = out.shape[:2]
    x0, y0 = max(round(box[0]), 0), max(round(box[1]), 0)
    x1, y1 = min(round(box[2]), w), min(round(box[3]), h)
    if x1 <= x0 or y1 <= y0:
        return
    out[y0 : min(y0 + width, y1), x0:x1] = colour
    out[max(y1 - width, y0) : y1, x0:x1] = colour
    out[y0:y1, x0 : min(x0 + width, x1)] = colour
    out[y0:y1, max(x1 - width, x0) : x1] = colour


def draw_point(out: np.ndarray, xy: Sequence[float], positive: bool, radius: int = 4) -> None:
    """A filled (2 * radius + 1) px square at `xy`, green (foreground) or red, ringed in white."""
    x, y = round(xy[0]), round(xy[1])
    ring = radius + 1
    out[max(y - ring, 0) : max(y + ring + 1, 0), max(x - ring, 0) : max(x + ring + 1, 0)] = _WHITE
    colour = np.array([0, 200, 0] if positive else [220, 0, 0], dtype=np.uint8)
    out[
        max(y - radius, 0) : max(y + radius + 1, 0), max(x - radius, 0) : max(x + radius + 1, 0)
    ] = colour


def draw_label(out: np.ndarray, text: str, xy: Sequence[float], colour: np.ndarray) -> None:
    """`text` in black on a `colour` patch whose top-left is `xy` (moved inside the image)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox(text)
    tw, th = int(right - left) + 4, int(bottom - top) + 4
    h, w = out.shape[:2]
    if tw > w or th > h:
        return
    x = min(max(round(xy[0]), 0), w - tw)
    y = min(max(round(xy[1]), 0), h - th)
    patch = Image.new("RGB", (tw, th), tuple(int(c) for c in colour))
    ImageDraw.Draw(patch).text(
        (2 - left, 2 - top), text, fill=tuple(int(c) for c in _BLACK), font=font
    )
    out[y : y + th, x : x + tw] = np.asarray(patch)
