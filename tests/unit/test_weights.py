"""fastsam_core/weights.py (load_model, load_config) and the safetensors writer it reads."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from fastsam_weights_convert import CONFIG_KEY, convert_checkpoint, save_converted
from safetensors.torch import save_file

from fastsam_core.config import YoloSegConfig
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_core.weights import load_config, load_model

REPO = Path(__file__).resolve().parents[2]
UL120_PT = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"  # real 8.0.120 file (README)
TINY = YoloSegConfig(
    channels=(8, 8, 16, 32, 64), depths=(1, 1, 1, 1), neck_depth=1, proto_channels=16, imgsz=320
)


def _random_model(cfg: YoloSegConfig, seed: int = 0) -> YoloV8Seg:
    torch.manual_seed(seed)
    model = YoloV8Seg(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics so a BN mix-up shows in the outputs
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def tiny_file(tmp_path) -> tuple[Path, YoloV8Seg]:
    model = _random_model(TINY)
    path = tmp_path / "tiny.safetensors"
    save_converted(model.state_dict(), TINY, path)
    return path, model


def test_safetensors_round_trip(tiny_file):
    path, source = tiny_file
    model = load_model(path)
    assert model.cfg == TINY and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ours, ref = model(images), source(images)
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name


def test_fuse_option(tiny_file):
    path, _ = tiny_file
    plain, fused = load_model(path), load_model(path, fuse=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(images).protos, plain(images).protos, rtol=1e-4, atol=1e-5)


def test_header_holds_config_and_sha256_is_of_file(tmp_path):
    model = _random_model(TINY)
    path = tmp_path / "m.safetensors"
    digest = save_converted(model.state_dict(), TINY, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_config(path) == TINY
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert YoloSegConfig.from_dict(json.loads(header["__metadata__"][CONFIG_KEY])) == TINY


def test_refuses_to_overwrite_without_force(tiny_file):
    path, model = tiny_file
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists; pass force=True"):
        save_converted(model.state_dict(), TINY, path)
    assert path.read_bytes() == before
    save_converted(_random_model(TINY, seed=1).state_dict(), TINY, path, force=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.safetensors"]  # no temp files


def test_failed_write_leaves_old_file_and_no_temp(tiny_file, monkeypatch):
    import safetensors.torch

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    path, model = tiny_file
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        save_converted(model.state_dict(), TINY, path, force=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.safetensors"]


def test_output_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        save_converted({}, TINY, tmp_path / "m.pt")


def test_safetensors_without_config(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"no 'fastsam_config' entry.*fastsam convert"):
        load_model(path)


def test_safetensors_with_invalid_config(tmp_path):
    path = tmp_path / "bad.safetensors"
    bad = json.dumps({**TINY.to_dict(), "reg_max": 0})
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={CONFIG_KEY: bad})
    with pytest.raises(ValueError, match=r"invalid 'fastsam_config'.*reg_max=0"):
        load_config(path)


def test_tensors_that_do_not_match_the_header(tmp_path):
    other = YoloSegConfig(**{**TINY.to_dict(), "reg_max": 26, "channels": (8, 8, 16, 32, 64)})
    path = tmp_path / "mismatch.safetensors"
    save_file(
        YoloV8Seg(other).state_dict(), path, metadata={CONFIG_KEY: json.dumps(TINY.to_dict())}
    )
    with pytest.raises(
        ValueError,
        match=r"(?s)do not match.*reg_max 16.*37 shape mismatches.*"
        r"head\.box_branch\.0\.0\.conv\.weight: file \(104, 16, 3, 3\), model \(64, 16, 3, 3\)",
    ):
        load_model(path)


def test_missing_and_unexpected_tensors(tmp_path):
    tensors = YoloV8Seg(TINY).state_dict()
    del tensors["head.proto.upsample.bias"]
    tensors["head.extra"] = torch.zeros(1)
    path = tmp_path / "m.safetensors"
    save_file(tensors, path, metadata={CONFIG_KEY: json.dumps(TINY.to_dict())})
    with pytest.raises(
        ValueError,
        match=r"(?s)1 missing: head\.proto\.upsample\.bias.*"
        r"1 unexpected: head\.extra",
    ):
        load_model(path)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(path)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("missing.safetensors", FileNotFoundError, "not found"),
        ("model.onnx", ValueError, r"unsupported model file 'model\.onnx'"),
    ],
)
def test_bad_paths(tmp_path, name, error, match):
    if name.endswith(".onnx"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(error, match=match):
        load_model(tmp_path / name)


def test_pt_and_converted_file_give_the_same_model(tmp_path):
    state_dict, cfg, info = convert_checkpoint(UL120_PT)
    assert (cfg.channels, cfg.reg_max, cfg.class_names, cfg.scale) == (
        (8, 8, 16, 32, 64),
        26,
        ("object",),
        None,
    )
    assert info["version"] == "8.0.120" and info["source_dtypes"] == ["float16"]
    out = tmp_path / "ul120.safetensors"
    save_converted(state_dict, cfg, out)
    from_pt, from_st = load_model(UL120_PT), load_model(out)
    assert load_config(UL120_PT) == load_config(out) == cfg
    for (k, a), (_, b) in zip(from_pt.state_dict().items(), from_st.state_dict().items()):
        assert torch.equal(a, b), k


def test_product_never_imports_ultralytics(tmp_path):
    """Import the product and convert/load a real 8.0.120 file with ultralytics unimportable."""
    script = textwrap.dedent(f"""
        import sys
        attempts = []

        class BlockUltralytics:
            def find_spec(self, name, path=None, target=None):
                if name == "ultralytics" or name.startswith("ultralytics."):
                    attempts.append(name)
                    raise ImportError("ultralytics is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockUltralytics())
        import fastsam_core, fastsam_core.cli, fastsam_weights_convert
        fastsam_core.cli.build_parser()  # imports every subcommand module
        from fastsam_weights_convert import convert_checkpoint, save_converted
        sd, cfg, info = convert_checkpoint({str(UL120_PT)!r})
        save_converted(sd, cfg, {str(tmp_path / "out.safetensors")!r})
        fastsam_core.load_model({str(UL120_PT)!r})
        fastsam_core.load_model({str(tmp_path / "out.safetensors")!r})
        leaked = sorted(m for m in sys.modules if m.split(".")[0] == "ultralytics")
        assert not leaked and not attempts, (leaked, attempts)
        print("OK", cfg.reg_max)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK 26")
