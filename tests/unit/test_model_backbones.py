"""Backbones as a part (issue 17): config field, timm features_only backbone + adapters, weights."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from fastsam_core.config import FASTSAM_S, YoloSegConfig, yolov8_seg_config
from fastsam_core.model.backbone import CSPDarknet
from fastsam_core.model.flops import count_flops, count_parameters
from fastsam_core.model.layers import ConvBnAct
from fastsam_core.model.timm_backbone import TimmBackbone, load_backbone_weights, stride_out_indices
from fastsam_core.model.yolov8_seg import build_model
from fastsam_core.weights import CONFIG_KEY, load_config, load_model, save_weights

timm = pytest.importorskip("timm", reason="timm backbones need the timm package")

TINY = yolov8_seg_config("n", imgsz=64)
RESNET = dataclasses.replace(TINY, backbone="timm:resnet18")


def test_default_backbone_is_cspdarknet_and_files_without_the_field_load(tmp_path):
    assert FASTSAM_S.backbone == "cspdarknet"
    data = FASTSAM_S.to_dict()
    del data["backbone"]  # a header written before issue 17
    assert YoloSegConfig.from_dict(data) == FASTSAM_S
    model = build_model(TINY)
    assert isinstance(model.backbone, CSPDarknet)
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    old = {k: v for k, v in TINY.to_dict().items() if k != "backbone"}
    save_file(model.state_dict(), str(path), metadata={CONFIG_KEY: json.dumps(old)})
    loaded = load_model(path)
    assert loaded.cfg == TINY and isinstance(loaded.backbone, CSPDarknet)


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:convnext_atto", "cspdarknet"])
def test_backbone_names_round_trip(name):
    cfg = dataclasses.replace(TINY, backbone=name)
    as_json = json.loads(json.dumps(cfg.to_dict()))
    assert YoloSegConfig.from_dict(as_json) == cfg


@pytest.mark.parametrize(
    "name", ["resnet18", "timm:", "timm:../x", "timm:a b", 3, "timm:" + "a" * 200]
)
def test_invalid_backbone_names_are_refused(name):
    with pytest.raises(ValueError, match="backbone"):
        dataclasses.replace(TINY, backbone=name)


def test_unknown_or_unsuitable_timm_models_are_one_line_errors():
    with pytest.raises(ValueError, match="timm backbone 'no_such_net'"):
        build_model(dataclasses.replace(TINY, backbone="timm:no_such_net"))
    with pytest.raises(ValueError, match="no feature at stride 8"):  # ViT: one stride-16 grid
        stride_out_indices("vit_tiny_patch16_224")


@pytest.mark.parametrize(
    ("name", "indices"), [("resnet18", (2, 3, 4)), ("convnext_atto", (1, 2, 3))]
)
def test_out_indices_pick_strides_8_16_32(name, indices):
    assert stride_out_indices(name) == indices


@pytest.mark.parametrize("hw", [(64, 96), (96, 64)])
def test_timm_backbone_feeds_the_neck_through_adapters(hw):
    torch.manual_seed(0)
    model = build_model(RESNET).eval()
    assert isinstance(model.backbone, TimmBackbone)
    # resnet18 widths 128/256/512 vs the n-scale neck 64/128/256: every level is adapted
    assert all(isinstance(a, ConvBnAct) for a in model.backbone.adapters)
    x = torch.rand(2, 3, *hw)
    with torch.no_grad(), model.capture("backbone.p3", "backbone.p4", "backbone.p5") as f:
        out = model(x)
    h, w = hw
    for name, c, s in zip(("p3", "p4", "p5"), TINY.channels[2:], (8, 16, 32)):
        assert f[f"backbone.{name}"].shape == (2, c, h // s, w // s)
    assert out.protos.shape == (2, 32, h // 4, w // 4)
    assert out.class_logits.shape[2] == sum((h // s) * (w // s) for s in (8, 16, 32))


def test_equal_widths_need_no_adapter():
    # scale s: P3..P5 = 128/256/512, exactly resnet18's widths
    model = build_model(dataclasses.replace(FASTSAM_S, backbone="timm:resnet18"))
    assert all(isinstance(a, nn.Identity) for a in model.backbone.adapters)


def test_parameters_and_flops_per_part():
    model = build_model(RESNET)
    params = count_parameters(model)
    body = sum(p.numel() for p in model.backbone.body.parameters())
    assert params["backbone"] == body + sum(p.numel() for p in model.backbone.adapters.parameters())
    assert body == 11_176_512  # resnet18 without its classifier (timm's features_only)
    assert params["neck"] == count_parameters(build_model(TINY))["neck"]  # same neck
    flops = count_flops(RESNET, 64)
    assert flops["total"] == flops["backbone"] + flops["neck"] + flops["head"]
    assert flops["backbone"] > count_flops(TINY, 64)["backbone"]


def test_saved_timm_model_reloads_from_its_header(tmp_path):
    torch.manual_seed(0)
    model = build_model(RESNET).eval()
    path = tmp_path / "resnet.safetensors"
    save_weights(model.state_dict(), RESNET, path)
    assert load_config(path).backbone == "timm:resnet18"
    loaded = load_model(path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    torch.testing.assert_close(a.class_logits, b.class_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.protos, b.protos, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto"])  # convnext: flattened keys
def test_backbone_weights_from_a_local_timm_checkpoint(tmp_path, name):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = timm.create_model(name, pretrained=False)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    backbone = build_model(dataclasses.replace(TINY, backbone=f"timm:{name}")).backbone
    unused = load_backbone_weights(backbone, path)
    assert unused and all(k.startswith(("fc.", "head.")) for k in unused)  # the classifier
    x = torch.rand(1, 3, 64, 64)
    full.eval(), backbone.eval()
    with torch.no_grad():
        expected = full.forward_intermediates(
            x, indices=stride_out_indices(name), intermediates_only=True
        )
        got = backbone.body(x)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_backbone_weights_of_another_model_are_refused(tmp_path):
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), tmp_path / "r34.pt")
    backbone = build_model(RESNET).backbone
    with pytest.raises(ValueError, match="tensors the backbone does not have.*resnet18"):
        load_backbone_weights(backbone, tmp_path / "r34.pt")
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        load_backbone_weights(backbone, tmp_path / "nope.pt")


def test_backbone_weights_with_other_shapes_are_refused(tmp_path):
    torch.save(timm.create_model("resnet26", pretrained=False).state_dict(), tmp_path / "r26.pth")
    with pytest.raises(ValueError, match=r"\d+ missing and \d+ mis-shaped backbone tensors"):
        load_backbone_weights(build_model(RESNET).backbone, tmp_path / "r26.pth")


def test_backbone_weights_need_a_timm_backbone(tmp_path):
    from fastsam_core.train.run_config import build_training_model

    with pytest.raises(ValueError, match="--backbone-weights needs a timm backbone"):
        build_training_model(None, "n", 1, ("object",), 64, backbone_weights=str(tmp_path / "x"))


def test_backbone_weights_go_through_the_safe_loader(tmp_path):
    """A user's .pt backbone file is read by the allow-list loader: TorchScript is refused."""
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "scripted.pt"))
    with pytest.raises(ValueError, match="TorchScript archive"):
        load_backbone_weights(build_model(RESNET).backbone, tmp_path / "scripted.pt")
