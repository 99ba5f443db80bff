"""Prompts: pick masks from everything-mode results with boxes, points or texts (spec §4).

`prompt(results, boxes=..., points=..., labels=..., texts=...)` is the entry point (also reached
through `Predictor.__call__`); `prompt_set.py` checks prompts once into a `Prompts` value,
`box.py`, `point.py` and `text.py` hold each selection rule and `clip_scorer.py` the batched CLIP
model.
"""

from fastsam_core.prompts.apply import prompt
from fastsam_core.prompts.box import BoxMatch, select_boxes
from fastsam_core.prompts.clip_scorer import ClipScorer, ClipSettings, get_clip_scorer
from fastsam_core.prompts.inputs import parse_boxes, parse_points, parse_texts
from fastsam_core.prompts.point import PointMode, select_instances, union_mask
from fastsam_core.prompts.prompt_results import PromptResults
from fastsam_core.prompts.prompt_set import (
    PromptOptions,
    Prompts,
    make_prompt_options,
    make_prompt_sets,
    make_prompts,
)
from fastsam_core.prompts.text import TextMatch, TextRule, masked_crops, select_texts

__all__ = [
    "BoxMatch",
    "ClipScorer",
    "ClipSettings",
    "PointMode",
    "PromptOptions",
    "PromptResults",
    "Prompts",
    "TextMatch",
    "TextRule",
    "get_clip_scorer",
    "make_prompt_options",
    "make_prompt_sets",
    "make_prompts",
    "masked_crops",
    "parse_boxes",
    "parse_points",
    "parse_texts",
    "prompt",
    "select_boxes",
    "select_instances",
    "select_texts",
    "union_mask",
]
