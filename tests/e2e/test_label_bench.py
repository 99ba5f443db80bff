"""bench/label_throughput.py --quick: the label and segment sides run and report images/s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_label_throughput_quick(tmp_path: Path) -> None:
    out = tmp_path / "label_throughput.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.label_throughput", "--quick", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["env"]["torch"] == __import__("torch").__version__
    rows = {row["side"]: row for row in report["rows"]}
    assert set(rows) == {"label 1x2", "segment"}
    for row in rows.values():
        assert row["images"] == 4 and row["wall_s"] > 0 and row["one_image_s"] > 0
        assert row["images_per_s"] > 0
