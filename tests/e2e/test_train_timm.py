"""`fastsam train --backbone timm:resnet18` trains, evaluates and reloads end to end (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.weights import load_config, load_model

timm = pytest.importorskip("timm", reason="timm backbones need the timm package")


def _fastsam(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastsam_core", *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_train_eval_and_reload_with_a_timm_backbone(tmp_path):
    pytest.importorskip("pycocotools", reason="needs the `eval` extra")
    data = make_synthetic_dataset(
        tmp_path / "data", num_images=4, image_size=(64, 64), max_objects=2, seed=3
    )
    # Local backbone weights, as a user brings them (the hub is never contacted).
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    proc = _fastsam(
        "train", "--data", str(data), "--out", "run", "--imgsz", "64", "--batch", "2",
        "--epochs", "1", "--no-progress", "--single-class", "--backbone", "timm:resnet18",
        "--backbone-weights", "resnet18.pth", "--val-data", str(data), "--val-every", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 2 and 0.0 <= lines[-1]["val"]["mask_map50"] <= 1.0

    weights = tmp_path / "run" / "weights.safetensors"
    assert load_config(weights).backbone == "timm:resnet18"
    model = load_model(weights)
    assert model.backbone.timm_name == "resnet18"
    proc = _fastsam(
        "eval", "--data", str(data), "--model", str(weights), "--imgsz", "64",
        "--class-agnostic", "--max-det", "20", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mask_map50" in proc.stdout
    info = _fastsam("info", str(weights), "--flops", "--imgsz", "64", cwd=tmp_path)
    assert info.returncode == 0, info.stderr[-3000:]
    assert "backbone:   timm:resnet18" in info.stdout
    assert "GFLOPs @ 64x64: backbone" in info.stdout


def test_train_refuses_a_bad_backbone(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", num_images=2, image_size=(64, 64), seed=4)
    proc = _fastsam(
        "train", "--data", str(data), "--out", "run", "--imgsz", "64", "--batch", "2",
        "--epochs", "1", "--no-progress", "--backbone", "timm:no_such_net", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "timm backbone 'no_such_net'" in proc.stderr
