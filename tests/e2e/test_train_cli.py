"""`fastsam train` and `fastsam eval` end to end, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fastsam_core.data.synthetic import make_synthetic_dataset


def _fastsam(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastsam_core", *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # see tests/unit/test_train_trainer.py
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_train_then_eval(tmp_path):
    pytest.importorskip("pycocotools", reason="needs the `eval` extra")
    data = make_synthetic_dataset(
        tmp_path / "data", num_images=4, image_size=(64, 64), max_objects=2, seed=2
    )
    train = [
        "train",
        "--data",
        str(data),
        "--out",
        "run",
        "--imgsz",
        "64",
        "--batch",
        "2",
        "--epochs",
        "1",
        "--no-progress",
        "--single-class",
        "--val-data",
        str(data),
        "--val-every",
        "1",
    ]
    proc = _fastsam(*train, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights: run/weights.safetensors" in proc.stdout
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and [x["step"] for x in lines] == [1, 2, 2]  # 2 steps + 1 epoch line
    assert 0.0 <= lines[-1]["val"]["mask_map50"] <= 1.0  # validation inside training

    again = _fastsam(*train, cwd=tmp_path)
    assert (
        again.returncode == 1
        and "already exists; pass --resume to continue it or --force" in again.stderr
    )

    proc = _fastsam(
        "eval",
        "--data",
        str(data),
        "--model",
        "run/weights.safetensors",
        "--imgsz",
        "64",
        "--class-agnostic",
        "--max-det",
        "20",
        "--json",
        "metrics.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mask_map50" in proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["mask_map"] <= 1.0 and "box_ar100" in metrics


def test_train_reports_bad_data_in_one_line(tmp_path):
    proc = _fastsam("train", "--data", "missing.json", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == "fastsam train: error: dataset file missing.json does not exist; "
        "pass a COCO .json or a .yaml"
    )
