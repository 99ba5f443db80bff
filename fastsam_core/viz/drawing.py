"""Pillow panels of `fastsam explain`: prototype grid, coefficient bars, heatmaps, anchor points.

Pure drawing: numpy arrays and tensors in, `PIL.Image` out; nothing here runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

# Colour stops of the heatmap palette (low -> high): dark blue, teal, green, yellow.
_STOPS = np.array([[13, 8, 135], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)
_POSITIVE, _NEGATIVE = (214, 39, 40), (31, 119, 180)  # bar colours: red up, blue down
_BACKGROUND, _INK = (255, 255, 255), (0, 0, 0)
_LABEL_H = 14  # pixels of a text row under the default bitmap font


def colorize(values: np.ndarray) -> np.ndarray:
    """(H, W) floats in [0, 1] -> (H, W, 3) uint8 through the heatmap palette."""
    v = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.minimum(v.astype(np.int64), len(_STOPS) - 2)
    frac = (v - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).round().astype(np.uint8)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _resize(img: Image.Image, scale: int) -> Image.Image:
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


def prototype_grid(protos: torch.Tensor, columns: int = 8, scale: int = 2) -> Image.Image:
    """All K prototypes as tiles, each min-max normalised, labelled with its index.

    Args:
        protos: (K, Hp, Wp) float prototypes.
    """
    k, hp, wp = protos.shape
    rows = -(-k // columns)
    tile_w, tile_h = wp * scale, hp * scale + _LABEL_H
    sheet = Image.new("RGB", (columns * (tile_w + 4), rows * (tile_h + 4)), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i in range(k):
        tile = Image.fromarray(colorize(_normalise(protos[i].float().cpu().numpy())))
        x, y = (i % columns) * (tile_w + 4), (i // columns) * (tile_h + 4)
        sheet.paste(_resize(tile, scale), (x, y + _LABEL_H))
        draw.text((x + 2, y + 1), f"proto {i}", fill=_INK)
    return sheet


def coefficient_chart(coeffs: torch.Tensor, width: int = 512, height: int = 160) -> Image.Image:
    """Bar chart of one mask's K coefficients: red above zero, blue below, index under each bar.

    Args:
        coeffs: (K,) float coefficients.
    """
    values = coeffs.float().cpu().numpy()
    k = len(values)
    img = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    top, bottom = _LABEL_H + 2, height - _LABEL_H - 2
    zero = (top + bottom) / 2
    peak = float(np.abs(values).max()) or 1.0
    slot = width / k
    for i, v in enumerate(values):
        x0, x1 = i * slot + 1, (i + 1) * slot - 1
        y = zero - v / peak * (bottom - top) / 2
        draw.rectangle([x0, min(y, zero), x1, max(y, zero)], fill=_POSITIVE if v > 0 else _NEGATIVE)
        if k <= 64 and i % max(1, k // 16) == 0:
            draw.text((x0, bottom + 2), str(i), fill=_INK)
    draw.line([0, zero, width, zero], fill=_INK)
    draw.text((2, 1), f"coefficients (K={k}), max |c| = {peak:.2f}", fill=_INK)
    return img


def labelled(img: Image.Image, text: str) -> Image.Image:
    """`img` with a one-line caption above it."""
    out = Image.new("RGB", (img.width, img.height + _LABEL_H), _BACKGROUND)
    out.paste(img, (0, _LABEL_H))
    ImageDraw.Draw(out).text((2, 1), text, fill=_INK)
    return out


def side_by_side(images: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    """Images left to right, top-aligned, on white."""
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(im.height for im in images)), _BACKGROUND)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def stacked(images: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    """Images top to bottom, left-aligned, on white."""
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (max(im.width for im in images), height), _BACKGROUND)
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out


def gray(values: torch.Tensor) -> Image.Image:
    """(H, W) floats in [0, 1] (or bool) -> grayscale image."""
    return Image.fromarray(
        (values.float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    )


def heatmap_over(photo: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """Blend a (H0, W0) heatmap in [0, 1] over a (H0, W0, 3) uint8 photo."""
    blended = photo.astype(np.float32) * (1 - alpha) + colorize(heat).astype(np.float32) * alpha
    return Image.fromarray(blended.round().astype(np.uint8))


def anchor_overlay(
    photo: np.ndarray,
    masks: torch.Tensor,
    boxes: torch.Tensor,
    anchors_xy: torch.Tensor,
    strides: Sequence[int],
) -> Image.Image:
    """The photo with each mask tinted, its box, and its anchor point labelled rank and stride.

    Args:
        photo: (H0, W0, 3) uint8 RGB.
        masks: (N, H0, W0) bool.
        boxes: (N, 4) xyxy original pixels.
        anchors_xy: (N, 2) anchor centres in original pixels.
        strides: (N,) the level of each anchor.
    """
    palette = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48)]
    out = photo.astype(np.float32).copy()
    for i in range(masks.shape[0]):
        tint = np.array(palette[i % len(palette)], dtype=np.float32)
        m = masks[i].cpu().numpy()
        out[m] = out[m] * 0.55 + tint * 0.45
    img = Image.fromarray(out.round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for i in range(masks.shape[0]):
        colour = palette[i % len(palette)]
        draw.rectangle([float(v) for v in boxes[i].tolist()], outline=colour, width=2)
        x, y = (float(v) for v in anchors_xy[i].tolist())
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colour, outline=_INK, width=2)
        draw.text((x + 7, y - 7), f"#{i + 1} s{strides[i]}", fill=_INK)
    return img
