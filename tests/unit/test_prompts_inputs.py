"""Prompt input validation: every malformed box/point/label/text fails with a clear message."""

from __future__ import annotations

import logging
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
        ([[-30, 2, -5, 40]], r"entirely outside the 80x60 image"),
        ([[81, 2, 90, 40]], r"entirely outside the 80x60 image"),
        ([[5, 61, 30, 70]], r"entirely outside the 80x60 image"),
        ([[30, -9, 10, 100]], r"x2 >= x1 and y2 >= y1"),  # inverted, even after clipping
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


@pytest.mark.parametrize(
    "boxes, match",
    [
        ([["1", "2", "3", "4"]], r"boxes must be real numbers .* got dtype <U1"),
        (np.array([[1, 2, 3, 4]], dtype="S1"), r"got dtype \|S1"),
        (np.ones((1, 4), dtype=bool), r"got dtype bool"),
        (np.ones((1, 4), dtype=np.complex64), r"got dtype complex64"),
        (torch.ones(1, 4, dtype=torch.complex64), r"got dtype torch.complex64"),
        (np.array(["2024-01-01"] * 4, dtype="datetime64[D]"), r"got dtype datetime64"),
    ],
)
def test_non_numeric_boxes_rejected(boxes: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        parse_boxes(boxes, HW)


def test_box_tensors_and_arrays_of_any_layout() -> None:
    """Any device/dtype/byte order is read as float64 on the CPU; meta/sparse are rejected."""
    big_endian = np.array([[1, 2, 30, 40]], dtype=">i4")
    assert parse_boxes(big_endian, HW).tolist() == [[1, 2, 30, 40]]
    assert parse_boxes(np.array([1, 2, 3, 4], dtype=np.longdouble), HW).tolist() == [[1, 2, 3, 4]]
    assert parse_boxes(torch.tensor([1, 2, 3, 4], dtype=torch.float16), HW).dtype == torch.float64
    grad = torch.tensor([1.0, 2, 3, 4], requires_grad=True)
    assert parse_boxes(grad, HW).tolist() == [[1, 2, 3, 4]]
    assert parse_boxes([torch.tensor([1.0, 2, 3, 4]), (5, 6, 7, 8)], HW).shape == (2, 4)
    with pytest.raises(ValueError, match="boxes must be a dense tensor with data"):
        parse_boxes(torch.zeros(4, device="meta"), HW)
    with pytest.raises(ValueError, match="boxes must be a dense tensor"):
        parse_boxes(torch.tensor([[1.0, 2, 3, 4]]).to_sparse(), HW)
    with pytest.raises(ValueError, match="points must be a dense tensor"):
        parse_points(torch.zeros(2, device="meta"), None, HW)
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 4\)"):
        parse_boxes(torch.zeros(1, 1, 4), HW)
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 1, 1, 4\)"):
        parse_boxes(np.zeros((1, 1, 1, 1, 4)), HW)


def test_box_formats_and_clip(caplog: pytest.LogCaptureFixture) -> None:
    """Boxes reaching past the edge are clipped to the image (both references and SAM do),
    logged once at INFO; boxes touching the edge are kept as they are."""
    from fastsam_core import prompt_inputs as inputs  # the one parser (torch and ONNX runtime)

    assert parse_boxes([10, 20, 30, 5], HW, box_format="xywh").tolist() == [[10, 20, 40, 25]]
    assert parse_boxes(torch.tensor([1, 2, 3, 4]), HW).shape == (1, 4)
    inputs._logged.discard("boxes")
    with caplog.at_level(logging.INFO, logger="fastsam_core.prompt_inputs"):
        assert parse_boxes([0, 0, 80, 60], HW).tolist() == [[0, 0, 80, 60]]
        assert "clipped" not in caplog.text  # on the edge: nothing to clip
        clipped = parse_boxes([[-5.5, -1, 100, 70], [0, 0, 80, 60]], HW)
        again = parse_boxes([[70, 50, 90, 65]], HW)
    assert clipped.tolist() == [[0, 0, 80, 60], [0, 0, 80, 60]]
    assert again.tolist() == [[70, 50, 80, 60]]
    assert caplog.text.count("clipped") == 1 and "INFO" in caplog.text  # logged once
    assert parse_boxes([[-5, 2, 30, 40]]).tolist() == [[-5, 2, 30, 40]]  # no image: unclipped


@pytest.mark.parametrize(
    "points, labels, match",
    [
        ([[1, 2, 3]], None, r"shape \(2,\) or \(P, 2\)"),
        ([], None, "points is empty"),
        ([[math.nan, 3]], None, "NaN"),
        ([[1, 2], [3, 4]], [1], "got 1 labels for 2 points"),
        ([[1, 2]], [1, 0], "got 2 labels for 1 points"),
        ([[1, 2], [3, 4]], [1, 2], r"labels must be 0 \(background\) or 1"),
        ([[1, 2]], [-1], "labels must be 0"),
        ([[1, 2]], [0.5], "labels must be 0"),
        ([[1, 2]], [math.nan], "labels must be 0"),
        ([[1, 2], [3, 4]], [[1], [0, 1]], "labels must be a flat sequence of 0/1"),
        ([[1, 2]], [], "got 0 labels for 1 points"),
        ([[math.inf, 2]], None, "NaN or infinity"),
        ([[1, 2, 3, 4]], None, r"got shape \(1, 4\)"),
    ],
)
def test_bad_points(points: object, labels: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_points(points, labels, HW)


def test_points_clip_never_wraps() -> None:
    pts, labels = parse_points([[-3, -7], [95.5, 61], [4.7, 5.2]], [1, 0, True], HW)
    assert pts.tolist() == [[0, 0], [79, 59], [4.7, 5.2]]
    assert labels.tolist() == [1, 0, 1]
    _, default = parse_points([3, 4], None, HW)
    assert default.tolist() == [1]
    with pytest.raises(TypeError, match="labels must be a sequence"):
        parse_points([[1, 2]], "1", HW)
    _, labels_2d = parse_points([[1, 2], [3, 4]], torch.tensor([[1], [0]]), HW)
    assert labels_2d.tolist() == [1, 0] and labels_2d.dtype == torch.int64
    _, one = parse_points([1, 2], np.float32(0), HW)  # a scalar label for one point
    assert one.tolist() == [0]


@pytest.mark.parametrize(
    "labels, match",
    [
        (["1"], r"labels must be numbers 0 \(background\) or 1 .*dtype <U1"),
        ([None], r"labels must be numbers .*dtype object"),
        ({"a": 1}, r"labels must be numbers .*dtype object"),
        ([1j], r"labels must be numbers .*dtype complex128"),
        (torch.tensor([1 + 0j]), r"labels must be real numbers 0 or 1, got dtype torch.complex64"),
    ],
)
def test_non_numeric_labels_rejected(labels: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        parse_points([[1, 2]], labels, HW)


def test_points_on_tiny_images() -> None:
    """1x1 and 1xN images: the only pixel is valid, anything past it is clipped onto it."""
    assert parse_points([[0.5, 0.9]], None, (1, 1))[0].tolist() == [[0.5, 0.9]]
    assert parse_points([[1, 0]], None, (1, 1))[0].tolist() == [[0, 0]]
    assert parse_points([[5, -3]], None, (1, 7))[0].tolist() == [[5, 0]]
    assert parse_boxes([0, 0, 7, 1], (1, 7)).tolist() == [[0, 0, 7, 1]]
    assert parse_boxes([0, 0, 7, 2], (1, 7)).tolist() == [[0, 0, 7, 1]]


@pytest.mark.parametrize(
    "texts, error, match",
    [
        ("", ValueError, "must not be empty"),
        ("   ", ValueError, "must not be empty"),
        ([], ValueError, "texts is empty"),
        (["a dog", ""], ValueError, "must not be empty"),
        ([3], TypeError, "texts must be strings"),
        (5, TypeError, "string or a list of strings"),
        ("\t\n ", ValueError, "must not be empty"),
        (["a dog", None], TypeError, "texts must be strings"),
        ([b"a dog"], TypeError, r"texts must be strings, got b'a dog' \(bytes\)"),
        (b"a dog", TypeError, "string or a list of strings"),
        (np.array(["a dog"]), TypeError, "string or a list of strings"),
        ((t for t in ["a dog"]), TypeError, "string or a list of strings"),
    ],
)
def test_bad_texts(texts: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_texts(texts)
    assert parse_texts("a dog") == ["a dog"]


def test_many_texts_kept_in_order() -> None:
    texts = [f"object {i}" for i in range(500)] + ["a dog", "a dog"]
    assert parse_texts(texts) == texts  # duplicates and order kept
    assert parse_texts(("a", "b")) == ["a", "b"]


def test_prompt_validates_before_work_even_when_empty() -> None:
    res, _ = synthetic_results()
    empty = res[[]]
    with pytest.raises(ValueError, match="x2 >= x1"):
        prompt(empty, boxes=[[30, 10, 20, 40]])
    with pytest.raises(ValueError, match="labels were given without points"):
        prompt(res, labels=[1])
    with pytest.raises(
        TypeError,
        match=r"unknown prompt keyword\(s\) \['box_rul'\]; prompt arguments are \['boxes', "
        r"'bboxes', 'points', 'labels', 'texts'\] and prompt options .*'box_rule'",
    ):
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


def test_bboxes_is_an_alias_of_boxes() -> None:
    """ultralytics users write bboxes=: same rows as boxes=; both at once is an error."""
    res, _ = synthetic_results(seed=3)
    boxes = [[5, 5, 40, 30], [0, 0, 80, 60]]
    assert (
        prompt(res, bboxes=boxes).source_ids.tolist()
        == prompt(res, boxes=boxes).source_ids.tolist()
    )
    with pytest.raises(TypeError, match="boxes= or its alias bboxes=, not both"):
        prompt(res, boxes=boxes, bboxes=boxes)


def test_prompts_checked_once_into_one_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_prompts parses each input once; prompt(prompts=...) uses the value without parsing."""
    from fastsam_core import prompt_inputs as prompt_set_module  # where make_prompts parses
    from fastsam_core.prompts import inputs, make_prompts

    calls: list[str] = []
    for name in ("parse_boxes", "parse_points", "parse_texts"):
        original = getattr(prompt_set_module, name)

        def counting(*args: object, _name: str = name, _fn: object = original) -> object:
            calls.append(_name)
            return _fn(*args)  # type: ignore[operator]

        monkeypatch.setattr(prompt_set_module, name, counting)
    value = make_prompts(
        boxes=[[-10, 5, 40, 30]], points=[[3, 4]], texts="a dog", point_mode="union"
    )
    assert calls == ["parse_boxes", "parse_points", "parse_texts"]
    assert value is not None and value.texts == ("a dog",) and value.image_hw is None
    assert value.boxes.tolist() == [[-10, 5, 40, 30]]  # clipped per image, later
    fitted = value.fit(HW)
    assert fitted.boxes.tolist() == [[0, 5, 40, 30]] and fitted.fit(HW) is fitted
    assert inputs.parse_texts is not prompt_set_module.parse_texts  # the counting wrapper
    res, _ = synthetic_results(hw=HW, seed=1)
    no_text = make_prompts(boxes=[[-10, 5, 40, 30]], points=[[3, 4]], point_mode="union")
    out = prompt(res, prompts=no_text)
    assert calls == ["parse_boxes", "parse_points", "parse_texts", "parse_boxes", "parse_points"]
    assert out.prompt_kinds[0] == "box" and set(out.prompt_kinds) <= {"box", "point"}
    with pytest.raises(TypeError, match="either prompts=Prompts"):
        prompt(res, prompts=no_text, boxes=[1, 2, 3, 4])
    assert make_prompts(point_mode="union") is None  # options alone: no prompt
