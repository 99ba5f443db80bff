"""Benchmark scripts run end to end in their --quick mode (CI smoke tests of bench/)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_mask_assembly_quick(tmp_path: Path) -> None:
    out = tmp_path / "mask_assembly.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.mask_assembly", "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    env = payload["environment"]
    assert env["torch"] == __import__("torch").__version__ and env["commit"]
    rows = {r["backend"]: r for r in payload["results"]}
    assert set(rows) == {"reference", "eager"}
    for row in rows.values():
        assert row["n"] == 10 and row["resolution"] == "640" and row["median_ms"] > 0
        # same masks as the reference up to near-threshold ties (tests/kernels bounds them by value)
        assert row["max_area_diff_vs_reference"] <= 2
    # the region-only backend stores far fewer pixels than the frame x N
    assert rows["eager"]["stored_pixels"] < 10 * rows["eager"]["frame_pixels"]


@pytest.mark.oracle
def test_end_to_end_quick(tmp_path: Path, oracle_checkpoint: Callable[..., Path]) -> None:
    """bench/end_to_end.py --quick: ours (plain + fast) and the oracle on the same image, stages,
    forward GFLOP/s, throughput, cold start + peak RSS per side in fresh processes, profile trace."""
    pytest.importorskip("ultralytics", reason="the oracle side needs ultralytics==8.4.190")
    out, trace = tmp_path / "e2e.json", tmp_path / "trace.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.end_to_end", "--quick", "--checkpoint", str(oracle_checkpoint()),
         "--json", str(out), "--profile", str(trace)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    env = report["env"]
    assert env["torch"] == __import__("torch").__version__ and env["commit"] and env["cpu_model"]
    assert env["threads"] >= 1 and env["load_average"] is not None
    (case,) = report["cases"]
    for variant in ("plain", "fast"):
        stages = case["ours"][variant]
        assert stages["total"]["median"] > 0 and stages["forward"]["median"] > 0
        # the stage split accounts for the whole call (other = the remainder, never negative)
        parts = sum(stages[s]["median"] for s in ("preprocess", "forward", "nms", "masks", "other"))
        assert parts == pytest.approx(stages["total"]["median"], rel=1e-6)
        assert case["ratio"][variant] > 0
    assert {"preprocess", "inference", "postprocess", "total"} <= set(case["oracle"])
    # same checkpoint and inputs: plain, fast and the oracle agree on the detection count
    counts = case["detections"]
    assert counts["plain"] == counts["fast"] and abs(counts["plain"] - counts["oracle"]) <= 1, counts
    (forward,) = report["forward"]
    assert forward["gflops"] > 0 and forward["fast"]["gflop_per_s"] > 0 and "oracle" in forward
    assert [row["batch"] for row in report["throughput"]] == [1, 2]
    sides = {row["side"] for row in report["cold_start"]}
    assert sides == {"ours", "oracle"}
    assert all(0 < row["peak_rss_mb"] < 64_000 and row["cold_start_s"] > 0 for row in report["cold_start"])
    assert json.loads(trace.read_text())["traceEvents"]
