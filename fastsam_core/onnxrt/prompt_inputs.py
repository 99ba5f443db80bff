"""Box and point prompts of the torch-free runtime, checked once (numpy twin of
`fastsam_core.prompts.inputs` + `prompt_set`; the same options, rules and messages).

`make_prompts(boxes=..., points=..., labels=..., **options)` -> `NumpyPrompts` (or None without
prompts); `NumpyPrompts.fit(image_hw)` clips boxes and points to one image. Text prompts need
the CLIP towers, which are not exported: they raise `TEXT_PROMPTS_NEED_TORCH`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TEXT_PROMPTS_NEED_TORCH = "text prompts need the PyTorch install (fastsam-core with torch)"
PROMPT_ARGUMENTS = ("boxes", "bboxes", "points", "labels", "texts")
_CHOICES: dict[str, tuple[str, ...]] = {
    "box_format": ("xyxy", "xywh"),
    "box_rule": ("official", "ultralytics"),
    "box_no_match": ("empty", "reference"),
    "point_mode": ("instances", "union"),
    "text_rule": ("top1", "topk", "threshold", "official"),
    "output": ("per_prompt", "subset"),
}
_logged: set[str] = set()


@dataclass(frozen=True)
class NumpyPromptOptions:
    """How prompts select masks: the fields of `fastsam_core.prompts.PromptOptions` (text
    fields accepted for the same signature; text prompts themselves are refused)."""

    box_format: str = "xyxy"
    box_rule: str = "official"
    box_no_match: str = "empty"
    point_mode: str = "instances"
    text_rule: str = "top1"
    text_threshold: float | None = None
    text_top_k: int | None = None
    min_text_area: int = 100
    output: str = "per_prompt"

    def validated(self) -> NumpyPromptOptions:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.output == "subset" and self.point_mode == "union":
            raise ValueError(
                "output='subset' returns rows of the everything result, but point_mode='union' "
                "builds a new mask; use point_mode='instances' or output='per_prompt'"
            )
        return self


PROMPT_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(NumpyPromptOptions))


@dataclass(frozen=True)
class NumpyPrompts:
    """One image's prompts in original-image pixels (as `fastsam_core.prompts.Prompts`).

    Attributes:
        boxes: (M, 4) float64 xyxy with x1 <= x2, y1 <= y2, or None.
        points: (P, 2) float64 xy, or None; labels: (P,) int64 in {0, 1}.
        texts: always None here (kept for the surface `export.overlay` reads).
        options: how the prompts select masks.
        image_hw: (H0, W0) the boxes and points were clipped to, None before `fit`.
    """

    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    texts: None = None
    options: NumpyPromptOptions = NumpyPromptOptions()
    image_hw: tuple[int, int] | None = None

    def fit(self, image_hw: Sequence[int]) -> NumpyPrompts:
        """These prompts with boxes and points clipped to an (H0, W0) image."""
        hw = (int(image_hw[0]), int(image_hw[1]))
        if self.image_hw == hw:
            return self
        boxes = None if self.boxes is None else _clip_boxes(self.boxes, hw)
        points = None if self.points is None else _clip_points(self.points, hw)
        return dataclasses.replace(self, boxes=boxes, points=points, image_hw=hw)


def make_prompt_options(**options: Any) -> NumpyPromptOptions:
    """Options from keywords, rejecting unknown names."""
    unknown = sorted(set(options) - PROMPT_OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown prompt keyword(s) {unknown}; prompt arguments are {list(PROMPT_ARGUMENTS)} "
            f"and prompt options {sorted(PROMPT_OPTION_NAMES)}"
        )
    return NumpyPromptOptions(**options).validated()


def make_prompts(
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> NumpyPrompts | None:
    """Check one image's prompts into `NumpyPrompts`; None when no prompt is given."""
    if bboxes is not None:
        if boxes is not None:
            raise TypeError("pass boxes= or its alias bboxes=, not both")
        boxes = bboxes
    opts = make_prompt_options(**options)
    if texts is not None:
        raise ValueError(TEXT_PROMPTS_NEED_TORCH)
    if labels is not None and points is None:
        raise ValueError("labels were given without points; pass points=(P, 2) with the labels")
    if boxes is None and points is None:
        return None
    box_rows = None if boxes is None else _parse_boxes(boxes, opts.box_format)
    point_rows, point_labels = (None, None) if points is None else _parse_points(points, labels)
    return NumpyPrompts(box_rows, point_rows, point_labels, None, opts)


def _float_rows(value: Any, name: str, width: int, form: str) -> np.ndarray:
    """Array-like -> (M, width) float64; a single row (width,) becomes (1, width)."""
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be numbers {form}, got the string {value!r}")
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be {form} with rows of {width} numbers: {err}") from err
    if array.dtype == object:
        raise ValueError(f"{name} must be {form} with rows of {width} numbers, got {value!r}")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers {form}, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); pass {form} or None")
    rows = array.astype(np.float64).reshape(1, -1) if array.ndim == 1 else array
    if rows.ndim != 2 or rows.shape[1] != width:
        raise ValueError(f"{name} must be {form}, got shape {array.shape}")
    rows = rows.astype(np.float64)
    bad = ~np.isfinite(rows).all(1)
    if bad.any():
        raise ValueError(
            f"{name} rows {np.flatnonzero(bad).tolist()} contain NaN or infinity: "
            f"{rows[bad].tolist()}"
        )
    return rows


def _parse_boxes(boxes: Any, box_format: str) -> np.ndarray:
    """(4,) or (M, 4) boxes in `box_format` -> (M, 4) float64 xyxy (not yet clipped)."""
    form = f"{box_format} boxes with shape (4,) or (M, 4)"
    rows = _float_rows(boxes, "boxes", 4, form)
    if box_format == "xywh":
        if (rows[:, 2:] < 0).any():
            raise ValueError(f"xywh boxes need width, height >= 0, got {rows.tolist()}")
        rows = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], 1)  # (M, 4) xyxy
    inverted = (rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])
    if inverted.any():
        raise ValueError(
            f"boxes must be xyxy with x2 >= x1 and y2 >= y1, got {rows[inverted].tolist()} "
            f"(rows {np.flatnonzero(inverted).tolist()}); use box_format='xywh' for "
            "(x, y, width, height) boxes"
        )
    return rows


def _parse_points(points: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(2,) or (P, 2) points and P labels in {0, 1} (default all 1)."""
    rows = _float_rows(points, "points", 2, "xy points with shape (2,) or (P, 2)")
    if labels is None:
        return rows, np.ones(rows.shape[0], dtype=np.int64)
    if isinstance(labels, str | bytes):
        raise TypeError(f"labels must be a sequence of 0/1, got the string {labels!r}")
    try:
        array = np.asarray(labels).reshape(-1)
    except (ValueError, TypeError) as err:
        raise ValueError(f"labels must be a flat sequence of 0/1, one per point: {err}") from err
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"labels must be numbers 0 (background) or 1 (foreground), got {labels!r} "
            f"(dtype {array.dtype})"
        )
    if array.size != rows.shape[0]:
        raise ValueError(
            f"got {array.size} labels for {rows.shape[0]} points; pass one label "
            "(1 = foreground, 0 = background) per point"
        )
    if not ((array == 0) | (array == 1)).all():
        raise ValueError(f"labels must be 0 (background) or 1 (foreground), got {array.tolist()}")
    return rows, array.astype(np.int64)


def _clip_boxes(rows: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(M, 4) xyxy clipped to [0, W0] x [0, H0]; a box entirely outside the image is refused."""
    height, width = image_hw
    away = (rows[:, 0] > width) | (rows[:, 1] > height) | (rows[:, 2] < 0) | (rows[:, 3] < 0)
    if away.any():
        raise ValueError(
            f"boxes {rows[away].tolist()} lie entirely outside the {width}x{height} image "
            "(x in [0, W], y in [0, H]); give boxes in original-image pixels"
        )
    clipped = np.minimum(np.maximum(rows, 0), np.array([width, height, width, height], float))
    if not np.array_equal(clipped, rows):
        _log_once("boxes", "boxes reaching past the %dx%d image were clipped to it", width, height)
    return clipped


def _clip_points(rows: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(P, 2) xy points outside the image moved to the nearest pixel."""
    height, width = image_hw
    outside = (rows[:, 0] < 0) | (rows[:, 0] >= width) | (rows[:, 1] < 0) | (rows[:, 1] >= height)
    if not outside.any():
        return rows
    _log_once("points", "points outside the %dx%d image were moved onto it", width, height)
    return np.stack([rows[:, 0].clip(0, width - 1), rows[:, 1].clip(0, height - 1)], 1)


def _log_once(key: str, message: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.info(message, *args)
