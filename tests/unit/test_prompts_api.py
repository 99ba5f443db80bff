"""Prompts through `Predictor.__call__` and `prompt()`: same Results type, per-image prompt sets,
validation before the network runs, combined prompts, PromptResults subsetting."""

from __future__ import annotations

import pytest
import torch

from fastsam_core import Predictor, Results
from fastsam_core.config import yolov8_seg_config
from fastsam_core.model.yolov8_seg import YoloV8Seg, build_model
from fastsam_core.prompts import PromptResults, prompt
from tests.support.prompt_data import synthetic_results
from tests.support.small_nets import calibrate_random_net, small_photos

IMGSZ = 256


def _photos(count: int = 2) -> list[torch.Tensor]:
    return small_photos(count, 300)  # (H0, W0, 3) uint8 RGB


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """A random YOLOv8n-seg with BN stats from the photos and a class bias giving ~20 boxes."""
    torch.manual_seed(0)
    net: YoloV8Seg = build_model(yolov8_seg_config("n", imgsz=IMGSZ))
    inputs = [p.permute(2, 0, 1)[None].float() / 255 for p in _photos()]
    inputs = [torch.nn.functional.interpolate(x, size=(IMGSZ, IMGSZ)) for x in inputs]
    calibrate_random_net(net, inputs)  # ~20 boxes above conf 0.4
    return Predictor(net, imgsz=IMGSZ)


def test_predictor_prompts_equal_prompt_on_everything(predictor: Predictor) -> None:
    photo = _photos(1)[0]
    (everything,) = predictor(photo)
    assert len(everything) > 3
    boxes = everything.boxes[[2, 0, 2]].tolist()
    (boxed,) = predictor(photo, boxes=boxes)
    assert isinstance(boxed, Results) and isinstance(boxed, PromptResults)
    assert boxed.source_ids.tolist() == prompt(everything, boxes=boxes).source_ids.tolist()
    assert len(boxed) == 3 and boxed.source_ids[0] == boxed.source_ids[2]
    h0, w0 = everything.orig_hw
    pts = [[w0 // 2, h0 // 2], [w0 // 3, h0 // 4]]
    (pointed,) = predictor(photo, points=pts, labels=[1, 0], point_mode="union")
    expected = prompt(everything, points=pts, labels=[1, 0], point_mode="union")
    assert len(pointed) == len(expected) and pointed.masks.data.equal(expected.masks.data)


def test_box_rule_follows_postprocess(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    import fastsam_core.predictor as predictor_module

    real = predictor_module.prompt

    def spy(results: Results, **kwargs: object) -> Results:
        seen.append(kwargs["prompts"].options.box_rule)  # type: ignore[attr-defined]
        return real(results, **kwargs)

    monkeypatch.setattr(predictor_module, "prompt", spy)
    photo = _photos(1)[0]
    predictor(photo, boxes=[0, 0, 50, 50])
    predictor(photo, boxes=[0, 0, 50, 50], postprocess="ultralytics")
    predictor(photo, boxes=[0, 0, 50, 50], box_rule="ultralytics")
    assert seen == ["official", "ultralytics", "ultralytics"]


def test_one_prompt_set_per_image(predictor: Predictor) -> None:
    photos = _photos(2)
    everything = predictor(photos)
    boxes = [everything[0].boxes[:2].tolist(), None]
    points = [None, [[10, 10]]]
    out = predictor(photos, boxes=boxes, points=points)
    assert len(out) == 2
    assert out[0].source_ids.tolist() == prompt(everything[0], boxes=boxes[0]).source_ids.tolist()
    assert (
        out[1].source_ids.tolist() == prompt(everything[1], points=[[10, 10]]).source_ids.tolist()
    )
    assert set(out[0].prompt_kinds) <= {"box"} and set(out[1].prompt_kinds) <= {"point"}


def test_prompts_validated_before_the_network(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Predictor, "predict_images", lambda *a, **k: pytest.fail("network ran"))
    photos = _photos(2)
    with pytest.raises(ValueError, match="one entry per image"):
        predictor(photos, boxes=[[0, 0, 5, 5]])
    with pytest.raises(ValueError, match="x2 >= x1"):
        predictor(photos[0], boxes=[[30, 0, 5, 5]])
    with pytest.raises(ValueError, match="entirely outside"):
        predictor(photos[0], boxes=[[-30, 0, -5, 5]])
    with pytest.raises(ValueError, match="labels were given without points"):
        predictor(photos[0], labels=[1])
    with pytest.raises(ValueError, match="must not be empty"):
        predictor(photos[0], texts="")
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['box_rules'\].*prompt arguments"):
        predictor(photos[0], boxes=[0, 0, 5, 5], box_rules="official")


def test_combined_prompts_per_prompt_and_subset() -> None:
    res, dense = synthetic_results(seed=7)
    boxes = res.boxes[[5, 1]]
    point = [[float(v) for v in dense[3].nonzero()[0].flip(0)]]  # a pixel of mask 3 (x, y)
    out = prompt(res, boxes=boxes, points=point)
    assert out.prompt_kinds[:2] == ("box", "box") and set(out.prompt_kinds[2:]) == {"point"}
    assert out.source_ids[:2].tolist() == [5, 1]
    assert 3 in out.source_ids[2:].tolist()
    subset = prompt(res, boxes=boxes, points=point, output="subset", box_rule="ultralytics")
    ids = subset.source_ids.tolist()
    assert ids == sorted(set(out.source_ids.tolist()))  # OR of selections, original order
    # subsetting / device moves keep the prompt columns aligned
    part = out[[2, 0]]
    assert part.source_ids.tolist() == [out.source_ids[2].item(), 5]
    assert part.prompt_kinds == (out.prompt_kinds[2], "box")
    assert out.to("cpu").prompt_scores.equal(out.prompt_scores)
    assert len(out.to_json()["annotations"]) == len(out)  # every Results export works


def test_predictor_bboxes_alias_and_prompt_value(predictor: Predictor) -> None:
    """`bboxes=` (ultralytics' keyword) is `boxes=`; a checked `Prompts` value gives the same rows;
    a box reaching past the image is clipped, not refused."""
    from fastsam_core.prompts import make_prompts

    photo = _photos(1)[0]
    h0, w0 = photo.shape[:2]
    box = [[-20, -10, w0 // 2, h0 // 2]]
    by_boxes = predictor(photo, boxes=box)[0]
    assert predictor(photo, bboxes=box)[0].source_ids.tolist() == by_boxes.source_ids.tolist()
    clipped = predictor(photo, boxes=[[0, 0, w0 // 2, h0 // 2]])[0]
    assert clipped.source_ids.tolist() == by_boxes.source_ids.tolist()
    value = make_prompts(boxes=box)
    via_value = predictor(photo, prompts=value)[0]
    assert via_value.source_ids.tolist() == by_boxes.source_ids.tolist()
    with pytest.raises(TypeError, match="either prompts=Prompts"):
        predictor(photo, prompts=value, boxes=box)
