"""`fastsam segment` as a user runs it (subprocess) on the real photos, outputs re-read and checked.

The checkpoint is an oracle-made random-weight FastSAM-s (BatchNorm recalibrated on the photos,
class branch calibrated for a realistic number of boxes at conf 0.4) converted by our converter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam_core.results import Results

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO.parent / "shared" / "images"
PHOTOS = ["dogs.jpg", "sa_10039.jpg"]  # the slow test below runs every photo


@pytest.fixture(scope="session")
def converted_s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrated random-weight FastSAM-s, converted .pt -> .safetensors (built once, cached)."""
    try:
        from tests.support.oracle_models import calibrated_oracle_checkpoint
    except ImportError as err:  # pragma: no cover
        pytest.skip(f"test support unavailable: {err}")
    try:
        checkpoint = calibrated_oracle_checkpoint("s", 16)
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"needs the ultralytics oracle to build the test checkpoint once: {err}")
    from fastsam_weights_convert import convert_file

    out = tmp_path_factory.mktemp("ckpt") / "fastsam-s-random.safetensors"
    convert_file(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [p for p in PHOTOS if not (IMAGES / p).exists()]
    if missing:
        pytest.skip(f"photos {missing} not found in {IMAGES}")
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(IMAGES / name, folder / name)
    (folder / "m_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # sorts in the middle
    return folder


def _segment(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fastsam_core", "segment", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _check_outputs(out: Path, stem: str, photo: Path, conf: float) -> int:
    """Re-read the PNG/JSON/RLE/NPZ of one image; returns the number of masks."""
    from pycocotools import mask as mask_utils

    with Image.open(photo) as img:
        original = np.asarray(img.convert("RGB"))
    h0, w0 = original.shape[:2]
    overlay = np.asarray(Image.open(out / f"{stem}.png").convert("RGB"))
    assert overlay.shape == (h0, w0, 3)

    doc = json.loads((out / f"{stem}.json").read_text())
    assert doc["image"]["height"] == h0 and doc["image"]["width"] == w0
    records = doc["annotations"]
    rle_doc = json.loads((out / f"{stem}.rle.json").read_text())
    assert rle_doc["rle"] == [r["segmentation"] for r in records]
    loaded = Results.load_npz(out / f"{stem}.npz")
    assert len(loaded) == len(records)

    scores = [r["score"] for r in records]
    assert all(s > conf for s in scores) and scores == sorted(scores, reverse=True)
    union = np.zeros((h0, w0), bool)
    for i, record in enumerate(records):
        x, y, w, h = record["bbox"]
        assert -1e-3 <= x and -1e-3 <= y and x + w <= w0 + 1e-3 and y + h <= h0 + 1e-3
        rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
        mask = mask_utils.decode(rle).astype(bool)  # (H0, W0)
        assert mask.shape == (h0, w0)
        assert int(mask.sum()) == record["area"] == int(mask_utils.area(rle))
        np.testing.assert_allclose(loaded.boxes[i].numpy(), record["bbox_xyxy"], atol=1e-3)
        assert np.array_equal(loaded.masks_original().dense(i).numpy(), mask)
        if record["area"]:  # retina official masks are cropped by their box (+1 px rounding)
            ys, xs = np.nonzero(mask)
            assert xs.min() >= x - 1 and xs.max() <= x + w + 1
            assert ys.min() >= y - 1 and ys.max() <= y + h + 1
        union |= mask
    if union.any():  # the overlay changed the masked pixels, not the rest
        changed = np.any(overlay != original, axis=2)
        assert changed[union].mean() > 0.5
    return len(records)


def test_segment_directory_with_a_bad_file(
    converted_s: Path, photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = _segment(
        str(photo_dir),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "png,json,rle,npz",
    )
    assert proc.returncode == 1, proc.stderr  # one file failed, the others were written
    assert "m_broken.jpg" in proc.stderr and "cannot read image" in proc.stderr
    assert "segmented 2 image(s)" in proc.stdout and "1 failed" in proc.stdout
    counts = {
        stem: _check_outputs(out, stem, photo_dir / f"{stem}.jpg", conf=0.4)
        for stem in (Path(p).stem for p in PHOTOS)
    }
    assert sum(counts.values()) > 0, counts
    assert not list(out.glob("m_broken*")) and not list(out.glob(".*"))  # no partial/temp files

    # Never overwrite without --force; nothing is touched.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _segment(
        str(photo_dir / "dogs.jpg"),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--out",
        str(out),
        "--format",
        "json",
    )
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    forced = _segment(
        str(photo_dir / "dogs.jpg"),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "json",
        "--force",
        "--no-retina",
        "--conf",
        "0.5",
    )
    assert forced.returncode == 0, forced.stderr
    assert (out / "dogs.json").stat().st_mtime_ns != before["dogs.json"]
    doc = json.loads((out / "dogs.json").read_text())
    assert all(r["score"] > 0.5 for r in doc["annotations"])


def test_segment_usage_errors(
    converted_s: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One clear line and exit code 1 (in-process: the same `main` the entry point runs)."""
    from fastsam_core.cli import main

    cases = [
        ([str(tmp_path / "nothing.jpg"), "--model", str(converted_s)], "nothing.jpg"),
        (
            [str(IMAGES / "cat.jpg"), "--model", str(tmp_path / "missing.safetensors")],
            "weights file not found",
        ),
        ([str(IMAGES / "cat.jpg"), "--model", str(converted_s), "--format", "png,gif"], "--format"),
        (
            [str(IMAGES / "cat.jpg"), "--model", str(converted_s), "--conf", "-1"],
            "conf must be in [0, 1]",
        ),
        ([str(IMAGES / "cat.jpg"), "--model", str(converted_s), "--device", "cuda:7"], "cuda:7"),
    ]
    for args, message in cases:
        code = main(["segment", *args, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_cleanly(converted_s: Path, tmp_path: Path) -> None:
    photos = sorted(IMAGES.glob("*.jpg"))
    if len(photos) < 3:
        pytest.skip(f"needs photos in {IMAGES}")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "fastsam_core",
        "segment",
        str(IMAGES),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "json,npz",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files
    for path in out.glob("*.json"):
        json.loads(path.read_text())  # every written file is complete


@pytest.mark.slow
def test_segment_all_shared_photos(converted_s: Path, tmp_path: Path) -> None:
    photos = sorted(IMAGES.glob("*.jpg"))
    if not photos:
        pytest.skip(f"no photos in {IMAGES}")
    out = tmp_path / "out"
    proc = _segment(
        str(IMAGES),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "json",
        "--no-retina",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{p.stem}.json" for p in photos)
