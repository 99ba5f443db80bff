"""The converter on checkpoints written by the ultralytics oracles (tests/support/checkpoints):
8.4.190 (installed) and 8.0.120 (the FastSAM-era version, in the cached venv of
tests/support/ul120.py).

Light forward check only (converted model vs the oracle's raw head tensors on one 320x320 input);
stage-by-stage parity lives in tests/parity/.
"""

from __future__ import annotations

import pytest
import torch
from fastsam_weights_convert import convert_checkpoint

from fastsam_core.config import class_hidden_width, yolov8_seg_config
from fastsam_core.weights import load_model
from tests.support.checkpoints import CheckpointRecipe, oracle_checkpoints, oracle_outputs

pytestmark = pytest.mark.oracle

V80 = {"ultralytics": "8.0.120"}
RECIPES = [
    {},
    {"dtype": "fp32"},
    {"slot": "ema"},
    {"dtype": "fp32", "slot": "ema", "reg_max": 26},
    {"reg_max": 26},
    {"num_classes": 80},
    {"legacy_pickle": True},
    {"num_classes": 150},  # class branch min(nc, 100) = 100 wide
    {"scale": "m"},
    {"scale": "m", "num_classes": 80, "imgsz": 640},
    {**V80},
    {**V80, "num_classes": 80},
    {**V80, "num_classes": 150},  # class branch max(P3, nc) = 150 wide: needs the override
    {**V80, "slot": "ema", "dtype": "fp32"},
    {**V80, "scale": "s"},
]
SLOW_RECIPES = [{"scale": "l"}, {"scale": "x", "num_classes": 80}, {**V80, "scale": "m"}]
REFUSED = {"detect": "detection", "pose": r"pose \(keypoint\)", "classify": "classification"}


@pytest.fixture(scope="module")
def built(oracle_checkpoint):
    """Build the missing cheap checkpoints in one subprocess per oracle version."""
    recipes = [CheckpointRecipe(**r) for r in RECIPES]  # type: ignore[arg-type]
    recipes += [CheckpointRecipe(task=task) for task in REFUSED]  # type: ignore[arg-type]
    recipes += [CheckpointRecipe(family="yolo11"), CheckpointRecipe(task="detect", **V80)]
    oracle_checkpoints(recipes)
    return oracle_checkpoint


def _recipe_id(recipe: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in recipe.items()) or "default"


@pytest.mark.parametrize(
    "recipe",
    RECIPES + [pytest.param(r, marks=pytest.mark.slow) for r in SLOW_RECIPES],
    ids=_recipe_id,
)
def test_converted_model_matches_oracle_head(built, recipe):
    path = built(**recipe)
    state_dict, cfg, info = convert_checkpoint(path)
    reg_max, nc = recipe.get("reg_max", 16), recipe.get("num_classes", 1)
    v80 = recipe.get("ultralytics") == "8.0.120"
    scale = recipe.get("scale", "n")
    p3 = yolov8_seg_config(scale).channels[2]
    rule = "8.0.120" if v80 else "current"
    width = class_hidden_width(p3, nc, rule)
    expected = yolov8_seg_config(
        scale,
        reg_max=reg_max,
        num_classes=nc,
        imgsz=recipe.get("imgsz", 1024),
        class_names=tuple(str(i) for i in range(nc)),
        # Set only where the rules disagree (nc > 100 and nc > P3).
        class_hidden_override=width if width != class_hidden_width(p3, nc) else None,
    )
    assert cfg == expected
    assert cfg.class_hidden == width
    assert info["class_hidden_rule"] == (rule if width != class_hidden_width(p3, nc) else "current")
    assert info["version"] == ("8.0.120" if v80 or recipe.get("legacy_pickle") else "8.4.190")
    assert info["slot"] == recipe.get("slot", "model")
    assert info["source_dtypes"] == [
        "float16" if recipe.get("dtype", "fp16") == "fp16" else "float32"
    ]
    assert all(t.dtype in (torch.float32, torch.int64) for t in state_dict.values())

    model = load_model(path)
    expected = oracle_outputs(path)
    with torch.no_grad():
        out = model(expected["images"])
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        ours, ref = getattr(out, name), expected[name]
        assert ours.shape == ref.shape, name
        # Same fp32 weights, same torch ops: only op-order noise is allowed.
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5, msg=name)


def test_legacy_pickle_uses_getattr_and_old_namespace(oracle_checkpoint):
    from torch.serialization import get_unsafe_globals_in_checkpoint

    path = oracle_checkpoint(legacy_pickle=True)
    found = set(get_unsafe_globals_in_checkpoint(path))
    assert {"builtins.getattr", "ultralytics.yolo.utils.IterableSimpleNamespace"} <= found
    _, _, info = convert_checkpoint(path)
    assert info["version"] == "8.0.120"


def test_real_8_0_120_file_has_the_old_globals(built):
    from torch.serialization import get_unsafe_globals_in_checkpoint

    found = set(get_unsafe_globals_in_checkpoint(built(**V80)))
    assert {
        "builtins.getattr",  # Segment.detect = Detect.forward
        "ultralytics.yolo.utils.IterableSimpleNamespace",
        "ultralytics.nn.modules.block.C2f",
        "ultralytics.nn.modules.head.Segment",
    } <= found


@pytest.mark.parametrize(
    "recipe",
    [{"task": t} for t in REFUSED] + [{"task": "detect", **V80}],
    ids=_recipe_id,
)
def test_other_tasks_are_refused_by_name(built, recipe, tmp_path):
    from fastsam_weights_convert import convert_file

    path = built(**recipe)
    what = REFUSED[recipe["task"]]
    with pytest.raises(ValueError, match=rf"^{path}: this is a {what} model, not segmentation"):
        convert_checkpoint(path)
    with pytest.raises(ValueError, match=rf"this is a {what} model"):
        load_model(path)
    with pytest.raises(ValueError, match=rf"this is a {what} model"):
        convert_file(path, tmp_path / "out.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_yolo11_segmentation_is_refused_by_name(built):
    with pytest.raises(ValueError, match=r"not a YOLOv8-seg: layer 2 is C3k2, YOLOv8 has C2f"):
        convert_checkpoint(built(family="yolo11"))


@pytest.mark.parametrize(
    "recipe", [{"num_classes": 150}, {**V80, "num_classes": 150}], ids=_recipe_id
)
def test_many_classes_round_trip_through_safetensors(built, recipe, tmp_path):
    from fastsam_weights_convert import convert_file

    path = built(**recipe)
    out = tmp_path / "nc150.safetensors"
    cfg, _ = convert_file(path, out)
    from_st, from_pt = load_model(out), load_model(path)
    assert from_st.cfg == from_pt.cfg == cfg
    expected = oracle_outputs(path)
    with torch.no_grad():
        a, b = from_st(expected["images"]), from_pt(expected["images"])
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    torch.testing.assert_close(a.class_logits, expected["class_logits"], rtol=1e-5, atol=1e-5)


# Parameter counts of spec §1.7 (nc=1). x with reg_max 16 (71,751,811) was checked by hand; one
# x case keeps the slow run short.
@pytest.mark.parametrize(
    ("scale", "reg_max", "params", "keys"),
    [
        ("s", 16, 11_790_483, 417),
        ("s", 26, 12_315_253, 417),
        pytest.param("x", 26, 72_234_149, 657, marks=pytest.mark.slow),
    ],
)
def test_totality_and_params_for_fastsam_scales(oracle_checkpoint, scale, reg_max, params, keys):
    state_dict, cfg, info = convert_checkpoint(oracle_checkpoint(scale=scale, reg_max=reg_max))
    assert (cfg.scale, cfg.reg_max, cfg.num_classes) == (scale, reg_max, 1)
    assert len(state_dict) == keys
    assert info["num_params"] == params


def test_cli_names_the_8_0_120_class_branch_rule(built, tmp_path, capsys):
    from fastsam_core.cli import main

    out = tmp_path / "nc150.safetensors"
    assert main(["convert", str(built(num_classes=150, **V80)), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "class width: 150 (ultralytics 8.0.120 rule)" in printed
    assert "classes:     150 (0, 1, 2, 3, 4, 5, 6, 7, ...)" in printed
