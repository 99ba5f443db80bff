"""Inputs of `bench/end_to_end.py`: checkpoint, its converted weights, decoded photos, cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT

# where --images names are looked up, in order: an optional extra folder ($FASTSAM_BENCH_IMAGES,
# else ../shared/images when it exists), then the photos bundled with the tests
IMAGES_DIRS = [
    Path(os.environ.get("FASTSAM_BENCH_IMAGES", REPO_ROOT.parent / "shared" / "images")),
    REPO_ROOT / "tests" / "fixtures" / "images",
]
DEFAULT_IMAGES = {"sparse": "dogs.jpg", "dense": "sa_862.jpg"}


def cache_dir() -> Path:
    root = os.environ.get("FASTSAM_TEST_CACHE") or Path.home() / ".cache" / "fastsam-core-tests"
    path = Path(root) / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def official_checkpoint(scale: str) -> Path:
    """The official FastSAM-s / FastSAM-x `.pt` (downloaded once into the weights cache), which
    both sides can load; offline, or for other scales, pass --checkpoint (any ultralytics .pt, e.g.
    an oracle-made one from the test suite's fixtures)."""
    from fastsam_core.hub import checkpoint_path

    if scale not in ("s", "x"):
        raise SystemExit(
            f"no official FastSAM-{scale} checkpoint; pass --checkpoint PATH (an ultralytics .pt)"
        )
    return checkpoint_path(f"fastsam-{scale}")


def converted(checkpoint: Path) -> Path:
    """`fastsam convert` of `checkpoint` (in a subprocess, ultralytics never imported), cached."""
    out = cache_dir() / f"{checkpoint.stem}-{checkpoint.stat().st_size}.safetensors"
    if not out.exists():
        tmp = out.with_suffix(".tmp.safetensors")
        subprocess.run(
            [sys.executable, "-m", "fastsam_core", "convert", str(checkpoint), str(tmp), "--force"],
            check=True, cwd=REPO_ROOT, capture_output=True,
        )  # fmt: skip
        os.replace(tmp, out)
    return out


def load_images(names: list[str], quick: bool) -> dict[str, np.ndarray]:
    """name -> (H, W, 3) uint8 BGR, decoded once with cv2 (the oracle's reader); generated if absent."""
    import cv2

    images = {}
    for name in names:
        path = next((d / name for d in IMAGES_DIRS if (d / name).exists()), IMAGES_DIRS[-1] / name)
        if path.exists():
            image = cv2.imread(str(path))
            if image is None:
                raise ValueError(f"cv2 could not decode {path}")
        else:  # smooth random blobs: a stand-in photo (documented in the JSON as generated)
            rng = np.random.default_rng(abs(hash(name)) % 2**32)
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            image = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
            name = f"generated:{name}"
        if quick:
            image = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4))
        images[name] = np.ascontiguousarray(image)
    return images
