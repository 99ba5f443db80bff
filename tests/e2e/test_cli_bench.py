"""`fastsam bench` (our side only) as a user runs it: subprocess, a small model file, one photo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.config import yolov8_seg_config
from fastsam_core.model.yolov8_seg import build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fastsam_weights_convert import save_converted

    torch.manual_seed(0)
    cfg = yolov8_seg_config("n", imgsz=160)
    path = tmp_path_factory.mktemp("bench") / "tiny.safetensors"
    save_converted(build_model(cfg).state_dict(), cfg, path)
    return path


def _fastsam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastsam_core", *args], cwd=REPO, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_bench_cli_stages_throughput_profile(weights: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)).save(image)
    out, trace = tmp_path / "bench.json", tmp_path / "trace.json"
    proc = _fastsam(
        "bench",
        str(weights),
        str(image),
        "--imgsz",
        "160",
        "--repeats",
        "2",
        "--batch-sizes",
        "2",
        "--conf",
        "0.01",
        "--json",
        str(out),
        "--profile",
        str(trace),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    (row,) = report["images"]
    assert row["hw"] == [120, 200] and row["total"]["median"] > 0 and row["forward"]["median"] > 0
    parts = sum(row[s]["median"] for s in ("preprocess", "forward", "nms", "masks", "other"))
    assert parts <= row["total"]["median"] * 1.5  # medians of parts ~ the median of the whole
    assert report["throughput"][0]["batch"] == 2 and report["throughput"][0]["images_per_s"] > 0
    assert report["fast"] == "default" and json.loads(trace.read_text())["traceEvents"]
    assert "noise.png" in proc.stdout and "images/s" in proc.stdout


def test_bench_cli_errors(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastsam_core.cli import main  # in process: error paths need no fresh interpreter

    assert main(["bench", str(weights), str(tmp_path / "missing.jpg")]) == 1
    assert "fastsam bench: error:" in capsys.readouterr().err
    assert main(["bench", str(weights), str(tmp_path), "--fast", "turbo"]) == 1
    assert "unknown fast preset 'turbo'" in capsys.readouterr().err
