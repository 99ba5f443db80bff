"""Build this repository's wheel from a copy of its sources (the shared tree stays clean).

Used by tests/e2e/test_packaging.py (the default PyTorch distribution) and
tests/e2e/test_runtime_install.py (the torch-free runtime: `FASTSAM_RUNTIME_ONLY=1`, setup.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# import name -> source folder (setup.py's PACKAGE_DIRS)
PACKAGES = {
    "fastsam_core": "fastsam_core",
    "fastsam_kernels": "kernels",
    "fastsam_weights_convert": "weights_convert",
}
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md")


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without PYTHONPATH/PYTHONHOME (nothing leaks in from the repo), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("FASTSAM_RUNTIME_ONLY", None)
    env.update(extra)
    return env


def build_wheel(tmp: Path, **env: str) -> Path:
    """Copy the sources to `tmp/src`, build the wheel into `tmp/dist` and return its path.

    `env` is added to the build's environment (e.g. FASTSAM_RUNTIME_ONLY="1")."""
    src = tmp / "src"
    src.mkdir(parents=True)
    for name in BUILD_FILES:
        shutil.copy2(REPO_ROOT / name, src / name)
    for folder in PACKAGES.values():
        shutil.copytree(
            REPO_ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    dist = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist)]
    # Offline first (the installed setuptools); an isolated build (downloads the build
    # requirements) only if that setuptools cannot build wheels by itself.
    build = subprocess.run(
        [*cmd, "--no-build-isolation", str(src)],
        check=False, capture_output=True, text=True, env=clean_env(**env), cwd=tmp,
    )  # fmt: skip
    if build.returncode != 0:
        build = subprocess.run(
            [*cmd, str(src)], check=False, capture_output=True, text=True, env=clean_env(**env),
            cwd=tmp,
        )  # fmt: skip
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    wheels = list(dist.glob("fastsam_core-*.whl"))
    assert len(wheels) == 1, f"expected one fastsam_core wheel in {dist}, got {wheels}"
    return wheels[0]
