"""One value per image's prompts: boxes, points, labels, texts and how they select masks (spec §4).

`make_prompts(boxes=..., points=..., texts=..., **options)` checks everything once (shapes, numbers,
labels, texts, option choices) into a frozen `Prompts`; `prompt()`, `Predictor.__call__` and the
CLI pass that value on without parsing again. `Prompts.fit(image_hw)` clips boxes and points to
one image (the only image-dependent step). CLIP settings are not prompt options: the owner of a
run (the `Predictor` or the CLI) builds one `ClipScorer` and passes it on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from fastsam_core.ops.references import POSTPROCESS_NAMES, Postprocess
from fastsam_core.prompts.inputs import (
    BoxFormat,
    clip_boxes_to_image,
    clip_points_to_image,
    parse_boxes,
    parse_points,
    parse_texts,
)
from fastsam_core.prompts.point import PointMode
from fastsam_core.prompts.text import MIN_CROP_AREA, TextRule

PromptOutput = Literal["per_prompt", "subset"]
BoxNoMatch = Literal["empty", "reference"]
PROMPT_ARGUMENTS = ("boxes", "bboxes", "points", "labels", "texts")  # bboxes: ultralytics' name


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
    min_text_area: int = MIN_CROP_AREA
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
class Prompts:
    """One image's prompts, checked once (original-image pixels).

    Attributes:
        boxes: (M, 4) float64 xyxy with x1 <= x2, y1 <= y2, or None.
        points: (P, 2) float64 xy, or None; labels: (P,) int64 in {0, 1} (1 = foreground).
        texts: the text prompts, or None.
        options: how the prompts select masks.
        image_hw: (H0, W0) the boxes and points were clipped to (`fit`), None before.
    """

    boxes: torch.Tensor | None = None
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    texts: tuple[str, ...] | None = None
    options: PromptOptions = PromptOptions()
    image_hw: tuple[int, int] | None = None

    def fit(self, image_hw: Sequence[int]) -> Prompts:
        """These prompts with boxes and points clipped to an (H0, W0) image (self if already)."""
        hw = (int(image_hw[0]), int(image_hw[1]))
        if self.image_hw == hw:
            return self
        boxes = None if self.boxes is None else clip_boxes_to_image(self.boxes, hw)
        points = None if self.points is None else clip_points_to_image(self.points, hw)
        return dataclasses.replace(self, boxes=boxes, points=points, image_hw=hw)


def make_prompts(
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> Prompts | None:
    """Check one image's prompts and options into `Prompts`; None when no prompt is given.

    `bboxes` is an alias of `boxes` (ultralytics' keyword); giving both is an error.
    """
    if bboxes is not None:
        if boxes is not None:
            raise TypeError("pass boxes= or its alias bboxes=, not both")
        boxes = bboxes
    opts = make_prompt_options(**options)
    if labels is not None and points is None:
        raise ValueError("labels were given without points; pass points=(P, 2) with the labels")
    if boxes is None and points is None and texts is None:
        return None
    box_rows = None if boxes is None else parse_boxes(boxes, None, opts.box_format)
    point_rows, point_labels = (None, None) if points is None else parse_points(points, labels)
    text_list = None if texts is None else tuple(parse_texts(texts))
    return Prompts(box_rows, point_rows, point_labels, text_list, opts)


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


def make_prompt_sets(
    num_images: int,
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> list[Prompts | None] | None:
    """One `Prompts` (or None) per image; None when no prompt is given at all.

    For one image the prompts are that image's; for B images each of boxes / points / labels /
    texts is a list of B entries (None for none), and a single text string applies to every
    image.
    """
    if bboxes is not None:
        if boxes is not None:
            raise TypeError("pass boxes= or its alias bboxes=, not both")
        boxes = bboxes
    make_prompt_options(**options)  # bad options fail even without prompts
    if boxes is None and points is None and labels is None and texts is None:
        return None
    columns = zip(
        _per_image(boxes, "boxes", num_images),
        _per_image(points, "points", num_images),
        _per_image(labels, "labels", num_images),
        _per_image(texts, "texts", num_images, broadcast_str=True),
    )
    return [make_prompts(b, p, lb, t, **options) for b, p, lb, t in columns]
