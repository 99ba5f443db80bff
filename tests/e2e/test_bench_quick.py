"""Benchmark scripts run end to end in their --quick mode (CI smoke tests of bench/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_mask_assembly_quick(tmp_path: Path) -> None:
    out = tmp_path / "mask_assembly.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.mask_assembly", "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
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
