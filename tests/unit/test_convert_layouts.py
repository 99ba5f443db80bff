"""The converter on every checkpoint layout it accepts, from the committed 8.0.120 fixture.

tests/fixtures/ul120_tiny_seg_r26.pt (real 8.0.120 layout, see the fixtures README) re-packed as:
module paths of an older ultralytics (`ultralytics.nn.modules.C2f`), plain state dicts (bare,
under 'model' / 'state_dict', DDP 'module.' prefix, inner-Sequential keys) in fp16 and fp32.
Each must convert to exactly the tensors the original gives. Oracle-made layouts (EMA slot,
fp32 model, 8.4.190 / 8.0.120 builds) are in test_convert_oracle.py.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from fastsam_weights_convert import convert_checkpoint
from fastsam_weights_convert.checkpoint import checkpoint_source, flat_state_dict
from fastsam_weights_convert.unpickle import load_checkpoint

from fastsam_core.weights import load_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ul120_tiny_seg_r26.pt"


@pytest.fixture(scope="module")
def original() -> tuple[dict[str, torch.Tensor], object, dict]:
    return convert_checkpoint(FIXTURE)


@pytest.fixture(scope="module")
def upstream_tensors() -> dict[str, torch.Tensor]:
    model, _ = checkpoint_source(load_checkpoint(FIXTURE))
    return flat_state_dict(model)  # 'model.N.*' fp16, as a `model.state_dict()` would give


def _assert_same(converted: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(converted) == list(reference)
    for key, tensor in reference.items():
        assert torch.equal(converted[key], tensor), key


def rewrite_globals(src: Path, dst: Path, renames: dict[bytes, bytes]) -> Path:
    """Copy a torch.save zip, renaming GLOBAL module paths inside its protocol-2 pickle."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                for old, new in renames.items():
                    assert b"c" + old + b"\n" in data, old
                    data = data.replace(b"c" + old + b"\n", b"c" + new + b"\n")
            zout.writestr(item.filename, data)
    return dst


def test_old_flat_module_paths_convert_identically(tmp_path, original):
    """ultralytics 8.0.0-8.0.~50 pickled `ultralytics.nn.modules.C2f` (one modules.py)."""
    old = rewrite_globals(
        FIXTURE,
        tmp_path / "old_paths.pt",
        {
            b"ultralytics.nn.modules.block": b"ultralytics.nn.modules",
            b"ultralytics.nn.modules.conv": b"ultralytics.nn.modules",
            b"ultralytics.nn.modules.head": b"ultralytics.nn.modules",
        },
    )
    state_dict, cfg, info = convert_checkpoint(old)
    assert cfg == original[1]
    assert info["head_type"] == "ultralytics.nn.modules.Segment"
    _assert_same(state_dict, original[0])


def test_current_namespace_path_converts_identically(tmp_path, original):
    """8.1+ moved IterableSimpleNamespace to ultralytics.utils (spec §2.3)."""
    moved = rewrite_globals(
        FIXTURE, tmp_path / "new_ns.pt", {b"ultralytics.yolo.utils": b"ultralytics.utils"}
    )
    state_dict, cfg, _ = convert_checkpoint(moved)
    assert cfg == original[1]
    _assert_same(state_dict, original[0])


LAYOUTS = {
    "bare": lambda sd: sd,
    "model": lambda sd: {"model": sd, "train_args": {"imgsz": 1024}, "version": "8.0.120"},
    "ema": lambda sd: {"model": None, "ema": sd},
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 7},
    "ddp": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    "sequential": lambda sd: {k.removeprefix("model."): v for k, v in sd.items()},
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_plain_state_dict_layouts(tmp_path, original, upstream_tensors, layout, dtype):
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in upstream_tensors.items()}
    path = tmp_path / f"{layout}.pt"
    torch.save(LAYOUTS[layout](tensors), path)
    state_dict, cfg, info = convert_checkpoint(path)
    _assert_same(state_dict, original[0])
    # Shapes are all a state dict carries: names, imgsz (unless train_args) and eps default.
    expected_cfg = original[1]
    assert (cfg.channels, cfg.depths, cfg.reg_max, cfg.num_classes, cfg.bn_eps) == (
        expected_cfg.channels,
        expected_cfg.depths,
        expected_cfg.reg_max,
        expected_cfg.num_classes,
        expected_cfg.bn_eps,
    )
    assert cfg.imgsz == (1024 if layout == "model" else 640)
    assert info["source_dtypes"] == [str(dtype).removeprefix("torch.")]
    assert info["slot"] == {"bare": "<root>", "sequential": "<root>", "ddp": "model"}.get(
        layout, layout
    )


def test_load_model_reads_a_state_dict_checkpoint(tmp_path, upstream_tensors):
    path = tmp_path / "sd.pt"
    torch.save({"model": upstream_tensors}, path)
    from_sd, from_pt = load_model(path), load_model(FIXTURE)
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(from_sd(images).protos, from_pt(images).protos)


def test_state_dict_errors_name_the_file(tmp_path, upstream_tensors):
    broken = {k: v for k, v in upstream_tensors.items() if "proto" not in k and ".cv4." not in k}
    path = tmp_path / "detect_sd.pt"
    torch.save({"model": broken}, path)
    with pytest.raises(ValueError, match=rf"^{path}: this is a detection model, not segmentation"):
        convert_checkpoint(path)
