"""label.prompts_file: --prompts JSONL lines -> one Prompts (or None) per source item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastsam_core.label.prompts_file import read_prompts_file
from fastsam_core.prompts import make_prompts

ITEMS = [Path("a/dog.jpg"), Path("b/dog.jpg"), Path("a/cat.jpg")]


def _write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_lines_by_path_or_unique_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"image": "a/dog.jpg", "boxes": [[0, 0, 10, 20]]},
        "",
        {"image": "cat.jpg", "points": [[1, 2], [3, 4]], "labels": [1, 0], "texts": ["a cat"]},
    )
    default = make_prompts(texts=["thing"])
    sets = read_prompts_file(path, ITEMS, default, {"box_format": "xyxy"})
    assert sets[0] is not None and sets[0].boxes.tolist() == [[0, 0, 10, 20]]
    assert sets[1] is default  # no line: the prompt flags
    assert sets[2] is not None and sets[2].labels.tolist() == [1, 0]
    assert sets[2].texts == ("a cat",)
    xywh = read_prompts_file(path, ITEMS, None, {"box_format": "xywh"})
    assert xywh[0] is not None and xywh[0].boxes.tolist() == [[0, 0, 10, 20]]  # x,y,w,h -> xyxy
    assert xywh[1] is None  # everything mode


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("not json", "line 1: not JSON"),
        ({"boxes": [[0, 0, 1, 1]]}, 'line 1: expected {"image": "name"'),
        ({"image": "a/dog.jpg", "box": []}, r"line 1: unknown key\(s\) \['box'\]"),
        ({"image": "fish.jpg"}, "line 1: 'fish.jpg' is not an image of this run"),
        ({"image": "dog.jpg"}, "line 1: several images are named 'dog.jpg'"),
        ({"image": "a/cat.jpg", "boxes": [[0, 0, 1]]}, "line 1: box"),
        ({"image": "a/cat.jpg", "labels": [1]}, "line 1: labels were given without points"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, row: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_prompts_file(_write(tmp_path, row), ITEMS, None, {})


def test_image_named_twice_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {"image": "cat.jpg"}, {"image": "a/cat.jpg"})
    with pytest.raises(ValueError, match="line 2: 'a/cat.jpg' already has prompts on line 1"):
        read_prompts_file(path, ITEMS, None, {})
    with pytest.raises(FileNotFoundError, match="--prompts .*missing.jsonl: cannot read"):
        read_prompts_file(tmp_path / "missing.jsonl", ITEMS, None, {})
