"""model.capture(...) (issue 17): named intermediate tensors without module paths or hooks."""

from __future__ import annotations

import pytest
import torch

from fastsam_core.cli import main
from fastsam_core.config import yolov8_seg_config
from fastsam_core.model.capture import FEATURES
from fastsam_core.model.yolov8_seg import build_model

CFG = yolov8_seg_config("n", reg_max=16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(CFG).eval()


@pytest.mark.parametrize("hw", [(64, 96), (128, 64)])
def test_every_feature_has_its_documented_shape(model, hw):
    h, w = hw
    _, _, c3, c4, c5 = CFG.channels
    a = sum((h // s) * (w // s) for s in (8, 16, 32))
    expected = {
        "backbone.p3": (2, c3, h // 8, w // 8),
        "backbone.p4": (2, c4, h // 16, w // 16),
        "backbone.p5": (2, c5, h // 32, w // 32),
        "neck.n3": (2, c3, h // 8, w // 8),
        "neck.n4": (2, c4, h // 16, w // 16),
        "neck.n5": (2, c5, h // 32, w // 32),
        "head.box_dist": (2, 4 * 16, a),
        "head.class_logits": (2, 1, a),
        "head.mask_coeffs": (2, 32, a),
        "head.protos": (2, 32, h // 4, w // 4),
    }
    assert set(expected) == set(FEATURES)
    with torch.no_grad(), model.capture(*FEATURES) as feats:
        out = model(torch.rand(2, 3, h, w))
    assert {k: tuple(v.shape) for k, v in feats.items()} == expected
    assert feats["head.protos"] is out.protos  # the forward's own tensors, not copies


def test_values_equal_a_manual_forward_hook(model):
    seen = {}
    handles = [
        model.backbone.register_forward_hook(lambda m, i, o: seen.update(backbone=o)),
        model.neck.register_forward_hook(lambda m, i, o: seen.update(neck=o)),
        model.head.register_forward_hook(lambda m, i, o: seen.update(head=o)),
    ]
    try:
        x = torch.rand(1, 3, 96, 64)
        with torch.no_grad(), model.capture("backbone.p5", "neck.n3", "head.protos") as feats:
            model(x)
    finally:
        for h in handles:
            h.remove()
    assert list(feats) == ["backbone.p5", "neck.n3", "head.protos"]
    torch.testing.assert_close(feats["backbone.p5"], seen["backbone"][2], rtol=0, atol=0)
    torch.testing.assert_close(feats["neck.n3"], seen["neck"][0], rtol=0, atol=0)
    torch.testing.assert_close(feats["head.protos"], seen["head"].protos, rtol=0, atol=0)


def test_hooks_are_removed_on_exit_even_after_an_error(model):
    parts = (model.backbone, model.neck, model.head)
    before = [len(p._forward_hooks) for p in parts]
    with model.capture("neck.n4") as feats:
        assert feats == {}  # filled only by a forward pass
    with pytest.raises(ValueError, match="multiples of 32"), model.capture("neck.n4"):
        model(torch.rand(1, 3, 50, 64))
    assert [len(p._forward_hooks) for p in parts] == before
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert feats == {}  # a forward after the block leaves the dict alone


def test_gradients_flow_through_captured_tensors():
    torch.manual_seed(0)
    model = build_model(CFG).train()
    with model.capture("neck.n3") as feats:
        model(torch.rand(2, 3, 64, 64))
    feats["neck.n3"].square().mean().backward()
    assert model.backbone.stem.conv.weight.grad is not None
    assert model.head.proto.conv1.conv.weight.grad is None  # after n3: untouched


def test_unknown_names_list_the_valid_ones(model):
    with pytest.raises(ValueError, match=r"unknown feature names \['backbone.stages.0'\].*neck.n3"):
        model.capture("backbone.stages.0")
    with pytest.raises(ValueError, match="unknown feature names"):
        model.capture()


def test_info_lists_every_feature_with_its_shape(capsys):
    assert main(["info", "fastsam-s", "--features", "--imgsz", "320"]) == 0
    out = capsys.readouterr().out
    assert "backbone:   cspdarknet" in out
    assert "neck.n3            (1, 128, 40, 40)" in out
    assert "head.protos        (1, 32, 80, 80)" in out
    assert all(name in out for name in FEATURES)
