"""Box and point prompts of the torch-free runtime: `fastsam_core.prompt_inputs` (the one parser,
shared with the PyTorch path: same options, rules and messages) without text prompts.

`make_prompts(boxes=..., points=..., labels=..., **options)` -> `NumpyPrompts` (or None without
prompts); `NumpyPrompts.fit(image_hw)` clips boxes and points to one image. Text prompts need
the CLIP towers, which are not exported: they raise `TEXT_PROMPTS_NEED_TORCH`.
"""

from __future__ import annotations

from typing import Any

from fastsam_core.prompt_inputs import (
    PROMPT_ARGUMENTS,
    PROMPT_OPTION_NAMES,
    PromptArrays,
    make_prompt_arrays,
    make_prompt_options,
    split_per_image,
)

__all__ = [
    "PROMPT_ARGUMENTS",
    "PROMPT_OPTION_NAMES",
    "TEXT_PROMPTS_NEED_TORCH",
    "NumpyPrompts",
    "make_prompt_sets",
    "make_prompts",
]

TEXT_PROMPTS_NEED_TORCH = "text prompts need the PyTorch install (fastsam-core with torch)"
NumpyPrompts = PromptArrays  # the runtime's public name for one image's checked prompts


def make_prompts(
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> NumpyPrompts | None:
    """Check one image's prompts into `NumpyPrompts`; None when no prompt is given.
    Text prompts raise ValueError(`TEXT_PROMPTS_NEED_TORCH`) (after the options are checked)."""
    make_prompt_options(**options)  # bad options fail first, as on the torch path
    if texts is not None:
        raise ValueError(TEXT_PROMPTS_NEED_TORCH)
    return make_prompt_arrays(boxes, points, labels, None, bboxes=bboxes, **options)


def make_prompt_sets(
    num_images: int,
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    bboxes: Any = None,
    **options: Any,
) -> list[NumpyPrompts | None] | None:
    """One `NumpyPrompts` (or None) per image, as `prompts.make_prompt_sets` (lists of one entry
    per image for several images); None when no prompt is given at all."""
    columns = split_per_image(num_images, boxes, points, labels, texts, bboxes=bboxes, **options)
    if columns is None:
        return None
    return [make_prompts(b, p, lb, t, **options) for b, p, lb, t in columns]
