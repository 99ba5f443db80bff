"""`fastsam convert`, `fastsam info` and `python -m fastsam_weights_convert` as subprocesses."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastsam_core.weights import load_config

REPO = Path(__file__).resolve().parents[2]
UL120_PT = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"  # real 8.0.120 checkpoint


def fastsam(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from fastsam_core.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )


def convert(entry: str, *args: str) -> subprocess.CompletedProcess:
    """`fastsam convert ARGS` or `python -m fastsam_weights_convert ARGS` (the same command)."""
    if entry == "fastsam":
        return fastsam("convert", *args)
    return subprocess.run(
        [sys.executable, "-m", "fastsam_weights_convert", *args],
        cwd=REPO, capture_output=True, check=False, text=True, timeout=300,
    )  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("convert") / "tiny.safetensors"
    return out, fastsam("convert", str(UL120_PT), str(out))


def test_convert_prints_summary(converted):
    out, result = converted
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.search(r"reg_max:\s+26\b", text)
    assert re.search(r"classes:\s+1 \(object\)", text)
    assert re.search(r"params:\s+667,293\b", text)
    assert re.search(r"scale:\s+custom", text)
    assert f"sha256:      {sha256(out)}" in text


def test_convert_refuses_to_overwrite(converted):
    out, _ = converted
    before = sha256(out)
    result = fastsam("convert", str(UL120_PT), str(out))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0  # one clear line, no traceback
    assert "already exists; pass --force" in result.stderr
    assert sha256(out) == before
    forced = fastsam("convert", str(UL120_PT), str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert sha256(out) in forced.stdout


def test_module_entry_point_writes_the_same_file(converted, tmp_path):
    out, _ = converted
    other = tmp_path / "tiny.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "fastsam_weights_convert", str(UL120_PT), str(other)],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sha256(other) in result.stdout
    # Same tensors and config (bytes may differ: safetensors orders header metadata freely).
    assert load_config(other) == load_config(out)
    a, b = load_file(other), load_file(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_convert_refuses_hostile_checkpoint(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": torch.nn.Conv2d(1, 1, 1), "train_args": Evil()}, evil)
    result = fastsam("convert", str(evil), str(tmp_path / "out.safetensors"))
    assert result.returncode == 1
    assert "posix.system" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_info_on_converted_file(converted):
    out, _ = converted
    result = fastsam("info", str(out), "--flops", "--imgsz", "320")
    assert result.returncode == 0, result.stderr
    assert "reg_max 26" in result.stdout
    assert re.search(
        r"parameters: backbone [\d,]+, neck [\d,]+, head [\d,]+, total 667,293", result.stdout
    )
    assert re.search(
        r"GFLOPs @ 320x320: backbone [\d.]+, neck [\d.]+, head [\d.]+, total", result.stdout
    )


def test_info_on_preset_says_random_weights():
    result = fastsam("info", "fastsam-s")
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stdout
    assert "total 11,790,483" in result.stdout  # spec §1.7
    assert "GFLOPs" not in result.stdout  # only with --flops


def test_info_unknown_model():
    result = fastsam("info", "fastsam-q")
    assert result.returncode == 1 and "neither a model file nor a preset" in result.stderr


def test_overwrite_is_an_alias_of_force(converted):
    out, _ = converted
    result = fastsam("convert", str(UL120_PT), str(out), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert sha256(out) in result.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp files left


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (bytes(range(256)) * 40, "not a zip archive"),
        (b"PK\x03\x04" + b"\x00" * 300, "its end is missing"),
    ],
    ids=["empty", "random", "truncated-zip"],
)
@pytest.mark.parametrize("entry", ["fastsam", "module"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, content, match, entry):
    src = tmp_path / "in.pt"
    src.write_bytes(content)
    out = tmp_path / "out.safetensors"
    result = convert(entry, str(src), str(out))
    assert result.returncode == 1
    assert match in result.stderr and str(src) in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pt"]


def test_existing_output_survives_a_failed_forced_conversion(tmp_path):
    src = tmp_path / "in.pt"
    src.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"precious")
    result = fastsam("convert", str(src), str(out), "--force")
    assert result.returncode == 1 and out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pt", "out.safetensors"]


def test_detection_state_dict_is_refused_in_one_line(tmp_path):
    from fastsam_weights_convert.checkpoint import checkpoint_source, flat_state_dict
    from fastsam_weights_convert.unpickle import load_checkpoint

    model, _ = checkpoint_source(load_checkpoint(UL120_PT))
    detect = {
        k: v for k, v in flat_state_dict(model).items() if "proto" not in k and ".cv4." not in k
    }
    src = tmp_path / "yolov8-detect.pt"
    torch.save({"model": detect}, src)
    result = fastsam("convert", str(src), str(tmp_path / "out.safetensors"))
    assert result.returncode == 1
    assert "this is a detection model, not segmentation" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "out.safetensors").exists()


def test_info_shows_class_branch_width(converted):
    out, _ = converted
    result = fastsam("info", str(out))
    assert result.returncode == 0, result.stderr
    assert "class-branch width 16" in result.stdout  # tiny fixture: P3 = 16 channels, nc = 1


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KB tmpfs: writing the ~3 MB converted file fails with a real ENOSPC."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:  # needs root (CI runs as root) and mount rights
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("entry", ["fastsam", "module"])
def test_disk_full_is_one_line_and_leaves_nothing(full_disk, entry):
    out = full_disk / "tiny.safetensors"
    result = convert(entry, str(UL120_PT), str(out))
    assert result.returncode == 1, result.stdout
    assert "could not write" in result.stderr and str(out) in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert list(full_disk.iterdir()) == []  # no partial output, no temp file


def test_torchscript_checkpoint_is_refused_in_one_line(tmp_path):
    module = torch.jit.script(torch.nn.Linear(2, 2))
    src = tmp_path / "FastSAM-s.pt"
    torch.jit.save(module, str(src))
    out = tmp_path / "out.safetensors"
    result = fastsam("convert", str(src), str(out))
    assert result.returncode == 1 and "TorchScript" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert not out.exists()
