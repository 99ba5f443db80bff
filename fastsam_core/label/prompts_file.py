"""`fastsam label --prompts prompts.jsonl`: per-image prompts, one JSON object per line.

Line format (original-image pixels, the same values as `Predictor(..., boxes=, points=, ...)`):

    {"image": "photos/dog.jpg", "boxes": [[x1, y1, x2, y2], ...], "points": [[x, y], ...],
     "labels": [1, 0, ...], "texts": ["a dog", ...]}

`image` names a source item by its path as listed, or by its file name when that is unique in
the run. Every key but `image` is optional; the prompt options (--box-format, --point-mode,
--text-rule, ...) apply to every line. Images without a line get the prompt flags (--box,
--point, --text) if any, else everything mode. Everything is checked before the model loads: a
line naming no image of the run, an image named twice, a malformed value fail with the line
number.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastsam_core.prompts import Prompts

_KEYS = ("boxes", "points", "labels", "texts")


def _item_index(items: Sequence[Any]) -> dict[str, int | None]:
    """Key -> source index for path (as listed) and file name; None marks an ambiguous name."""
    index: dict[str, int | None] = {}
    for i, item in enumerate(items):
        if not isinstance(item, (str, Path)):
            continue
        index[str(item)] = i
        name = Path(item).name
        index[name] = None if name in index and index[name] != i else i
    return index


def read_prompts_file(
    path: str | Path,
    items: Sequence[Any],
    default: Prompts | None,
    options: dict[str, Any],
) -> list[Prompts | None]:
    """One `Prompts` (or None for everything mode) per source item.

    Args:
        path: the prompts JSONL file.
        items: the run's source items (expanded, source order).
        default: the prompt flags' `Prompts`, used for images without a line.
        options: `PromptOptions` keywords every line uses.
    """
    from fastsam_core.prompts import make_prompts

    sets: list[Prompts | None] = [default] * len(items)
    index = _item_index(items)
    seen: dict[int, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise FileNotFoundError(f"--prompts {path}: cannot read ({err})") from err
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"--prompts {path} line {number}"
        try:
            line = json.loads(raw)
        except ValueError as err:
            raise ValueError(f"{where}: not JSON ({err})") from err
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            raise ValueError(f'{where}: expected {{"image": "name", "boxes": ...}}, got {raw[:80]}')
        unknown = sorted(set(line) - {"image", *_KEYS})
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {unknown}; expected image, {', '.join(_KEYS)}"
            )
        name = line["image"]
        if name not in index:
            raise ValueError(f"{where}: {name!r} is not an image of this run")
        i = index[name]
        if i is None:
            raise ValueError(f"{where}: several images are named {name!r}; give the path as listed")
        if i in seen:
            raise ValueError(f"{where}: {name!r} already has prompts on line {seen[i]}")
        seen[i] = number
        try:
            sets[i] = make_prompts(*(line.get(k) for k in _KEYS), **options)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}: {err}") from err
    return sets
