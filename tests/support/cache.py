"""The on-disk cache shared by the test helpers (oracle checkpoints, the 8.0.120 venv, results)."""

from __future__ import annotations

import os
from pathlib import Path


def test_cache_root() -> Path:
    """`$FASTSAM_TEST_CACHE` or `~/.cache/fastsam-core-tests`, created if missing."""
    root = os.environ.get("FASTSAM_TEST_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fastsam-core-tests"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
