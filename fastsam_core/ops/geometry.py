"""Letterbox geometry: where an image sits inside the padded network input (spec §3.3).

Pure Python (no torch), shared by the torch path (`fastsam_core.ops.letterbox`) and the torch-free
ONNX runtime (`fastsam_core.onnxrt`). Also holds OpenCV's INTER_LINEAR tap arithmetic, the part of
the bit-exact resize that both the torch and the numpy letterbox compute identically.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

COEF_BITS = 11  # OpenCV INTER_RESIZE_COEF_BITS
COEF_SCALE = 1 << COEF_BITS
PAD_VALUE = 114  # letterbox fill of both references (spec §3.3); training pads with it too


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where an original image sits inside the padded network input.

    Attributes:
        orig_hw: (H0, W0) original image size.
        resized_hw: (h, w) content size after the resize.
        input_hw: (H, W) padded network input size.
        pad_top: rows of padding above the content (``pad_bottom = H - h - pad_top``).
        pad_left: columns of padding left of the content (``pad_right = W - w - pad_left``).
        gain: the resize ratio r (content px per original px) used to pick ``resized_hw``.
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_hw: tuple[int, int]
    pad_top: int
    pad_left: int
    gain: float

    @property
    def pad_bottom(self) -> int:
        return self.input_hw[0] - self.resized_hw[0] - self.pad_top

    @property
    def pad_right(self) -> int:
        return self.input_hw[1] - self.resized_hw[1] - self.pad_left


def _pair(imgsz: int | tuple[int, int] | list[int], name: str = "imgsz") -> tuple[int, int]:
    if isinstance(imgsz, bool):
        raise TypeError(f"{name} must be an int or (height, width), got {imgsz!r}")
    if isinstance(imgsz, int):
        return imgsz, imgsz
    if (
        isinstance(imgsz, (tuple, list))
        and len(imgsz) in (1, 2)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in imgsz)
    ):
        return (imgsz[0], imgsz[0]) if len(imgsz) == 1 else (imgsz[0], imgsz[1])
    raise TypeError(f"{name} must be an int or (height, width) ints, got {imgsz!r}")


def check_imgsz(imgsz: int | tuple[int, int] | list[int], stride: int = 32) -> tuple[int, int]:
    """Round each side of ``imgsz`` UP to a multiple of ``stride`` (8.0.120 ``check_imgsz``, §3.3).

    Args:
        imgsz: an int (square) or (height, width).
        stride: the network's largest stride.

    Returns:
        (H, W) multiples of ``stride``; a warning is logged when a side changed.
    """
    h, w = _pair(imgsz)
    if h <= 0 or w <= 0:
        raise ValueError(f"imgsz must be positive, got {(h, w)}; pass e.g. imgsz=1024")
    out = (math.ceil(h / stride) * stride, math.ceil(w / stride) * stride)
    if out != (h, w):
        logger.warning(
            "imgsz %s is not a multiple of stride %d, updating to %s", (h, w), stride, out
        )
    return out


def letterbox_geometry(
    orig_hw: tuple[int, int],
    imgsz: int | tuple[int, int],
    stride: int = 32,
    auto: bool = True,
    scaleup: bool = True,
) -> LetterboxGeometry:
    """Compute the letterbox resize and padding for one image (spec §3.3).

    Args:
        orig_hw: (H0, W0) original size.
        imgsz: target size, an int (square) or (height, width); not rounded here (see
            ``check_imgsz``).
        stride: with ``auto``, padding is reduced modulo ``stride`` (the minimum rectangle).
        auto: pad only up to the next multiple of ``stride`` instead of up to ``imgsz``.
        scaleup: allow r > 1 (upscaling small images).

    Returns:
        The geometry; ``input_hw`` equals ``imgsz`` when ``auto`` is False.
    """
    if len(orig_hw) != 2:
        raise ValueError(f"orig_hw must be (H0, W0), got {orig_hw!r}")
    h0, w0 = int(orig_hw[0]), int(orig_hw[1])
    if h0 <= 0 or w0 <= 0:
        raise ValueError(f"orig_hw must be positive (H0, W0), got {(h0, w0)}")
    new_h, new_w = _pair(imgsz)
    r = min(new_h / h0, new_w / w0)
    if not scaleup:
        r = min(r, 1.0)
    # Python round() is banker's rounding, as upstream; at least 1 px (8.4.190's thin-image guard)
    unpad_w, unpad_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = new_w - unpad_w, new_h - unpad_h
    if auto:
        dw, dh = dw % stride, dh % stride  # minimum rectangle (Python % is non-negative)
    half_w, half_h = dw / 2, dh / 2  # split between both sides
    top, bottom = round(half_h - 0.1), round(half_h + 0.1)
    left, right = round(half_w - 0.1), round(half_w + 0.1)
    return LetterboxGeometry(
        orig_hw=(h0, w0),
        resized_hw=(unpad_h, unpad_w),
        input_hw=(unpad_h + top + bottom, unpad_w + left + right),
        pad_top=top,
        pad_left=left,
        gain=r,
    )


def linear_taps(
    src: int, dst: int, clamp_fraction: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR source indices and 11-bit weights along one axis (module docstring of
    `fastsam_core.ops.letterbox`): the one tap computation of the torch and numpy letterboxes.

    Args:
        src: source size along the axis.
        dst: output size along the axis.
        clamp_fraction: x axis: outside columns take the border pixel with full weight.

    Returns:
        (i0, i1, w0, w1): (dst,) int64 indices clamped to [0, src - 1] and (dst,) int32 weights.
    """
    d = np.arange(dst, dtype=np.float64)
    f = ((d + 0.5) * (src / dst) - 0.5).astype(np.float32)  # computed in double, stored as float
    i = np.floor(f)
    frac = f - i  # float32
    i = i.astype(np.int64)
    if clamp_fraction:
        outside = (i < 0) | (i >= src - 1)
        frac = np.where(outside, np.float32(0.0), frac)
        i = np.clip(i, 0, src - 1)
    # round-half-even, like cvRound; float32 products as OpenCV
    w0 = np.round((np.float32(1.0) - frac) * np.float32(COEF_SCALE)).astype(np.int32)
    w1 = np.round(frac * np.float32(COEF_SCALE)).astype(np.int32)
    return np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1
