"""The paper's tasks through the CLI (issue #16): `fastsam edges` and `fastsam eval --task ...`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam_core.data.synthetic import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt")
SMALL = ("--model", TINY, "--imgsz", "160", "--device", "cpu")


def fastsam(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastsam_core", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    return make_synthetic_dataset(root, num_images=2, image_size=(128, 160), seed=11)


def _metrics(stdout: str) -> dict[str, float]:
    """`NAME VALUE` lines of the eval output."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\S+) +(-?[0-9.]+)$", stdout, re.MULTILINE)}


def test_edges_writes_one_png_per_image(dataset, tmp_path):
    images = sorted((dataset.parent / "images").glob("*.png"))
    out = tmp_path / "edges"
    done = fastsam(
        "edges", *map(str, images), *SMALL, "--conf", "0.01", "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    for image in images:
        edges = np.asarray(Image.open(out / image.name))
        assert edges.shape == (128, 160) and edges.dtype == np.uint8
    again = fastsam("edges", str(images[0]), *SMALL, "--out", str(out), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("fastsam edges: error: 1 output")
    forced = fastsam("edges", str(images[0]), *SMALL, "--out", str(out), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


def test_edges_missing_image_is_one_line(tmp_path):
    done = fastsam("edges", "missing.png", *SMALL, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "fastsam edges: error: no such image file(s): missing.png"


def test_eval_edges(dataset, tmp_path):
    out = tmp_path / "edges.json"
    done = fastsam(
        "eval", "--task", "edges", "--data", str(dataset), *SMALL, "--conf", "0.01",
        "--json", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = _metrics(done.stdout)
    assert set(metrics) >= {"ODS", "OIS", "AP", "R50"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("ODS", "OIS", "AP", "R50"))
    saved = json.loads(out.read_text())
    assert saved["ODS"] == pytest.approx(metrics["ODS"], abs=5e-4)


def test_eval_proposals(dataset, tmp_path):
    out = tmp_path / "proposals.json"
    done = fastsam(
        "eval", "--task", "proposals", "--data", str(dataset), *SMALL, "--json", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = _metrics(done.stdout)
    for key in ("box_AR@10", "box_AR@100", "box_AR@1000", "mask_AR@100"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["box_AR@10"] <= metrics["box_AR@100"] <= metrics["box_AR@1000"]
    assert set(json.loads(out.read_text())) >= set(metrics)


def test_eval_box_prompted(dataset, tmp_path):
    gt = json.loads(dataset.read_text())
    detections = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]
    boxes = tmp_path / "detections.json"
    boxes.write_text(json.dumps(detections))
    done = fastsam(
        "eval", "--task", "box-prompted", "--data", str(dataset), "--boxes", str(boxes), *SMALL,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = _metrics(done.stdout)
    assert 0.0 <= metrics["mask_map"] <= 1.0
    assert metrics["box_map"] == pytest.approx(1.0, abs=1e-3)  # the detector's (exact) boxes


def test_eval_box_prompted_needs_boxes(dataset, tmp_path):
    done = fastsam("eval", "--task", "box-prompted", "--data", str(dataset), *SMALL, cwd=tmp_path)
    assert done.returncode != 0
    assert "--boxes" in done.stderr.strip().splitlines()[-1]
