"""fastsam_core/weights.py (load_model, load_config) and the safetensors writer it reads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
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


# --- hostile / damaged safetensors files ---------------------------------------------------------


def _mutations(data: bytes) -> dict[str, bytes]:
    header_len = int.from_bytes(data[:8], "little")
    return {
        "header length past the end": (len(data) + 100).to_bytes(8, "little") + data[8:],
        "header length 2**62": (2**62).to_bytes(8, "little") + data[8:],
        "truncated data": data[:-1000],
        "truncated header": data[: header_len // 2],
        "zeros": b"\x00" * 64,
        "empty": b"",
        "a zip": b"PK\x03\x04" + data[4:200],
    }


@pytest.mark.parametrize(
    "case", list(_mutations(b"\x10" + b"\x00" * 7 + b"{}" * 600)), ids=lambda c: c
)
def test_damaged_safetensors_is_a_clear_error(tiny_file, case):
    path, _ = tiny_file
    bad = path.with_name("bad.safetensors")
    bad.write_bytes(_mutations(path.read_bytes())[case])
    before = sorted(p.name for p in path.parent.iterdir())
    for load in (load_model, load_config):
        with pytest.raises(ValueError, match=rf"^{bad} is not a readable safetensors file \("):
            load(bad)
    assert sorted(p.name for p in path.parent.iterdir()) == before  # nothing written


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_weights_in_safetensors_are_refused(tmp_path, dtype):
    tensors = YoloV8Seg(TINY).state_dict()
    tensors["head.proto.conv1.conv.weight"] = tensors["head.proto.conv1.conv.weight"].to(dtype)
    path = tmp_path / "int.safetensors"
    save_file(tensors, path, metadata={CONFIG_KEY: json.dumps(TINY.to_dict())})
    with pytest.raises(
        ValueError,
        match=r"1 dtype mismatches: head\.proto\.conv1\.conv\.weight: file \w+, model float",
    ):
        load_model(path)


def test_half_and_bfloat16_safetensors_load_as_fp32(tmp_path):
    model = _random_model(TINY)
    for dtype in (torch.float16, torch.bfloat16):
        tensors = {
            k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()
        }
        path = tmp_path / f"{dtype}.safetensors"
        save_file(tensors, path, metadata={CONFIG_KEY: json.dumps(TINY.to_dict())})
        loaded = load_model(path)
        assert all(p.dtype == torch.float32 for p in loaded.parameters())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_safetensors_weights_are_refused(tmp_path, bad):
    tensors = YoloV8Seg(TINY).state_dict()
    tensors["backbone.sppf.project.conv.weight"][0, 0, 0, 0] = bad
    path = tmp_path / "nan.safetensors"
    save_file(tensors, path, metadata={CONFIG_KEY: json.dumps(TINY.to_dict())})
    with pytest.raises(
        ValueError,
        match=rf"^{path}: 1 tensors hold NaN or Inf values: backbone\.sppf\.project\.conv\.weight "
        r"\(1 of \d+\)",
    ):
        load_model(path)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("[1, 2, 3]", r"from_dict expects a dict, got list"),
        ("{not json", r"Expecting property name"),
        (json.dumps({**TINY.to_dict(), "num_classes": "5"}), r"num_classes='5'"),
        (json.dumps({**TINY.to_dict(), "num_classes": 1.5}), r"num_classes=1\.5"),
        (json.dumps({**TINY.to_dict(), "reg_max": True}), r"reg_max=True"),
        (json.dumps({**TINY.to_dict(), "channels": "abcde"}), r"channels='abcde'"),
        (json.dumps({**TINY.to_dict(), "bn_eps": -1}), r"bn_eps=-1"),
        (json.dumps({**TINY.to_dict(), "scale": "q"}), r"scale='q'"),
        (json.dumps({**TINY.to_dict(), "class_hidden_override": 0}), r"class_hidden_override=0"),
        (json.dumps({**TINY.to_dict(), "extra": 1}), r"unknown YoloSegConfig fields \['extra'\]"),
    ],
)
def test_malformed_config_in_header(tmp_path, config, match):
    path = tmp_path / "cfg.safetensors"
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={CONFIG_KEY: config})
    with pytest.raises(
        ValueError, match=rf"^{path}: invalid 'fastsam_config' in the header: .*{match}"
    ):
        load_model(path)


def test_forged_huge_config_is_refused_before_building(tmp_path):
    """A header asking for a giant network must fail on shapes, not allocate that network."""
    import resource

    huge = dataclasses.replace(
        TINY, channels=(4096, 8192, 8192, 8192, 8192), depths=(9, 9, 9, 9), neck_depth=9
    )  # ~ 10**10 parameters (40 GB) if it were built, yet within the config bounds
    path = tmp_path / "huge.safetensors"
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={CONFIG_KEY: json.dumps(huge.to_dict())})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"tensors do not match YoloV8Seg.*channels \(4096,"):
        load_model(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KB


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("depths", [100_000, 1, 1, 1]),  # a 100k-block skeleton: a hang before any check
        ("channels", [2**40, 32, 64, 128, 256]),  # overflows before any check
        ("reg_max", 10**6),
        ("imgsz", 10**6),
        ("num_classes", 10**9),
    ],
)
def test_out_of_bounds_header_config_is_refused_at_once(tmp_path, field, value):
    path = tmp_path / "forged.safetensors"
    config = {**TINY.to_dict(), field: value}
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={CONFIG_KEY: json.dumps(config)})
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"invalid 'fastsam_config'.*{field}=.*bounds"):
        load_model(path)
    assert time.perf_counter() - start < 5


def test_float64_beyond_fp32_range_is_refused(tmp_path):
    """A float64 1e300 passes an isfinite check before the cast and is inf after it."""
    state = {
        k: v.double() if v.is_floating_point() else v
        for k, v in YoloV8Seg(TINY).state_dict().items()
    }
    key = next(k for k in state if k.endswith("conv.weight"))
    state[key].view(-1)[0] = 1e300
    path = tmp_path / "f64.safetensors"
    save_file(state, path, metadata={CONFIG_KEY: json.dumps(TINY.to_dict())})
    with pytest.raises(ValueError, match=rf"NaN or Inf values: {re.escape(key)}"):
        load_model(path)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_model(fifo)


def test_metadata_from_another_tool(tmp_path):
    path = tmp_path / "hf.safetensors"
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={"format": "pt", "framework": "x"})
    with pytest.raises(ValueError, match=rf"^{path} has no 'fastsam_config' entry.*\['format'"):
        load_model(path)


# --- class-branch width override (8.0.120 checkpoints with nc > 100) ----------------------------


def test_class_hidden_override_round_trips_through_the_header(tmp_path):
    cfg = dataclasses.replace(TINY, num_classes=150, class_hidden_override=150)  # max(P3, nc)
    assert (
        cfg.class_hidden == 150
        and dataclasses.replace(cfg, class_hidden_override=None).class_hidden == 100
    )
    source = _random_model(cfg)
    path = tmp_path / "lvis.safetensors"
    save_converted(source.state_dict(), cfg, path)
    assert load_config(path) == cfg
    loaded = load_model(path)
    assert loaded.head.class_branch[0][0].conv.out_channels == 150
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images).class_logits, source(images).class_logits)


def test_file_without_override_field_loads(tmp_path):
    """Files written before the field existed have no 'class_hidden_override' key."""
    data = {k: v for k, v in TINY.to_dict().items() if k != "class_hidden_override"}
    path = tmp_path / "old.safetensors"
    save_file(YoloV8Seg(TINY).state_dict(), path, metadata={CONFIG_KEY: json.dumps(data)})
    assert load_config(path) == TINY


# --- writing: never clobber, never leave debris -------------------------------------------------


def test_output_that_is_a_directory(tmp_path):
    (tmp_path / "out.safetensors").mkdir()
    with pytest.raises(ValueError, match=r"is a directory"):
        save_converted({}, TINY, tmp_path / "out.safetensors", force=True)


def test_file_that_appears_while_writing_is_not_overwritten(tmp_path, monkeypatch):
    import safetensors.torch

    out = tmp_path / "m.safetensors"
    real_save = safetensors.torch.save_file

    def save_and_race(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        out.write_bytes(b"someone else's file")  # e.g. a second `fastsam convert`

    monkeypatch.setattr(safetensors.torch, "save_file", save_and_race)
    with pytest.raises(FileExistsError, match=r"appeared while writing; pass --force"):
        save_converted(_random_model(TINY).state_dict(), TINY, out)
    assert out.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_ctrl_c_while_writing_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.torch

    def interrupted(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_converted(_random_model(TINY).state_dict(), TINY, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_output_permissions_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        save_converted(_random_model(TINY).state_dict(), TINY, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644  # not mkstemp's 600


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00" * 100, "not a zip archive"),
        (b"PK\x03\x04" + b"\x00" * 100, "its end is missing"),
    ],
)
def test_failed_conversion_writes_nothing(tmp_path, content, match):
    from fastsam_weights_convert import convert_file

    src = tmp_path / "in.pt"
    src.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        convert_file(src, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pt"]


def test_convert_file_checks_the_output_before_converting(tmp_path, monkeypatch):
    import fastsam_weights_convert

    def never(path):
        raise AssertionError("converted although the output was refused")

    monkeypatch.setattr(fastsam_weights_convert, "convert_checkpoint", never)
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        fastsam_weights_convert.convert_file(UL120_PT, tmp_path / "out.pt")
    (tmp_path / "exists.safetensors").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"already exists; pass --force \(or --overwrite\)"):
        fastsam_weights_convert.convert_file(UL120_PT, tmp_path / "exists.safetensors")
    assert (tmp_path / "exists.safetensors").read_bytes() == b"x"


def test_save_weights_accepts_tensors_that_share_storage(tmp_path):
    """Tied or sliced tensors (one storage) are written as separate tensors, not refused by
    safetensors with a traceback."""
    from fastsam_core.weights import save_weights

    state = YoloV8Seg(TINY).state_dict()
    key_a, key_b = [k for k in state if k.endswith("bn.weight")][:2]
    shared = torch.ones(state[key_a].numel() + state[key_b].numel())
    state[key_a] = shared[: state[key_a].numel()].view_as(state[key_a])
    state[key_b] = shared[state[key_a].numel() :].view_as(state[key_b])
    path = tmp_path / "shared.safetensors"
    save_weights(state, TINY, path)
    assert torch.equal(load_model(path).state_dict()[key_b], state[key_b])
