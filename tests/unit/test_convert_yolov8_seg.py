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
from fastsam_weights_convert.model_kind import YOLOV8_SEG_LAYERS
from fastsam_weights_convert.yolov8_seg import (
    DROP,
    LAYER_PREFIXES,
    RENAMES,
    class_hidden_rule,
    convert_state_dict,
)

from fastsam_core.config import YoloSegConfig, class_hidden_width, yolov8_seg_config
from fastsam_core.model.yolov8_seg import YoloV8Seg
from tests.support.checkpoints import synthetic_upstream_state_dict, upstream_key

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


# --- class-branch width: the two ultralytics rules (spec §1.4) ---------------------------------


def _class_branch_case(rule: str) -> YoloSegConfig:
    """nc=150 on n (P3 = 64): current rule max(64, min(150, 100)) = 100, 8.0.120 max(64, 150)."""
    width = class_hidden_width(64, 150, rule)  # type: ignore[arg-type]
    return yolov8_seg_config("n", num_classes=150, class_hidden_override=width)


@pytest.mark.parametrize(("rule", "width"), [("current", 100), ("8.0.120", 150)])
def test_class_hidden_width_is_inferred_for_both_rules(rule, width):
    upstream, ours = synthetic_upstream_state_dict(_class_branch_case(rule))
    assert upstream["model.22.cv3.0.0.conv.weight"].shape[0] == width
    converted, cfg = convert_state_dict(upstream)
    assert cfg.class_hidden == width and class_hidden_rule(cfg) == rule
    # The current rule is the default: no override, so the config equals the plain preset.
    expected = None if rule == "current" else 150
    assert cfg.class_hidden_override == expected
    assert cfg == yolov8_seg_config("n", num_classes=150, class_hidden_override=expected)
    model = YoloV8Seg(cfg).eval()
    model.load_state_dict(converted, strict=True)
    reference = YoloV8Seg(_class_branch_case(rule)).eval()
    reference.load_state_dict(ours, strict=True)
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        got, want = model(images), reference(images)
    assert got.class_logits.shape == (1, 150, 8 * 12 + 4 * 6 + 2 * 3)
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_class_hidden_matching_neither_rule_is_refused():
    cfg = yolov8_seg_config("n", num_classes=150, class_hidden_override=120)
    with pytest.raises(
        ValueError,
        match=r"class branch hidden width is 120, but for P3=64 channels and nc=150 ultralytics "
        r"builds 100 \(current rule .*\) or 150 \(8\.0\.120 rule",
    ):
        convert_state_dict(synthetic_upstream_state_dict(cfg)[0])


def test_rules_agree_below_100_classes():
    # nc <= 100 or nc <= P3: both rules give the same width, so no override is recorded.
    for nc in (1, 80, 100):
        _, cfg = convert_state_dict(
            synthetic_upstream_state_dict(yolov8_seg_config("n", num_classes=nc))[0]
        )
        assert cfg.class_hidden_override is None and class_hidden_rule(cfg) == "current"


# --- what is not a YOLOv8-seg state dict --------------------------------------------------------


def _without(src: dict, *prefixes: str) -> dict:
    return {k: v for k, v in src.items() if not k.startswith(prefixes)}


def test_pose_keys_are_refused(n_upstream):
    pose = _without(n_upstream[0], "model.22.proto.")
    pose = {**_without(pose, "model.22.cv4."), "model.22.cv4.0.2.weight": torch.zeros(51, 16, 1, 1)}
    with pytest.raises(ValueError, match=r"this is a pose \(keypoint\) model, not segmentation"):
        convert_state_dict(pose)


def test_obb_keys_are_refused(n_upstream):
    obb = _without(n_upstream[0], "model.22.proto.", "model.22.cv4.")
    obb["model.22.cv4.0.2.weight"] = torch.zeros(1, 16, 1, 1)  # one angle per anchor
    with pytest.raises(ValueError, match=r"oriented-box \(OBB\) detection model, not segm"):
        convert_state_dict(obb)


def test_classification_keys_are_refused():
    cls = {
        "model.0.conv.weight": torch.zeros(16, 3, 3, 3),
        "model.9.linear.weight": torch.zeros(5, 8),
    }
    with pytest.raises(ValueError, match=r"this is a classification model, not segmentation"):
        convert_state_dict(cls)


def test_head_at_another_layer_is_not_yolov8(n_upstream):
    shifted = {k.replace("model.22.", "model.23.", 1): v for k, v in n_upstream[0].items()}
    with pytest.raises(ValueError, match=r"not a YOLOv8-seg: its head is layer 23"):
        convert_state_dict(shifted)


@pytest.mark.parametrize(
    ("head_type", "match"),
    [
        ("ultralytics.nn.modules.head.Detect", "this is a detection model, not segmentation"),
        ("ultralytics.nn.modules.head.Pose", "this is a pose"),
        ("ultralytics.nn.modules.head.Classify", "this is a classification model"),
        ("ultralytics.nn.modules.head.OBB", "oriented-box"),
    ],
)
def test_pickled_head_class_names_the_task(n_upstream, head_type, match):
    with pytest.raises(ValueError, match=match):
        convert_state_dict(n_upstream[0], {"head_type": head_type})


def test_layer_classes_other_than_yolov8_are_refused(n_upstream):
    layers = list(YOLOV8_SEG_LAYERS)
    layers[2] = "C3k2"  # YOLO11
    with pytest.raises(ValueError, match=r"not a YOLOv8-seg: layer 2 is C3k2, YOLOv8 has C2f"):
        convert_state_dict(n_upstream[0], {"layer_types": layers})
    _, cfg = convert_state_dict(n_upstream[0], {"layer_types": list(YOLOV8_SEG_LAYERS)})
    assert cfg == N


def test_not_ultralytics_keys_at_all():
    with pytest.raises(ValueError, match=r"no 'model\.N\.' tensors \(first keys: conv1\.weight"):
        convert_state_dict({"conv1.weight": torch.zeros(1)})


def test_fused_checkpoint_is_named(n_upstream):
    fused = {k: v for k, v in n_upstream[0].items() if ".bn." not in k}
    fused["model.0.conv.bias"] = torch.zeros(16)
    with pytest.raises(ValueError, match=r"saved after Conv\+BatchNorm fusion"):
        convert_state_dict(fused)


# --- forged or damaged tensors ------------------------------------------------------------------


def test_bottleneck_index_gap_cannot_size_the_model(n_upstream):
    upstream = dict(n_upstream[0])
    upstream["model.2.m.999999.cv1.conv.weight"] = torch.zeros(8, 8, 3, 3)
    with pytest.raises(ValueError, match=r"layer 2 has bottlenecks \[0, 999999\]; expected m\.0"):
        convert_state_dict(upstream)


@pytest.mark.parametrize("shape", [(16,), (0, 3, 3, 3), (16, 3, 3)])
def test_architecture_tensor_with_bad_rank_or_empty(n_upstream, shape):
    upstream = {**n_upstream[0], "model.0.conv.weight": torch.zeros(shape)}
    with pytest.raises(ValueError, match=r"model\.0\.conv\.weight has shape .*expected 4 non-zero"):
        convert_state_dict(upstream)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.bool, torch.complex64])
def test_integer_or_complex_weights_are_refused(n_upstream, dtype):
    upstream = dict(n_upstream[0])
    upstream["model.9.cv1.conv.weight"] = upstream["model.9.cv1.conv.weight"].to(dtype)
    with pytest.raises(ValueError, match=r"wrong dtypes \(1\):\n  model\.9\.cv1\.conv\.weight: "):
        convert_state_dict(upstream)


def test_float_counter_is_refused(n_upstream):
    upstream = dict(n_upstream[0])
    upstream["model.0.bn.num_batches_tracked"] = torch.tensor(3.5)
    with pytest.raises(ValueError, match=r"num_batches_tracked: torch\.float32.*integer tensor"):
        convert_state_dict(upstream)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_any_float_dtype_converts_to_fp32(dtype):
    upstream, ours = synthetic_upstream_state_dict(N, dtype=dtype)
    converted, _ = convert_state_dict(upstream)
    assert all(v.dtype in (torch.float32, torch.int64) for v in converted.values())
    assert torch.equal(
        converted["head.proto.conv1.conv.weight"], ours["head.proto.conv1.conv.weight"]
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(n_upstream, bad):
    upstream = dict(n_upstream[0])
    weight = upstream["model.15.cv2.conv.weight"].clone()
    weight.view(-1)[:3] = bad
    upstream["model.15.cv2.conv.weight"] = weight
    with pytest.raises(
        ValueError,
        match=r"1 tensors hold NaN or Inf values: neck\.top_down_p3\.project\.conv\.weight "
        r"\(3 of \d+\).*corrupt",
    ):
        convert_state_dict(upstream)


def test_fp64_beyond_fp32_range_is_refused(n_upstream):
    upstream = dict(n_upstream[0])
    upstream["model.22.cv3.0.2.bias"] = torch.full((1,), 1e300, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"class_branch\.0\.2\.bias \(1 of 1\)"):
        convert_state_dict(upstream)


def test_infinite_running_var_only_warns(caplog):
    torch.manual_seed(0)  # default init keeps activations finite (the synthetic values do not)
    upstream = {upstream_key(k): v for k, v in YoloV8Seg(N).state_dict().items()}
    upstream["model.8.cv2.bn.running_var"][0] = float("inf")  # fp16 overflow: outputs BN bias
    converted, cfg = convert_state_dict(upstream)
    assert "running_var is +inf in backbone.stages.3.c2f.project.bn.running_var" in caplog.text
    model = YoloV8Seg(cfg).eval()
    model.load_state_dict(converted)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert all(torch.isfinite(getattr(out, n)).all() for n in ("box_dist", "protos"))


def test_long_offender_lists_are_cut(n_upstream):
    upstream = dict(n_upstream[0])
    upstream.update({f"model.10.extra.{i}": torch.zeros(1) for i in range(50)})
    with pytest.raises(ValueError, match=r"no mapping .*\(50\):(?s:.*)\.\.\. and 30 more"):
        convert_state_dict(upstream)


def test_names_with_wrong_keys(n_upstream):
    with pytest.raises(ValueError, match=r"metadata names keys are not 0\.\.0"):
        convert_state_dict(n_upstream[0], {"names": {5: "object"}})
