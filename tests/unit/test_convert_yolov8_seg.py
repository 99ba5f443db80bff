"""weights_convert/yolov8_seg.py: the pure key map, config inference and totality checks.

Inputs are synthetic upstream state dicts (tests.support.checkpoints: our tensors renamed to the
spec §1.9 names by a table written independently of the converter); oracle-made files are in
test_convert_oracle.py.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from fastsam_weights_convert.yolov8_seg import DROP, LAYER_PREFIXES, RENAMES, convert_state_dict

from fastsam_core.config import YoloSegConfig, yolov8_seg_config
from fastsam_core.model.yolov8_seg import YoloV8Seg
from tests.support.checkpoints import synthetic_upstream_state_dict

N = yolov8_seg_config("n")
CUSTOM = YoloSegConfig(
    channels=(8, 8, 16, 32, 64), depths=(1, 2, 2, 1), neck_depth=1, proto_channels=16, reg_max=26
)  # no standard scale


@pytest.fixture(scope="module")
def n_upstream() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return synthetic_upstream_state_dict(N)


@pytest.mark.parametrize(
    "cfg",
    [
        N,
        yolov8_seg_config("n", num_classes=80),
        yolov8_seg_config("n", reg_max=26),
        yolov8_seg_config("s", reg_max=16),
        CUSTOM,
    ],
    ids=["n", "n-nc80", "n-r26", "s", "custom"],
)
def test_round_trip_is_exact(cfg):
    upstream, ours = synthetic_upstream_state_dict(cfg)
    converted, inferred = convert_state_dict(upstream)
    assert inferred == cfg
    assert list(converted) == list(YoloV8Seg(cfg).state_dict())  # every target, model order
    for key, tensor in ours.items():  # values landed at the right key (all are distinct)
        assert torch.equal(converted[key], tensor), key


def test_outputs_fp32_and_keeps_integer_buffers(n_upstream):
    upstream, _ = n_upstream
    assert upstream["model.0.conv.weight"].dtype == torch.float16
    converted, _ = convert_state_dict(upstream)
    assert converted["backbone.stem.conv.weight"].dtype == torch.float32
    assert converted["backbone.stem.bn.num_batches_tracked"].dtype == torch.int64


def test_unknown_scale_is_inferred_generally():
    upstream, _ = synthetic_upstream_state_dict(CUSTOM)
    _, cfg = convert_state_dict(upstream)
    assert cfg.scale is None and cfg.channels == (8, 8, 16, 32, 64) and cfg.reg_max == 26


def test_metadata_fills_names_imgsz_eps(n_upstream):
    upstream, _ = n_upstream
    meta = {"scale": "n", "nc": 1, "names": {0: "object"}, "imgsz": 1024, "bn_eps": 1e-5}
    _, cfg = convert_state_dict(upstream, meta)
    assert (cfg.class_names, cfg.imgsz, cfg.bn_eps, cfg.scale) == (("object",), 1024, 1e-5, "n")
    _, cfg = convert_state_dict(upstream, {"imgsz": [640, 800]})
    assert cfg.imgsz == 800


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"scale": "x"}, r"yaml scale='x' but the tensor shapes give 'n'.*channels \(16, 32"),
        ({"nc": 80}, r"yaml nc=80 but the tensor shapes give 1"),
        ({"head_reg_max": 26}, r"head reg_max=26 but the tensor shapes give 16"),
        ({"names": {0: "a", 1: "b"}}, r"names has 2 entries but the class branch has 1"),
        ({"head_npr": 128}, r"head npr=128 but the tensor shapes give 64"),
    ],
)
def test_metadata_inconsistency(n_upstream, meta, match):
    with pytest.raises(ValueError, match=match):
        convert_state_dict(n_upstream[0], meta)


def test_all_inconsistencies_in_one_error(n_upstream):
    with pytest.raises(ValueError, match=r"yaml scale.*; metadata yaml nc"):
        convert_state_dict(n_upstream[0], {"scale": "s", "nc": 3})


def test_detection_model_is_refused(n_upstream):
    detect = {
        k: v
        for k, v in n_upstream[0].items()
        if not k.startswith(("model.22.proto.", "model.22.cv4."))
    }
    with pytest.raises(ValueError, match="detection model, not segmentation"):
        convert_state_dict(detect)


def test_dfl_must_be_arange(n_upstream):
    upstream = dict(n_upstream[0])
    upstream["model.22.dfl.conv.weight"] = torch.ones(1, 16, 1, 1)
    with pytest.raises(ValueError, match=r"dfl\.conv\.weight must be 0\.\.15"):
        convert_state_dict(upstream)


def test_box_branch_must_match_reg_max(n_upstream):
    upstream = dict(n_upstream[0])
    upstream["model.22.cv2.0.2.weight"] = torch.zeros(100, 64, 1, 1)
    with pytest.raises(ValueError, match=r"box branch outputs 100 channels but dfl has reg_max=16"):
        convert_state_dict(upstream)


def test_uneven_neck_depths(n_upstream):
    upstream = dict(n_upstream[0])
    for key in [k for k in upstream if k.startswith("model.12.m.0.")]:
        upstream[key.replace(".m.0.", ".m.1.")] = upstream[key]
    with pytest.raises(ValueError, match=r"neck C2f layers 12/15/18/21 have different depths"):
        convert_state_dict(upstream)


def test_missing_extra_and_misshaped_keys_in_one_error(n_upstream):
    upstream = dict(n_upstream[0])
    del upstream["model.4.m.1.cv2.bn.running_var"]
    del upstream["model.22.proto.upsample.bias"]
    upstream["model.10.weight"] = torch.zeros(3)  # Upsample has no tensors
    upstream["model.9.cv3.conv.weight"] = torch.zeros(3)  # SPPF has no cv3
    upstream["model.15.cv2.bn.bias"] = torch.zeros(7)
    upstream["model.22.cv4.1.2.bias"] = torch.zeros(5)
    upstream["model.0.m.0.cv1.conv.weight"] = torch.zeros(1)  # renames to a name we lack
    upstream["something_else"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        convert_state_dict(upstream)
    message = str(info.value)
    for offender in [
        "model.10.weight",
        "model.9.cv3.conv.weight",
        "something_else",
        "backbone.stages.1.c2f.blocks.1.conv2.bn.running_var",
        "head.proto.upsample.bias",
        "model.15.cv2.bn.bias",
        "got (7,), expected (64,)",
        "model.22.cv4.1.2.bias",
        "got (5,), expected (32,)",
        "model.0.m.0.cv1",
    ]:
        assert offender in message, offender
    assert "model keys not filled (2)" in message
    assert "shape mismatches (2)" in message


def test_missing_architecture_key_is_named(n_upstream):
    upstream = {k: v for k, v in n_upstream[0].items() if k != "model.5.conv.weight"}
    with pytest.raises(ValueError, match=r"lacks 'model\.5\.conv\.weight'"):
        convert_state_dict(upstream)


def test_mapping_tables_are_data():
    # Every upstream layer holding tensors is listed; the tensor-free ones are not.
    assert sorted(LAYER_PREFIXES) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 18, 19, 21, 22]
    assert {block for _, block in LAYER_PREFIXES.values()} == set(RENAMES)
    for patterns in RENAMES.values():
        for pattern, _ in patterns:
            re.compile(pattern)
    for pattern, reason in DROP.items():
        assert reason and re.compile(pattern)


def test_does_not_modify_input(n_upstream):
    upstream = n_upstream[0]
    before = {k: v.clone() for k, v in upstream.items()}
    convert_state_dict(upstream)
    assert all(
        torch.equal(upstream[k], before[k]) and upstream[k].dtype == before[k].dtype for k in before
    )


def test_scale_config_matches_preset_fields():
    cfg = dataclasses.replace(yolov8_seg_config("n"), reg_max=26)
    upstream, _ = synthetic_upstream_state_dict(cfg)
    _, inferred = convert_state_dict(upstream, {"scale": "n", "nc": 1, "head_reg_max": 26})
    assert inferred == cfg
