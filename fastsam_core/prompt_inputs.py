"""Prompt inputs checked once, without torch (spec §4; issue #4 "Bad input"): box, point, label
and text prompts and the `PromptOptions` that say how they select masks.

One implementation serves both paths: the PyTorch `fastsam_core.prompts.prompt_set.Prompts`
converts these numpy rows to tensors, the torch-free runtime (`fastsam_core.onnxrt`) uses
`PromptArrays` as they are. Every prompt enters through `parse_boxes` / `parse_points` /
`parse_texts`, so a malformed prompt fails with one message naming the expected form, what arrived
and the fix. Coordinates are original-image pixels; boxes and points reaching past the image edge
are clipped to it (as both references and SAM do). Torch tensors are accepted as inputs (read
through their own methods; torch is never imported here).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fastsam_core.ops.references import POSTPROCESS_NAMES, Postprocess

if TYPE_CHECKING:  # types only: prompts/point.py and prompts/text.py import torch
    from fastsam_core.prompts.point import PointMode
    from fastsam_core.prompts.text import TextRule

logger = logging.getLogger(__name__)

BoxFormat = Literal["xyxy", "xywh"]
PromptOutput = Literal["per_prompt", "subset"]
BoxNoMatch = Literal["empty", "reference"]
PROMPT_ARGUMENTS = ("boxes", "bboxes", "points", "labels", "texts")  # bboxes: ultralytics' name
MIN_TEXT_AREA = 100  # both references skip masks with area <= 100 pixels (prompts/text.py)
_logged: set[str] = set()


@dataclass(frozen=True)
class PromptOptions:
    """How prompts select masks (every field is a keyword of `prompt` and `Predictor.__call__`).

    Attributes:
        box_format: "xyxy" or "xywh" (top-left corner, width, height) input boxes.
        box_rule: "official" (FastSAM repo) or "ultralytics" pixel rounding (see `box.py`).
        box_no_match: the row of a box overlapping no mask: "empty" (an empty mask, IoU 0) or
            "reference" (the references' argmax pick, mask 0, IoU 0); see `apply.py`.
        point_mode: "instances" (each mask under a positive point) or "union" (official: one mask).
        text_rule: "top1", "topk", "threshold" or "official" (see `text.py`).
        text_threshold: minimum cosine similarity for text_rule="threshold".
        text_top_k: masks per text for text_rule="topk".
        min_text_area: masks with area <= this are not scored against texts (references: 100).
        output: "per_prompt" or "subset" (see `apply.py`).
    """

    box_format: BoxFormat = "xyxy"
    box_rule: Postprocess = "official"
    box_no_match: BoxNoMatch = "empty"
    point_mode: PointMode = "instances"
    text_rule: TextRule = "top1"
    text_threshold: float | None = None
    text_top_k: int | None = None
    min_text_area: int = MIN_TEXT_AREA
    output: PromptOutput = "per_prompt"

    def validated(self) -> PromptOptions:
        choices: dict[str, tuple[Any, ...]] = {
            "box_format": ("xyxy", "xywh"),
            "box_rule": POSTPROCESS_NAMES,
            "box_no_match": ("empty", "reference"),
            "point_mode": ("instances", "union"),
            "text_rule": ("top1", "topk", "threshold", "official"),
            "output": ("per_prompt", "subset"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        top_k = self.text_top_k
        if self.text_rule == "topk" and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"text rule 'topk' needs top_k >= 1 (text_top_k=3), got {top_k!r}")
        threshold = self.text_threshold
        if self.text_rule == "threshold" and (threshold is None or not math.isfinite(threshold)):
            raise ValueError(
                f"text rule 'threshold' needs a finite threshold (text_threshold=0.25), got "
                f"{threshold!r}"
            )
        if self.output == "subset" and self.point_mode == "union":
            raise ValueError(
                "output='subset' returns rows of the everything result, but point_mode='union' "
                "builds a new mask; use point_mode='instances' or output='per_prompt'"
            )
        return self


PROMPT_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PromptOptions))


def make_prompt_options(**options: Any) -> PromptOptions:
    """PromptOptions from keywords, rejecting unknown names (listing the prompt arguments too)."""
    unknown = sorted(set(options) - PROMPT_OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown prompt keyword(s) {unknown}; prompt arguments are {list(PROMPT_ARGUMENTS)} "
            f"and prompt options {sorted(PROMPT_OPTION_NAMES)}"
        )
    return PromptOptions(**options).validated()


@dataclass(frozen=True)
class PromptArrays:
    """One image's prompts, checked once (original-image pixels), as numpy arrays.

    Attributes:
        boxes: (M, 4) float64 xyxy with x1 <= x2, y1 <= y2, or None.
        points: (P, 2) float64 xy, or None; labels: (P,) int64 in {0, 1} (1 = foreground).
        texts: the text prompts, or None.
        options: how the prompts select masks.
        image_hw: (H0, W0) the boxes and points were clipped to (`fit`), None before.
    """

    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    texts: tuple[str, ...] | None = None
    options: PromptOptions = PromptOptions()
    image_hw: tuple[int, int] | None = None

    def fit(self, image_hw: Sequence[int]) -> PromptArrays:
        """These prompts with boxes and points clipped to an (H0, W0) image (self if already)."""
        hw = (int(image_hw[0]), int(image_hw[1]))
        if self.image_hw == hw:
            return self
        boxes = None if self.boxes is None else clip_boxes_to_image(self.boxes, hw)
        points = None if self.points is None else clip_points_to_image(self.points, hw)
        return dataclasses.replace(self, boxes=boxes, points=points, image_hw=hw)


def make_prompt_arrays(
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> PromptArrays | None:
    """Check one image's prompts and options into `PromptArrays`; None when no prompt is given.

    `bboxes` is an alias of `boxes` (ultralytics' keyword); giving both is an error.
    """
    boxes = _merge_bboxes(boxes, bboxes)
    opts = make_prompt_options(**options)
    if labels is not None and points is None:
        raise ValueError("labels were given without points; pass points=(P, 2) with the labels")
    if boxes is None and points is None and texts is None:
        return None
    box_rows = None if boxes is None else parse_boxes(boxes, None, opts.box_format)
    point_rows, point_labels = (None, None) if points is None else parse_points(points, labels)
    text_list = None if texts is None else tuple(parse_texts(texts))
    return PromptArrays(box_rows, point_rows, point_labels, text_list, opts)


def split_per_image(
    num_images: int,
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> list[tuple[Any, Any, Any, Any]] | None:
    """(boxes, points, labels, texts) per image; None when no prompt is given at all.

    For one image the prompts are that image's; for B images each of boxes / points / labels /
    texts is a list of B entries (None for none), and a single text string applies to every
    image. Options are checked here too (bad options fail even without prompts).
    """
    boxes = _merge_bboxes(boxes, bboxes)
    make_prompt_options(**options)
    if boxes is None and points is None and labels is None and texts is None:
        return None
    return list(
        zip(
            _per_image(boxes, "boxes", num_images),
            _per_image(points, "points", num_images),
            _per_image(labels, "labels", num_images),
            _per_image(texts, "texts", num_images, broadcast_str=True),
        )
    )


def _merge_bboxes(boxes: Any, bboxes: Any) -> Any:
    if bboxes is None:
        return boxes
    if boxes is not None:
        raise TypeError("pass boxes= or its alias bboxes=, not both")
    return bboxes


def _per_image(value: Any, name: str, num_images: int, broadcast_str: bool = False) -> list[Any]:
    """One prompt value per image: as given for one image, else a sequence of length B."""
    if value is None:
        return [None] * num_images
    if num_images == 1:
        return [value]
    if broadcast_str and isinstance(value, str):
        return [value] * num_images  # one text for every image
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != num_images:
        got = len(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        raise ValueError(
            f"{name} for {num_images} images must be a list with one entry per image (None for "
            f"no prompt), got {got!r} entries; e.g. {name}=[[...], None, ...]"
        )
    return list(value)


# ---------------------------------------------------------------------- parsing
def _is_tensor(value: object) -> bool:
    """`value` is a torch tensor (torch was imported by whoever made it; never imported here)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _check_dense(value: Any, name: str) -> None:
    """A tensor must be dense and hold data (not meta, sparse or nested)."""
    if value.device.type == "meta" or str(value.layout) != "torch.strided":
        raise ValueError(
            f"{name} must be a dense tensor with data, got layout {value.layout} on {value.device}"
        )


def _tensor_array(value: Any, name: str, form: str) -> np.ndarray:
    """A dense tensor with data -> float64 numpy array on the CPU (prompts are small);
    bool and complex tensors are refused."""
    _check_dense(value, name)
    value = value.detach().cpu()
    if value.is_complex() or str(value.dtype) == "torch.bool":
        raise TypeError(f"{name} must be real numbers {form}, got dtype {value.dtype}")
    return value.double().numpy()


def _as_float_rows(value: Any, name: str, width: int, form: str) -> np.ndarray:
    """Array-like -> (M, width) float64; a single row (width,) becomes (1, width)."""
    if value is None:
        raise ValueError(f"{name} is None; pass {form} or leave the prompt out")
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be numbers {form}, got the string {value!r}")
    if _is_tensor(value):
        array = _tensor_array(value, name, form)
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
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}); pass {form} or None")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name} must be {form}, got shape {tuple(array.shape)}")
    # float64 in native byte order, owning its memory (big-endian or float128 inputs included)
    rows = np.array(array, dtype=np.float64, order="C")
    bad = ~np.isfinite(rows).all(1)
    if bad.any():
        raise ValueError(
            f"{name} rows {np.flatnonzero(bad).tolist()} contain NaN or infinity: "
            f"{rows[bad].tolist()}"
        )
    return rows


def _as_labels(labels: Any) -> np.ndarray:
    """Array-like labels -> flat array (values are checked by the caller)."""
    if isinstance(labels, str | bytes):
        raise TypeError(f"labels must be a sequence of 0/1, got the string {labels!r}")
    if _is_tensor(labels):
        if labels.is_complex():
            raise TypeError(f"labels must be real numbers 0 or 1, got dtype {labels.dtype}")
        _check_dense(labels, "labels")
        flat = labels.detach().cpu().reshape(-1)
        return flat.numpy() if str(flat.dtype) == "torch.bool" else flat.double().numpy()
    try:
        array = np.asarray(labels)
    except (ValueError, TypeError, RuntimeError) as err:  # ragged nested lists
        raise ValueError(f"labels must be a flat sequence of 0/1, one per point: {err}") from err
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"labels must be numbers 0 (background) or 1 (foreground), got {labels!r} "
            f"(dtype {array.dtype})"
        )
    return np.array(array.reshape(-1), dtype=np.float64)


def parse_boxes(
    boxes: Any,
    image_hw: Sequence[int] | None = None,
    box_format: BoxFormat = "xyxy",
) -> np.ndarray:
    """Check box prompts and convert them to xyxy (then clip them to the image, if given).

    Args:
        boxes: (4,) or (M, 4) numbers in original-image pixels, `box_format` layout (lists,
            numpy arrays or torch tensors).
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
    return rows if image_hw is None else clip_boxes_to_image(rows, image_hw)


def clip_boxes_to_image(rows: np.ndarray, image_hw: Sequence[int]) -> np.ndarray:
    """(M, 4) checked xyxy boxes clipped to [0, W0] x [0, H0], as both references and SAM do
    (logged once at INFO); a box entirely outside the image is refused.
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    away = (rows[:, 0] > width) | (rows[:, 1] > height) | (rows[:, 2] < 0) | (rows[:, 3] < 0)
    if away.any():
        raise ValueError(
            f"boxes {rows[away].tolist()} lie entirely outside the {width}x{height} image "
            "(x in [0, W], y in [0, H]); give boxes in original-image pixels"
        )
    limits = np.array([width, height, width, height], dtype=rows.dtype)
    clipped = np.minimum(np.maximum(rows, 0), limits)
    if not np.array_equal(clipped, rows):
        _log_once("boxes", "boxes reaching past the %dx%d image were clipped to it", width, height)
    return clipped


def parse_points(
    points: Any,
    labels: Any,
    image_hw: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
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
        return rows, np.ones(rows.shape[0], dtype=np.int64)
    values = _as_labels(labels)
    if values.size != rows.shape[0]:
        raise ValueError(
            f"got {values.size} labels for {rows.shape[0]} points; pass one label "
            "(1 = foreground, 0 = background) per point"
        )
    if values.dtype == np.bool_:
        values = values.astype(np.int64)
    if not ((values == 0) | (values == 1)).all():
        raise ValueError(f"labels must be 0 (background) or 1 (foreground), got {values.tolist()}")
    return rows, values.astype(np.int64)


def clip_points_to_image(rows: np.ndarray, image_hw: Sequence[int]) -> np.ndarray:
    """(P, 2) xy points outside the image moved to the nearest pixel (logged once at INFO)."""
    height, width = int(image_hw[0]), int(image_hw[1])
    outside = (rows[:, 0] < 0) | (rows[:, 0] >= width) | (rows[:, 1] < 0) | (rows[:, 1] >= height)
    if not outside.any():
        return rows
    _log_once("points", "points outside the %dx%d image were moved onto it", width, height)
    return np.stack([rows[:, 0].clip(0, width - 1), rows[:, 1].clip(0, height - 1)], 1)


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
