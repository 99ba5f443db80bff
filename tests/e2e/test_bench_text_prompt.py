"""bench/text_prompt.py --quick runs end to end (CI smoke test; timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_text_prompt_bench_quick(tmp_path: Path) -> None:
    pytest.importorskip("open_clip", reason="the clip extra")
    out = tmp_path / "text_prompt.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.text_prompt", "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    assert payload["environment"]["torch"] == __import__("torch").__version__
    cases = {r["case"] for r in payload["results"]}
    assert {"prompt_batched", "prompt_one_by_one", "encode_batched", "encode_one_by_one"} <= cases
    assert payload["config"]["masks"] == 20 and payload["max_prompt_score_diff"] < 1e-4
    assert all(r["median"] > 0 for r in payload["results"])
