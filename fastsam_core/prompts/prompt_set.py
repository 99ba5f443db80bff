"""One value per image's prompts as tensors: boxes, points, labels, texts and how they select
masks (spec §4).

`make_prompts(boxes=..., points=..., texts=..., **options)` checks everything once (shapes, numbers,
labels, texts, option choices: `fastsam_core.prompt_inputs`, the parser shared with the ONNX
runtime) into a frozen `Prompts` holding CPU tensors; `prompt()`, `Predictor.__call__` and the
CLI pass that value on without parsing again. `Prompts.fit(image_hw)` clips boxes and points to
one image (the only image-dependent step). CLIP settings are not prompt options: the owner of a
run (the `Predictor` or the CLI) builds one `ClipScorer` and passes it on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fastsam_core.prompt_inputs import (
    PROMPT_ARGUMENTS,
    PROMPT_OPTION_NAMES,
    BoxNoMatch,
    PromptArrays,
    PromptOptions,
    PromptOutput,
    clip_boxes_to_image,
    clip_points_to_image,
    make_prompt_arrays,
    make_prompt_options,
    split_per_image,
)

__all__ = [  # the parsing names re-exported for the torch side's existing imports
    "PROMPT_ARGUMENTS",
    "PROMPT_OPTION_NAMES",
    "BoxNoMatch",
    "PromptOptions",
    "PromptOutput",
    "Prompts",
    "make_prompt_options",
    "make_prompt_sets",
    "make_prompts",
]


@dataclass(frozen=True)
class Prompts:
    """One image's prompts, checked once (original-image pixels): `PromptArrays` as tensors.

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
        boxes = None if self.boxes is None else _clipped(clip_boxes_to_image, self.boxes, hw)
        points = None if self.points is None else _clipped(clip_points_to_image, self.points, hw)
        return dataclasses.replace(self, boxes=boxes, points=points, image_hw=hw)

    @classmethod
    def from_arrays(cls, arrays: PromptArrays) -> Prompts:
        """The same prompts with the numpy rows as CPU tensors."""
        return cls(
            boxes=_tensor(arrays.boxes),
            points=_tensor(arrays.points),
            labels=_tensor(arrays.labels),
            texts=arrays.texts,
            options=arrays.options,
            image_hw=arrays.image_hw,
        )


def _tensor(rows: Any) -> torch.Tensor | None:
    return None if rows is None else torch.from_numpy(rows)


def _clipped(clip: Any, rows: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Apply the numpy clip of `prompt_inputs` to (CPU, float64) tensor rows."""
    return torch.from_numpy(clip(rows.detach().cpu().to(torch.float64).numpy(), hw))


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
    arrays = make_prompt_arrays(boxes, points, labels, texts, bboxes=bboxes, **options)
    return None if arrays is None else Prompts.from_arrays(arrays)


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
    image (`prompt_inputs.split_per_image`).
    """
    columns = split_per_image(num_images, boxes, points, labels, texts, bboxes=bboxes, **options)
    if columns is None:
        return None
    return [make_prompts(b, p, lb, t, **options) for b, p, lb, t in columns]
