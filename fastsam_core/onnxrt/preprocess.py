"""Numpy letterbox (spec §3.3): the torch-free twin of `fastsam_core.ops.letterbox`.

Same geometry (`fastsam_core.ops.geometry`, shared) and the same OpenCV INTER_LINEAR fixed-point
arithmetic (taps from `geometry.linear_taps`, shared), so the uint8 network input equals
`ops.letterbox.letterbox_batch` bit for bit (tests/unit/test_onnxrt_ops.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastsam_core.ops.geometry import (
    PAD_VALUE,
    LetterboxGeometry,
    check_imgsz,
    letterbox_geometry,
    linear_taps,
)

__all__ = [
    "PAD_VALUE",
    "LetterboxGeometry",
    "check_imgsz",
    "letterbox",
    "letterbox_batch",
    "letterbox_geometry",
    "resize_linear",
]

_BAND_BYTES = 1 << 19  # int32 intermediate per band of output rows (fits in L2)


def resize_linear(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H0, W0, C) uint8 image, bit-exact with ``cv2.resize(INTER_LINEAR)``
    and with `ops.letterbox.resize_linear` (see that module's docstring for the arithmetic).

    Args:
        image: (H0, W0, C) uint8.
        size_hw: (h, w) output size.

    Returns:
        (h, w, C) uint8, contiguous.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise TypeError(
            f"resize_linear expects an (H0, W0, C) uint8 numpy array, got "
            f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}"
        )
    out_h, out_w = size_hw
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size_hw must be positive, got {size_hw}")
    h0, w0, channels = image.shape
    if (h0, w0) == (out_h, out_w):
        return np.ascontiguousarray(image).copy()
    xi0, xi1, a0, a1 = linear_taps(w0, out_w, clamp_fraction=True)
    yi0, yi1, b0, b1 = linear_taps(h0, out_h, clamp_fraction=False)
    out = np.empty((out_h, out_w, channels), dtype=np.uint8)
    band = max(1, _BAND_BYTES // (4 * out_w * channels))
    a0, a1 = a0[:, None], a1[:, None]  # (w, 1) broadcast over channels
    for r0 in range(0, out_h, band):
        r1 = min(r0 + band, out_h)
        # horizontal pass only on the source rows this band reads
        used, row_of = np.unique(np.concatenate((yi0[r0:r1], yi1[r0:r1])), return_inverse=True)
        rows_src = image[used]  # (R, W0, C) uint8
        rows = rows_src[:, xi0].astype(np.int32) * a0  # (R, w, C) exact in int32
        rows += rows_src[:, xi1].astype(np.int32) * a1
        rows >>= 4  # OpenCV packs the intermediate to int16 with a shift of 4
        n = r1 - r0
        top = rows[row_of[:n]] * b0[r0:r1, None, None]  # (n, w, C) source row y0
        top >>= 16
        bottom = rows[row_of[n:]] * b1[r0:r1, None, None]  # (n, w, C) source row y0 + 1
        bottom >>= 16
        top += bottom
        top += 2
        top >>= 2  # vertical pass: high halves of 16x16-bit products, rounding shift (SIMD path)
        out[r0:r1] = np.clip(top, 0, 255)
    return out


def letterbox(
    image: np.ndarray,
    geometry: LetterboxGeometry,
    pad_value: int = PAD_VALUE,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Resize an (H0, W0, C) uint8 image to ``geometry.resized_hw`` and pad it to ``input_hw``.

    Args:
        image: (H0, W0, C) uint8.
        geometry: from ``letterbox_geometry`` for this image's size.
        pad_value: constant fill of the padding (114 upstream).
        out: optional (H', W', C) uint8 buffer (H' >= H, W' >= W) already filled with
            ``pad_value``; the content is written at its ``pad_top``/``pad_left`` offset.

    Returns:
        (H, W, C) uint8 (``out`` itself when given).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype != np.uint8:
        raise TypeError(
            f"letterbox expects an (H0, W0, C) uint8 numpy array, got "
            f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}"
        )
    if tuple(image.shape[:2]) != tuple(geometry.orig_hw):
        raise ValueError(
            f"image is {tuple(image.shape[:2])} (H0, W0) but the geometry was computed for "
            f"{geometry.orig_hw}; call letterbox_geometry(image.shape[:2], imgsz)"
        )
    h, w = geometry.resized_hw
    content = resize_linear(image, (h, w))  # (h, w, C)
    if out is None:
        out = np.full((*geometry.input_hw, content.shape[2]), pad_value, dtype=np.uint8)
    top, left = geometry.pad_top, geometry.pad_left
    out[top : top + h, left : left + w] = content
    return out


def letterbox_batch(
    images: Sequence[np.ndarray], geometries: Sequence[LetterboxGeometry]
) -> np.ndarray:
    """Letterbox each image with its own geometry, top-left in one batch padded with `PAD_VALUE`
    to the largest (H, W) (as `ops.letterbox.letterbox_batch`).

    Args:
        images: B (H0_i, W0_i, 3) uint8 RGB images.
        geometries: B geometries from `letterbox_geometry`, one per image.

    Returns:
        (B, 3, H, W) uint8 RGB, C-contiguous (the graph's `images` input).
    """
    if not images or len(images) != len(geometries):
        raise ValueError(
            f"letterbox_batch needs one geometry per image and at least one image, got "
            f"{len(images)} images and {len(geometries)} geometries"
        )
    height = max(g.input_hw[0] for g in geometries)
    width = max(g.input_hw[1] for g in geometries)
    batch = np.full((len(images), height, width, 3), PAD_VALUE, dtype=np.uint8)
    for i, (image, geometry) in enumerate(zip(images, geometries)):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i} must be (H0, W0, 3) RGB, got {tuple(image.shape)}")
        letterbox(image, geometry, out=batch[i])  # (H0, W0, 3) -> top-left of slot i
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # (B, H, W, 3) -> (B, 3, H, W)
