"""The converter on checkpoints written by the ultralytics 8.4.190 oracle (tests/support/checkpoints).

Light forward check only (converted model vs the oracle's raw head tensors on one 320x320 input);
stage-by-stage parity lives in tests/parity/.
"""

from __future__ import annotations

import pytest
import torch
from fastsam_weights_convert import convert_checkpoint

from fastsam_core.config import yolov8_seg_config
from fastsam_core.weights import load_model
from tests.support.checkpoints import oracle_outputs

pytestmark = pytest.mark.oracle

RECIPES = [
    {},
    {"dtype": "fp32"},
    {"slot": "ema"},
    {"dtype": "fp32", "slot": "ema", "reg_max": 26},
    {"reg_max": 26},
    {"num_classes": 80},
    {"legacy_pickle": True},
]


@pytest.mark.parametrize(
    "recipe", RECIPES, ids=lambda r: "-".join(f"{k}={v}" for k, v in r.items()) or "default"
)
def test_converted_model_matches_oracle_head(oracle_checkpoint, recipe):
    path = oracle_checkpoint(**recipe)
    state_dict, cfg, info = convert_checkpoint(path)
    reg_max, nc = recipe.get("reg_max", 16), recipe.get("num_classes", 1)
    assert cfg == yolov8_seg_config(
        "n",
        reg_max=reg_max,
        num_classes=nc,
        imgsz=1024,
        class_names=tuple(str(i) for i in range(nc)),
    )
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


def test_detection_checkpoint_is_refused(oracle_checkpoint):
    with pytest.raises(ValueError, match="detection model, not segmentation"):
        convert_checkpoint(oracle_checkpoint(task="detect"))


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
