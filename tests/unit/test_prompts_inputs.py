"""Prompt input validation: every malformed box/point/label/text fails with a clear message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastsam_core.prompts import parse_boxes, parse_points, parse_texts, prompt
from tests.support.prompt_data import synthetic_results

HW = (60, 80)


@pytest.mark.parametrize(
    "boxes, match",
    [
        ([[30, 10, 20, 40]], r"x2 >= x1 and y2 >= y1"),
        ([[10, 40, 20, 30]], r"x2 >= x1 and y2 >= y1"),
        ([1, 2, 3], r"shape \(4,\) or \(M, 4\), got shape \(1, 3\)"),
        ([[1, 2, 3, 4, 5]], r"got shape \(1, 5\)"),
        (np.zeros((2, 2, 4)), r"got shape \(2, 2, 4\)"),
        ([[1, 2, math.nan, 4]], r"NaN or infinity"),
        ([[1, 2, math.inf, 4]], r"NaN or infinity"),
        ([], r"boxes is empty"),
        (np.zeros((0, 4)), r"boxes is empty"),
        ([[1, 2, 3, 4], [1, 2]], r"rows of 4 numbers"),
        ([[-5, 2, 30, 40]], r"outside the 80x60 image.*clip=True"),
        ([[5, 2, 81, 40]], r"outside the 80x60 image"),
    ],
)
def test_bad_boxes(boxes: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_boxes(boxes, HW)


def test_bad_box_types_and_formats() -> None:
    with pytest.raises(TypeError, match="string"):
        parse_boxes("1,2,3,4", HW)
    with pytest.raises(TypeError, match="real numbers"):
        parse_boxes(torch.ones(4, dtype=torch.bool), HW)
    with pytest.raises(ValueError, match="box_format must be 'xyxy' or 'xywh'"):
        parse_boxes([1, 2, 3, 4], HW, box_format="cxcywh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width, height >= 0"):
        parse_boxes([10, 10, -3, 5], HW, box_format="xywh")


def test_box_formats_and_clip() -> None:
    assert parse_boxes([10, 20, 30, 5], HW, box_format="xywh").tolist() == [[10, 20, 40, 25]]
    assert parse_boxes(torch.tensor([1, 2, 3, 4]), HW).shape == (1, 4)
    clipped = parse_boxes([[-5.5, -1, 100, 70], [0, 0, 80, 60]], HW, clip=True)
    assert clipped.tolist() == [[0, 0, 80, 60], [0, 0, 80, 60]]


@pytest.mark.parametrize(
    "points, labels, match",
    [
        ([[1, 2, 3]], None, r"shape \(2,\) or \(P, 2\)"),
        ([], None, "points is empty"),
        ([[math.nan, 3]], None, "NaN"),
        ([[-1, 3]], None, r"outside the 80x60 image.*clip=True"),
        ([[80, 3]], None, r"x in \[0, 80\)"),
        ([[3, 60]], None, "outside"),
        ([[1, 2], [3, 4]], [1], "got 1 labels for 2 points"),
        ([[1, 2]], [1, 0], "got 2 labels for 1 points"),
        ([[1, 2], [3, 4]], [1, 2], r"labels must be 0 \(background\) or 1"),
        ([[1, 2]], [-1], "labels must be 0"),
        ([[1, 2]], [0.5], "labels must be 0"),
    ],
)
def test_bad_points(points: object, labels: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_points(points, labels, HW)


def test_points_clip_never_wraps() -> None:
    pts, labels = parse_points([[-3, -7], [95.5, 61], [4.7, 5.2]], [1, 0, True], HW, clip=True)
    assert pts.tolist() == [[0, 0], [79, 59], [4.7, 5.2]]
    assert labels.tolist() == [1, 0, 1]
    _, default = parse_points([3, 4], None, HW)
    assert default.tolist() == [1]
    with pytest.raises(TypeError, match="labels must be a sequence"):
        parse_points([[1, 2]], "1", HW)


@pytest.mark.parametrize(
    "texts, error, match",
    [
        ("", ValueError, "must not be empty"),
        ("   ", ValueError, "must not be empty"),
        ([], ValueError, "texts is empty"),
        (["a dog", ""], ValueError, "must not be empty"),
        ([3], TypeError, "texts must be strings"),
        (5, TypeError, "string or a list of strings"),
    ],
)
def test_bad_texts(texts: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_texts(texts)
    assert parse_texts("a dog") == ["a dog"]


def test_prompt_validates_before_work_even_when_empty() -> None:
    res, _ = synthetic_results()
    empty = res[[]]
    with pytest.raises(ValueError, match="x2 >= x1"):
        prompt(empty, boxes=[[30, 10, 20, 40]])
    with pytest.raises(ValueError, match="labels were given without points"):
        prompt(res, labels=[1])
    with pytest.raises(TypeError, match="unknown prompt option"):
        prompt(res, boxes=[1, 2, 3, 4], box_rul="official")
    with pytest.raises(ValueError, match="point_mode must be one of"):
        prompt(res, points=[1, 2], point_mode="blob")
    with pytest.raises(ValueError, match="output='subset'.*point_mode='union'"):
        prompt(res, points=[1, 2], point_mode="union", output="subset")
    assert prompt(res) is res  # no prompt: the everything result itself
    assert len(prompt(empty, boxes=[1, 2, 3, 4])) == 1  # one (empty) row per box, even with none


def test_text_rule_options_checked_up_front() -> None:
    res, _ = synthetic_results()
    with pytest.raises(ValueError, match="needs top_k >= 1"):
        prompt(res, texts="a dog", text_rule="topk")
    with pytest.raises(ValueError, match="needs top_k >= 1"):
        prompt(res, texts="a dog", text_rule="topk", text_top_k=0)
    with pytest.raises(ValueError, match="needs a finite threshold"):
        prompt(res, texts="a dog", text_rule="threshold", text_threshold=math.nan)
