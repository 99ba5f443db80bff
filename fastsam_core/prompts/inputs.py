"""Validation of user prompt inputs: box, point and label arrays (issue #4, "Bad input").

Every prompt enters through one of these functions, so a malformed prompt fails with one message
naming the expected form, what arrived and the fix. Coordinates are original-image pixels; boxes
and points reaching past the image edge are clipped to it (as both references and SAM do).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

BoxFormat = Literal["xyxy", "xywh"]
_logged: set[str] = set()


def _as_float_rows(value: Any, name: str, width: int, form: str) -> torch.Tensor:
    """Array-like -> (M, width) float64 CPU tensor; a single row (width,) becomes (1, width)."""
    if value is None:
        raise ValueError(f"{name} is None; pass {form} or leave the prompt out")
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be numbers {form}, got the string {value!r}")
    if isinstance(value, torch.Tensor):
        tensor = _tensor_on_cpu(value, name)
    else:
        try:
            array = np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"{name} must be {form} with rows of {width} numbers: {err}") from err
        except (TypeError, RuntimeError) as err:  # e.g. a list of CUDA tensors
            raise TypeError(f"{name} must be numbers {form}: {err}") from err
        if array.dtype == object:
            raise ValueError(f"{name} must be {form} with rows of {width} numbers, got {value!r}")
        if array.dtype.kind not in "iuf":  # bool, complex, strings, dates: never read as numbers
            raise TypeError(f"{name} must be real numbers {form}, got dtype {array.dtype}")
        # float64 in native byte order (big-endian or float128 arrays have no torch twin)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must be real numbers {form}, got dtype {tensor.dtype}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}); pass {form} or None")
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[1] != width:
        raise ValueError(f"{name} must be {form}, got shape {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float64)
    bad = ~torch.isfinite(tensor).all(1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"{name} rows {rows} contain NaN or infinity: {tensor[bad].tolist()}")
    return tensor


def _tensor_on_cpu(value: torch.Tensor, name: str) -> torch.Tensor:
    """A dense tensor with data, detached, on the CPU (prompts are small)."""
    if value.device.type == "meta" or value.layout != torch.strided:
        raise ValueError(
            f"{name} must be a dense tensor with data, got layout {value.layout} on {value.device}"
        )
    return value.detach().cpu()


def _as_labels(labels: Any) -> torch.Tensor:
    """Array-like labels -> flat CPU tensor (values are checked by the caller)."""
    if isinstance(labels, str | bytes):
        raise TypeError(f"labels must be a sequence of 0/1, got the string {labels!r}")
    if isinstance(labels, torch.Tensor):
        if labels.is_complex():
            raise TypeError(f"labels must be real numbers 0 or 1, got dtype {labels.dtype}")
        return _tensor_on_cpu(labels, "labels").reshape(-1)
    try:
        array = np.asarray(labels)
    except (ValueError, TypeError, RuntimeError) as err:  # ragged nested lists
        raise ValueError(f"labels must be a flat sequence of 0/1, one per point: {err}") from err
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"labels must be numbers 0 (background) or 1 (foreground), got {labels!r} "
            f"(dtype {array.dtype})"
        )
    return torch.from_numpy(np.ascontiguousarray(array.reshape(-1), dtype=np.float64))


def parse_boxes(
    boxes: Any,
    image_hw: Sequence[int] | None = None,
    box_format: BoxFormat = "xyxy",
) -> torch.Tensor:
    """Check box prompts and convert them to xyxy (then clip them to the image, if given).

    Args:
        boxes: (4,) or (M, 4) numbers in original-image pixels, `box_format` layout.
        image_hw: (H0, W0) of the original image, or None to check the boxes alone.
        box_format: "xyxy" (x1, y1, x2, y2) or "xywh" (x1, y1, width, height; top-left corner).
    Returns:
        (M, 4) float64 xyxy with x1 <= x2, y1 <= y2 (inside [0, W0] x [0, H0] with image_hw).
    """
    if box_format not in ("xyxy", "xywh"):
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    form = f"{box_format} boxes with shape (4,) or (M, 4)"
    rows = _as_float_rows(boxes, "boxes", 4, form)
    if box_format == "xywh":
        if bool((rows[:, 2:] < 0).any()):
            raise ValueError(f"xywh boxes need width, height >= 0, got {rows.tolist()}")
        rows = torch.cat([rows[:, :2], rows[:, :2] + rows[:, 2:]], 1)  # (M, 4) xyxy
    inverted = (rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])
    if bool(inverted.any()):
        raise ValueError(
            f"boxes must be xyxy with x2 >= x1 and y2 >= y1, got {rows[inverted].tolist()} "
            f"(rows {inverted.nonzero().flatten().tolist()}); use box_format='xywh' for "
            "(x, y, width, height) boxes"
        )
    return rows if image_hw is None else clip_boxes_to_image(rows, image_hw)


def clip_boxes_to_image(rows: torch.Tensor, image_hw: Sequence[int]) -> torch.Tensor:
    """(M, 4) checked xyxy boxes clipped to [0, W0] x [0, H0], as both references and SAM do
    (logged once at INFO); a box entirely outside the image is refused.
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    limits = rows.new_tensor([width, height, width, height])
    away = (rows[:, 0] > width) | (rows[:, 1] > height) | (rows[:, 2] < 0) | (rows[:, 3] < 0)
    if bool(away.any()):
        raise ValueError(
            f"boxes {rows[away].tolist()} lie entirely outside the {width}x{height} image "
            "(x in [0, W], y in [0, H]); give boxes in original-image pixels"
        )
    clipped = torch.minimum(rows.clamp(min=0), limits)
    if not torch.equal(clipped, rows):
        _log_once("boxes", "boxes reaching past the %dx%d image were clipped to it", width, height)
    return clipped


def parse_points(
    points: Any,
    labels: Any,
    image_hw: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check point prompts and their labels (then clip the points to the image, if given).

    Args:
        points: (2,) or (P, 2) xy in original-image pixels (pixel (x, y) covers [x, x+1)).
        labels: None (all foreground) or P labels, 1 = foreground, 0 = background.
        image_hw: (H0, W0) of the original image, or None to check the points alone.
    Returns:
        points (P, 2) float64 (inside [0, W0) x [0, H0) with image_hw), labels (P,) int64 in
        {0, 1}.
    """
    rows = _as_float_rows(points, "points", 2, "xy points with shape (2,) or (P, 2)")
    if image_hw is not None:
        rows = clip_points_to_image(rows, image_hw)
    if labels is None:
        return rows, torch.ones(rows.shape[0], dtype=torch.int64)
    label_tensor = _as_labels(labels)
    if label_tensor.numel() != rows.shape[0]:
        raise ValueError(
            f"got {label_tensor.numel()} labels for {rows.shape[0]} points; pass one label "
            "(1 = foreground, 0 = background) per point"
        )
    if label_tensor.dtype == torch.bool:
        label_tensor = label_tensor.long()
    if not bool(((label_tensor == 0) | (label_tensor == 1)).all()):
        raise ValueError(
            f"labels must be 0 (background) or 1 (foreground), got {label_tensor.tolist()}"
        )
    return rows, label_tensor.long()


def clip_points_to_image(rows: torch.Tensor, image_hw: Sequence[int]) -> torch.Tensor:
    """(P, 2) xy points outside the image moved to the nearest pixel (logged once at INFO)."""
    height, width = int(image_hw[0]), int(image_hw[1])
    outside = (rows[:, 0] < 0) | (rows[:, 0] >= width) | (rows[:, 1] < 0) | (rows[:, 1] >= height)
    if not bool(outside.any()):
        return rows
    _log_once("points", "points outside the %dx%d image were moved onto it", width, height)
    return torch.stack([rows[:, 0].clamp(0, width - 1), rows[:, 1].clamp(0, height - 1)], 1)


def _log_once(key: str, message: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.info(message, *args)


def parse_texts(texts: Any) -> list[str]:
    """A string or a sequence of non-empty strings -> list of texts."""
    items = [texts] if isinstance(texts, str) else texts
    if not isinstance(items, Sequence) or isinstance(items, bytes):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    if len(items) == 0:
        raise ValueError("texts is empty; pass a string like 'a dog' or None")
    for text in items:
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings, got {text!r} ({type(text).__name__})")
        if not text.strip():
            raise ValueError(f"text prompts must not be empty or blank, got {text!r}")
    return list(items)
