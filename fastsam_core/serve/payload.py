"""JSON prompt requests of `fastsam serve` -> keywords of `fastsam_core.prompts.prompt`.

A prompt request is a JSON object in original-image pixels (the keywords of
`fastsam_core.prompts.prompt`):

    {"points": [[x, y], ...], "labels": [1, 0, ...], "boxes": [[x1, y1, x2, y2], ...],
     "texts": ["a cup", ...], "options": {"point_mode": "union", ...}}

Every key is optional but one prompt is needed; `options` takes `PromptOptions` fields only.
Values are checked by the package's prompt parser; here only the JSON shape and the counts.
Answers are `Results.to_json()` records (`export.records`: COCO RLE, boxes, scores, and for
prompt rows `prompt_kind`, `prompt_id`, `prompt_score`, `source_id`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastsam_core.prompts import PromptOptions
from fastsam_core.serve.limits import RequestError, ServeLimits

PROMPT_KEYS = ("points", "labels", "boxes", "texts")
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PromptOptions))


def parse_prompt_request(body: Any, limits: ServeLimits) -> dict[str, Any]:
    """A decoded JSON prompt request -> keywords for `prompt(results, **keywords)`.

    Raises RequestError 400 naming the offending key (the prompt parser checks the values).
    """
    if not isinstance(body, dict):
        raise RequestError(400, f"prompt request must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {*PROMPT_KEYS, "options"})
    if unknown:
        raise RequestError(
            400, f"unknown prompt key(s) {unknown}; expected {[*PROMPT_KEYS, 'options']}"
        )
    keywords: dict[str, Any] = {}
    for key in PROMPT_KEYS:
        value = body.get(key)
        if value is None or value == []:
            continue
        if key == "texts" and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise RequestError(400, f"{key} must be a JSON list, got {type(value).__name__}")
        if len(value) > limits.max_prompts:
            raise RequestError(
                400, f"{key} has {len(value)} entries; at most {limits.max_prompts} per request"
            )
        if key == "texts" and any(
            not isinstance(t, str) or len(t) > limits.max_text_chars for t in value
        ):
            raise RequestError(
                400, f"texts must be strings of at most {limits.max_text_chars} characters"
            )
        keywords[key] = value
    if not {"points", "boxes", "texts"} & set(keywords):
        raise RequestError(400, "give at least one prompt: points, boxes or texts")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise RequestError(400, f"options must be a JSON object, got {type(options).__name__}")
    bad = sorted(set(options) - OPTION_NAMES)
    if bad:
        raise RequestError(400, f"unknown prompt option(s) {bad}; expected {sorted(OPTION_NAMES)}")
    return {**keywords, **options}
