"""Box and point prompts of the torch-free runtime against the torch `prompts.prompt` (issue 14):
the same rows (masks, boxes, scores, prompt columns, JSON) for every rule, mode and layout."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastsam_core.onnxrt.prompts import prompt as prompt_np
from fastsam_core.prompts import prompt
from tests.unit.test_onnxrt_results import assert_same, result_pair

BOXES = [[3.6, 2.5, 30.2, 20.5], [40.0, 20.0, 60.0, 40.0], [0, 0, 0.4, 0.4], [10, 10, 11, 12]]
POINTS = [[42.7, 34.2], [18.0, 17.5], [42.0, 16.9], [49.0, 29.0], [-3.0, 50.0]]

CASES: dict[str, dict[str, Any]] = {
    "one_box": {"boxes": BOXES[0]},
    "boxes": {"boxes": BOXES},
    "boxes_reference_no_match": {"boxes": BOXES, "box_no_match": "reference"},
    "boxes_xywh": {"boxes": [[3, 2, 20, 15], [25, 5, 3, 3]], "box_format": "xywh"},
    "bboxes_alias": {"bboxes": BOXES[:2]},
    "points_instances": {"points": POINTS, "labels": [1, 1, 0, 1, 1]},
    "points_only_negative": {"points": POINTS[:2], "labels": [0, 0]},
    "points_union": {"points": POINTS, "labels": [1, 0, 1, 1, 0], "point_mode": "union"},
    "one_point_union": {"points": POINTS[1], "point_mode": "union"},
    "boxes_and_points": {"boxes": BOXES[:2], "points": POINTS[:3]},
    "subset": {"boxes": BOXES, "points": POINTS, "labels": [1, 0, 1, 1, 1], "output": "subset"},
}


def rows(result: Any) -> str:
    """Everything a prompt row carries, as one comparable JSON string."""
    doc = result.to_json()
    extra = {
        "masks": [np.asarray(x).tolist() for x in (result.masks.regions, result.masks.offsets)],
        "kinds": list(getattr(result, "prompt_kinds", ())),
    }
    return json.dumps([doc, extra])


@pytest.mark.parametrize("box_rule", ["official", "ultralytics"])
@pytest.mark.parametrize("window", [False, True], ids=["retina", "letterbox_frame"])
@pytest.mark.parametrize("case", list(CASES))
def test_prompt_rows_equal_torch(case: str, window: bool, box_rule: str) -> None:
    ours, theirs = result_pair(window, prompt_rows=False)
    kwargs = {**CASES[case], "box_rule": box_rule}
    expected, got = prompt(ours, **kwargs), prompt_np(theirs, **kwargs)
    assert type(got).__name__ == "Numpy" + type(expected).__name__
    assert len(got) == len(expected)
    assert_same(expected.masks, got.masks)
    assert rows(expected) == rows(got)


@pytest.mark.parametrize("case", ["boxes", "subset", "points_union"])
def test_prompt_rows_equal_torch_without_masks(case: str) -> None:
    ours, theirs = result_pair(window=False, prompt_rows=False)
    expected = prompt(ours[[]], **CASES[case])
    got = prompt_np(theirs[[]], **CASES[case])
    assert rows(expected) == rows(got)


def test_no_prompt_returns_the_results() -> None:
    _, theirs = result_pair(window=False, prompt_rows=False)
    assert prompt_np(theirs) is theirs


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"texts": "a dog"}, ValueError, r"^text prompts need the PyTorch install"),
        ({"boxes": [1, 2, 3]}, ValueError, r"boxes must be xyxy boxes with shape \(4,\)"),
        ({"boxes": [5, 5, 1, 1]}, ValueError, "x2 >= x1 and y2 >= y1"),
        ({"boxes": [100, 100, 120, 120]}, ValueError, "lie entirely outside"),
        ({"points": [[1, 2]], "labels": [2]}, ValueError, "labels must be 0"),
        ({"labels": [1]}, ValueError, "labels were given without points"),
        ({"boxes": BOXES, "box_rule": "nearest"}, ValueError, "box_rule must be one of"),
        ({"boxes": BOXES, "colour": 1}, TypeError, r"unknown prompt keyword\(s\) \['colour'\]"),
        ({"points": POINTS, "point_mode": "union", "output": "subset"}, ValueError, "union"),
    ],
)
def test_prompt_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    _, theirs = result_pair(window=False, prompt_rows=False)
    with pytest.raises(error, match=message):
        prompt_np(theirs, **kwargs)


def test_overlay_with_prompt_markers_equals_torch() -> None:
    from fastsam_core.onnxrt.prompt_inputs import make_prompts as make_prompts_np
    from fastsam_core.prompts import make_prompts

    ours, theirs = result_pair(window=True, prompt_rows=False)
    kwargs = {"boxes": BOXES[:2], "points": POINTS, "labels": [1, 0, 1, 1, 0]}
    expected = ours.plot(prompts=make_prompts(**kwargs).fit(ours.orig_hw), boxes=True)
    got = theirs.plot(prompts=make_prompts_np(**kwargs).fit(theirs.orig_hw), boxes=True)
    np.testing.assert_array_equal(expected, got)
