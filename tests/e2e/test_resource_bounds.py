"""Inference resource bounds and output safety (issue #20): mask memory budget, imgsz bounds,
output sets written whole, planted symlinks, a full disk, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastsam_core.mask_backends import MaskMemoryError, get_mask_backend, mask_bytes
from fastsam_core.ops.letterbox import letterbox_geometry
from fastsam_core.predictor import Predictor
from tests.support.photos import photo

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"


def _masks_inputs(n: int, orig_hw: tuple[int, int], box_frac: float = 1.0):
    geometry = letterbox_geometry(orig_hw, 1024)
    h, w = geometry.input_hw
    protos = torch.randn(32, h // 4, w // 4)
    coeffs = torch.randn(n, 32)
    boxes_input = torch.tensor([[0.0, 0.0, w * box_frac, h * box_frac]]).repeat(n, 1)
    scale = max(orig_hw) / max(h, w)
    return protos, coeffs, boxes_input, boxes_input * scale, geometry


@pytest.mark.parametrize("backend", ["auto", "reference", "eager"])
def test_huge_image_masks_are_refused_before_allocating(backend):
    """300 full-frame retina masks of a 12000x12000 photo: ~200 GB; refused in milliseconds."""
    args = _masks_inputs(300, (12000, 12000))
    with pytest.raises(MaskMemoryError, match=r"300 masks of this 12000x12000 image.*--no-retina"):
        get_mask_backend(backend)(*args, retina=True, postprocess="official", mask_rule="logit")


def test_the_same_masks_fit_at_network_resolution():
    args = _masks_inputs(300, (12000, 12000), box_frac=0.05)
    masks = get_mask_backend("auto")(*args, retina=False, postprocess="official", mask_rule="logit")
    assert len(masks) == 300


def test_budget_counts_box_windows_not_frames():
    small = _masks_inputs(10, (4000, 4000), box_frac=0.1)
    compact = mask_bytes(small[2], small[3], small[4], retina=True, dense=False)
    dense = mask_bytes(small[2], small[3], small[4], retina=True, dense=True)
    assert compact < dense / 50  # 1 % of the frame per mask, plus a 2-px margin


def test_budget_is_configurable(monkeypatch):
    args = _masks_inputs(4, (2000, 2000))
    monkeypatch.setenv("FASTSAM_MAX_MASK_GB", "0.001")
    with pytest.raises(MaskMemoryError, match="limit 0.0 GB"):
        get_mask_backend("auto")(*args, retina=True, postprocess="official", mask_rule="logit")
    monkeypatch.setenv("FASTSAM_MAX_MASK_GB", "lots")
    with pytest.raises(ValueError, match="FASTSAM_MAX_MASK_GB must be a number"):
        get_mask_backend("auto")(*args, retina=True, postprocess="official", mask_rule="logit")


@pytest.mark.parametrize("imgsz", [0, -32, 100_000, (64, 0)])
def test_bad_imgsz_is_refused_before_the_model_loads(tmp_path, imgsz):
    with pytest.raises(ValueError, match="imgsz"):  # not "model file not found"
        Predictor(tmp_path / "missing.safetensors", imgsz=imgsz)


def _segment(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fastsam_core", "segment", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.mark.parametrize("imgsz", ["0", "100000"])
def test_cli_bad_imgsz_is_one_line(tmp_path, imgsz):
    result = _segment(str(photo("coffee.jpg")), "--model", str(TINY), "--imgsz", imgsz,
                      "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode != 0 and "imgsz" in result.stderr
    assert "Traceback" not in result.stderr


def test_planted_symlink_at_an_output_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.json").symlink_to(victim)
    result = _segment(str(photo("coffee.jpg")), "--model", str(TINY), "--imgsz", "256",
                      "--format", "json", "--out", str(out), "--force")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "precious"
    assert not (out / "coffee.json").is_symlink() and (out / "coffee.json").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["coffee.json"]  # no temp files left


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if made.returncode != 0:  # needs root (CI runs as root) and mount rights
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_leaves_no_partial_output_set_and_a_rerun_works(full_disk, tmp_path):
    """The PNG overlay does not fit: neither it nor the JSON written before it is left."""
    args = [str(photo("coffee.jpg")), "--model", str(TINY), "--imgsz", "256", "--format",
            "json,png", "--out", str(full_disk)]  # fmt: skip
    result = _segment(*args)
    assert result.returncode == 1 and "failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(full_disk.iterdir()) == []
    subprocess.run(["umount", str(full_disk)], check=True)  # room again: the rerun is not blocked
    result = _segment(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in full_disk.iterdir()) == ["coffee.json", "coffee.png"]


def test_read_only_out_is_reported_before_the_model_loads(tmp_path):
    """A read-only filesystem (root can write through permissions, not through `ro`)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        result = _segment(str(photo("coffee.jpg")), "--model", str(tmp_path / "missing.pt"),
                          "--out", str(mount / "x"))  # fmt: skip
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    assert result.returncode == 1 and "cannot write" in result.stderr  # not "model not found"
