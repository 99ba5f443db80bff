"""`fastsam export` as a subprocess: fp32 and INT8 graphs of the tiny checkpoint, what it prints,
overwrite refusal and argument errors; then the graph runs in `fastsam segment`. Issue 14."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastsam_core.onnxrt.session import OnnxNetwork
from tests.support.onnx_graphs import TINY_CHECKPOINT
from tests.support.photos import PHOTOS_DIR, photo

REPO = Path(__file__).resolve().parents[2]


def fastsam(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from fastsam_core.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO, capture_output=True, check=False, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    return out, fastsam("export", str(TINY_CHECKPOINT), str(out), "--imgsz", "256", "320")


def test_export_prints_what_it_wrote(exported: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, done = exported
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(TINY_CHECKPOINT.read_bytes()).hexdigest()
    assert f"wrote {out}" in done.stdout
    size = float(re.search(r"size:\s+([\d.]+) MB", done.stdout).group(1))  # type: ignore[union-attr]
    assert abs(size - out.stat().st_size / 1e6) < 0.06
    assert re.search(r"input:\s+images uint8 \(B, 3, H, W\), 256x320 \(fixed\)", done.stdout)
    assert re.search(r"precision:\s+fp32, opset 18", done.stdout)
    assert f"sha256 {digest}" in done.stdout
    assert "Skipped deduplication" not in done.stdout + done.stderr  # exporter noise silenced
    network = OnnxNetwork(out)
    assert network.input_hw == (256, 320) and network.info.source_sha256 == digest


def test_export_refuses_to_overwrite(exported: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, _ = exported
    before = out.read_bytes()
    done = fastsam("export", str(TINY_CHECKPOINT), str(out))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"fastsam export: error: {out} already exists; pass --force to overwrite it"
    )
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--int8"], "--int8 needs calibration photos: pass --calib DIR_OR_GLOB"),
        (["--calib", "x"], "--calib only applies to --int8"),
        (["--int8", "--half", "--calib", "x"], "--int8 and --half exclude each other"),
        (["--imgsz", "1", "2", "3"], "--imgsz takes N or H W, got 3 numbers"),
    ],
)
def test_export_argument_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = fastsam("export", str(TINY_CHECKPOINT), str(tmp_path / "m.onnx"), *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_export_int8_reports_agreement(tmp_path: Path) -> None:
    out = tmp_path / "tiny-int8.onnx"
    done = fastsam(
        "export", str(TINY_CHECKPOINT), str(out), "--imgsz", "256", "--int8",
        "--calib", str(PHOTOS_DIR / "*.jpg"), "--calib-count", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = re.search(r"int8 vs fp32 on 2 calibration photos: mean mask IoU ([\d.]+)", done.stdout)
    assert found and 0.0 <= float(found.group(1)) <= 1.0, done.stdout
    assert re.search(r"precision:\s+int8", done.stdout)
    assert OnnxNetwork(out).info.int8
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-int8.onnx"]


def test_exported_graph_segments(
    exported: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    """The product recipe's second line: the graph's own size, no torch needed."""
    out, _ = exported
    done = fastsam(
        "segment", str(photo("coffee.jpg")), "--model", str(out), "--conf", "0.25",
        "--out", str(tmp_path), "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text()), done.stdout
