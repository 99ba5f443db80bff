"""YoloSegConfig: resolved scale numbers, head widths and parameter counts (spec §1.1-§1.7)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fastsam_core.config import (
    FASTSAM_S,
    FASTSAM_X,
    SCALES,
    YoloSegConfig,
    class_hidden_width,
    yolov8_seg_config,
)
from fastsam_core.model import build_model, fuse_conv_bn

# Expected numbers worked out by hand from the yaml arithmetic of spec §1.1
# (channels = ceil(min(c, max_ch) * width / 8) * 8, repeats = max(round(n * depth), 1)).
RESOLVED = {
    #     channels (stem, P2..P5)    depths (P2..P5)  neck  proto
    "n": ((16, 32, 64, 128, 256), (1, 2, 2, 1), 1, 64),
    "s": ((32, 64, 128, 256, 512), (1, 2, 2, 1), 1, 128),
    "m": ((48, 96, 192, 384, 576), (2, 4, 4, 2), 2, 192),
    "l": ((64, 128, 256, 512, 512), (3, 6, 6, 3), 3, 256),
    "x": ((80, 160, 320, 640, 640), (3, 6, 6, 3), 3, 320),
}


@pytest.mark.parametrize("scale", sorted(RESOLVED))
def test_resolved_scale_numbers(scale: str) -> None:
    channels, depths, neck_depth, proto = RESOLVED[scale]
    cfg = yolov8_seg_config(scale)
    assert cfg.channels == channels
    assert cfg.depths == depths
    assert cfg.neck_depth == neck_depth
    assert cfg.proto_channels == proto
    assert cfg.scale == scale
    assert (cfg.num_classes, cfg.reg_max, cfg.num_mask_coeffs) == (1, 16, 32)
    assert cfg.strides == (8, 16, 32)
    assert cfg.bn_eps == 1e-3


def test_scale_table_is_the_yolov8_yaml() -> None:
    assert SCALES == {
        "n": (0.33, 0.25, 1024),
        "s": (0.33, 0.50, 1024),
        "m": (0.67, 0.75, 768),
        "l": (1.00, 1.00, 512),
        "x": (1.00, 1.25, 512),
    }


@pytest.mark.parametrize(
    "cfg, box, cls, coeff, head_in",
    [
        (FASTSAM_S, 64, 128, 32, (128, 256, 512)),  # spec §1.4: s 64 / 128 / 32
        (FASTSAM_X, 104, 320, 80, (320, 640, 640)),  # x (R=26): 104 / 320 / 80
        (yolov8_seg_config("x", reg_max=16), 80, 320, 80, (320, 640, 640)),  # x with R=16: 80
        (yolov8_seg_config("n"), 64, 64, 32, (64, 128, 256)),  # 4R=64 dominates P3/4=16
        (yolov8_seg_config("s", num_classes=80), 64, 128, 32, (128, 256, 512)),
        (yolov8_seg_config("n", num_classes=200), 64, 100, 32, (64, 128, 256)),  # min(nc, 100)
    ],
)
def test_head_widths(
    cfg: YoloSegConfig, box: int, cls: int, coeff: int, head_in: tuple[int, int, int]
) -> None:
    assert (cfg.box_hidden, cfg.class_hidden, cfg.coeff_hidden) == (box, cls, coeff)
    assert cfg.head_in_channels == head_in


def test_fastsam_presets() -> None:
    assert FASTSAM_S == yolov8_seg_config(
        "s", num_classes=1, reg_max=16, imgsz=1024, class_names=("object",)
    )
    assert FASTSAM_X.reg_max == 26 and FASTSAM_X.scale == "x"
    assert FASTSAM_X.imgsz == FASTSAM_S.imgsz == 1024
    assert FASTSAM_X.class_names == ("object",)


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Spec §1.7 (nc=1): params unfused, params fused, state-dict keys, float buffers, BN count.
PARAM_COUNTS = [
    ("s", 16, 11_790_483, 11_779_987, 417, 20_992, 66),
    ("s", 26, 12_315_253, 12_304_517, 417, None, 66),
    ("x", 26, 72_234_149, 72_203_813, 657, 60_672, 106),
    ("x", 16, 71_751_811, 71_721_619, 657, None, 106),
]


@pytest.mark.parametrize(
    "scale, reg_max, unfused, fused, keys, float_buffers, num_bn", PARAM_COUNTS
)
def test_parameter_counts(
    scale: str,
    reg_max: int,
    unfused: int,
    fused: int,
    keys: int,
    float_buffers: int | None,
    num_bn: int,
) -> None:
    model = build_model(yolov8_seg_config(scale, reg_max=reg_max))
    assert _num_params(model) == unfused
    state = model.state_dict()
    assert len(state) == keys
    assert sum(k.endswith("num_batches_tracked") for k in state) == num_bn
    if float_buffers is not None:
        assert sum(b.numel() for b in model.buffers() if b.is_floating_point()) == float_buffers
    assert _num_params(fuse_conv_bn(model)) == fused


# Spec §1.7 per-layer parameter counts, grouped by the module that implements each layer.
PER_PART = {
    "s": {
        "backbone.stem": 928,  # L0
        "backbone.stages.0": 18_560 + 29_056,  # L1 + L2
        "backbone.stages.1": 73_984 + 197_632,  # L3 + L4
        "backbone.stages.2": 295_424 + 788_480,  # L5 + L6
        "backbone.stages.3": 1_180_672 + 1_838_080,  # L7 + L8
        "backbone.sppf": 656_896,  # L9
        "neck.top_down_p4": 591_360,  # L12
        "neck.top_down_p3": 148_224,  # L15
        "neck.downsample_p3": 147_712,  # L16
        "neck.bottom_up_p4": 493_056,  # L18
        "neck.downsample_p4": 590_336,  # L19
        "neck.bottom_up_p5": 1_969_152,  # L21
        "head": 2_770_931,  # L22
    },
    "x": {
        "backbone.stem": 2_320,
        "backbone.stages.0": 115_520 + 436_800,
        "backbone.stages.1": 461_440 + 3_281_920,
        "backbone.stages.2": 1_844_480 + 13_117_440,
        "backbone.stages.3": 3_687_680 + 6_969_600,
        "backbone.sppf": 1_025_920,
        "neck.top_down_p4": 7_379_200,
        "neck.top_down_p3": 1_948_800,
        "neck.downsample_p3": 922_240,
        "neck.bottom_up_p4": 7_174_400,
        "neck.downsample_p4": 3_687_680,
        "neck.bottom_up_p5": 7_379_200,
        "head": 12_799_509,
    },
}


@pytest.mark.parametrize("cfg", [FASTSAM_S, FASTSAM_X], ids=["s", "x"])
def test_parameter_counts_per_layer(cfg: YoloSegConfig) -> None:
    model = build_model(cfg)
    expected = PER_PART[cfg.scale or ""]
    got = {name: _num_params(model.get_submodule(name)) for name in expected}
    assert got == expected


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"channels": (16, 32, 64, 128)}, "channels"),
        ({"channels": (16, 32, 0, 128, 256)}, "channels"),
        ({"depths": (1, 2, 2)}, "depths"),
        ({"depths": (1, 0, 2, 1)}, "depths"),
        ({"neck_depth": 0}, "neck_depth"),
        ({"proto_channels": 0}, "proto_channels"),
        ({"num_classes": 0}, "num_classes"),
        ({"reg_max": 1}, "reg_max"),
        ({"num_mask_coeffs": 0}, "num_mask_coeffs"),
        ({"strides": (8, 16, 64)}, "strides"),
        ({"imgsz": 0}, "imgsz"),
        ({"class_names": ("a", "b")}, "class_names has 2 entries but num_classes is 1"),
    ],
)
def test_invalid_config_raises(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(yolov8_seg_config("n"), **overrides)


def test_invalid_config_message_names_value() -> None:
    with pytest.raises(ValueError, match=r"invalid YoloSegConfig: reg_max=0"):
        dataclasses.replace(FASTSAM_S, reg_max=0)


def test_unknown_scale_raises() -> None:
    with pytest.raises(
        ValueError, match=r"unknown scale 'q'; expected one of \['l', 'm', 'n', 's', 'x'\]"
    ):
        yolov8_seg_config("q")


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FASTSAM_S.reg_max = 26  # type: ignore[misc]


@pytest.mark.parametrize(
    "cfg",
    [
        FASTSAM_S,
        FASTSAM_X,
        yolov8_seg_config("m", num_classes=80, class_names=tuple(map(str, range(80)))),
    ],
    ids=["s", "x", "m-nc80"],
)
def test_to_dict_from_dict_round_trip(cfg: YoloSegConfig) -> None:
    data = cfg.to_dict()
    assert YoloSegConfig.from_dict(data) == cfg
    # JSON turns tuples into lists; from_dict must restore them.
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    restored = YoloSegConfig.from_dict(as_json)
    assert restored == cfg
    assert isinstance(restored.channels, tuple) and isinstance(restored.class_names, tuple)


def test_from_dict_rejects_unknown_fields() -> None:
    data = FASTSAM_S.to_dict() | {"width": 0.5}
    with pytest.raises(ValueError, match=r"unknown YoloSegConfig fields \['width'\]"):
        YoloSegConfig.from_dict(data)


# Class-branch hidden width (spec §1.4): current ultralytics max(P3, min(nc, 100)); 8.0.120, which
# made the FastSAM checkpoints, max(P3, nc). They differ only for nc > 100 and nc > P3.
@pytest.mark.parametrize(
    "p3, nc, current, v80",
    [
        (128, 1, 128, 128),
        (64, 80, 80, 80),
        (64, 100, 100, 100),
        (64, 150, 100, 150),
        (320, 1203, 320, 1203),  # LVIS on x
        (320, 300, 320, 320),  # nc <= P3: equal again
    ],
)
def test_class_hidden_rules(p3: int, nc: int, current: int, v80: int) -> None:
    assert class_hidden_width(p3, nc, "current") == current
    assert class_hidden_width(p3, nc, "8.0.120") == v80


def test_class_hidden_rule_name_is_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown class-branch rule 'v7'"):
        class_hidden_width(64, 1, "v7")  # type: ignore[arg-type]


def test_class_hidden_override() -> None:
    lvis = yolov8_seg_config("x", num_classes=1203)
    assert lvis.class_hidden == 320 and lvis.class_hidden_override is None
    v80 = dataclasses.replace(lvis, class_hidden_override=1203)
    assert v80.class_hidden == 1203 and v80 != lvis
    assert YoloSegConfig.from_dict(v80.to_dict()) == v80
    # Other fields keep deriving from the rule: replace() does not freeze a resolved width.
    n = yolov8_seg_config("n", num_classes=200)
    assert dataclasses.replace(n, num_classes=1).class_hidden == 64
    model = build_model(
        dataclasses.replace(yolov8_seg_config("n", num_classes=150), class_hidden_override=150)
    )
    assert model.head.class_branch[2][1].conv.weight.shape == (150, 150, 3, 3)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_classes": 1.5}, r"num_classes=1\.5"),
        ({"num_classes": True}, r"num_classes=True"),
        ({"channels": (16, 32, 64, 128, "256")}, "channels"),
        ({"depths": "1221"}, "depths"),
        ({"bn_eps": 0}, "bn_eps=0"),
        ({"bn_eps": "0.001"}, "bn_eps"),
        ({"scale": "q"}, "scale='q'"),
        ({"imgsz": 640.0}, r"imgsz=640\.0"),
        ({"class_names": ("object", 2)}, "class_names"),
        ({"class_hidden_override": 0}, "class_hidden_override=0"),
        ({"class_hidden_override": 64.0}, "class_hidden_override"),
    ],
)
def test_field_types_are_validated(overrides: dict, match: str) -> None:
    if "class_names" in overrides:
        overrides["num_classes"] = 2
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(yolov8_seg_config("n"), **overrides)


def test_lists_become_tuples() -> None:
    cfg = YoloSegConfig(channels=[8, 8, 16, 32, 64], depths=[1, 1, 1, 1], neck_depth=1,  # type: ignore[arg-type]
                        proto_channels=16)  # fmt: skip
    assert cfg.channels == (8, 8, 16, 32, 64) and isinstance(cfg.depths, tuple)
    hash(cfg)  # usable as a cache key


def test_from_dict_needs_a_dict() -> None:
    with pytest.raises(TypeError, match="expects a dict, got list"):
        YoloSegConfig.from_dict([1, 2])  # type: ignore[arg-type]
