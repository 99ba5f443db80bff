"""The torch-free runtime installs and runs on its own (issue #14 item 5).

`FASTSAM_RUNTIME_ONLY=1` builds the same package whose dependencies are numpy, pillow and tqdm
(setup.py); with the `runtime` extra it adds onnxruntime. Installed into a fresh virtual
environment (no torch anywhere), `fastsam segment --model x.onnx` must run and write the same
records as the runtime does inside the full install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.photos import photo
from tests.support.wheels import REPO_ROOT, build_wheel, clean_env

TINY = REPO_ROOT / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(meta).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


@pytest.fixture(scope="module")
def runtime_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("runtime_wheel"), FASTSAM_RUNTIME_ONLY="1")


def test_runtime_wheel_does_not_require_torch(runtime_wheel: Path) -> None:
    requires = _requires(runtime_wheel)
    base = [r for r in requires if "extra ==" not in r]
    assert sorted(r.split(">")[0] for r in base) == ["numpy", "pillow", "tqdm"], requires
    runtime_extra = [r for r in requires if 'extra == "runtime"' in r]
    assert [r.split(">")[0] for r in runtime_extra] == ["onnxruntime"], requires


def test_runtime_alone_segments_a_photo(runtime_wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{runtime_wheel}[runtime]"],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-4000:]
    probe = subprocess.run(
        [str(python), "-c", "import torch"], capture_output=True, text=True, env=clean_env()
    )
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr

    graph = tmp_path / "tiny.onnx"
    export = subprocess.run(
        [sys.executable, "-m", "fastsam_core.cli", "export", str(TINY), str(graph),
         "--imgsz", "256"],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr[-4000:]

    image = photo("coffee.jpg")  # the tiny net finds masks here (not in chelsea)
    args = ["segment", str(image), "--model", str(graph), "--imgsz", "256", "--format", "json"]
    alone = subprocess.run(
        [str(env_dir / "bin" / "fastsam"), *args, "--out", str(tmp_path / "alone")],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-4000:]
    full = subprocess.run(
        [sys.executable, "-m", "fastsam_core.cli", *args, "--out", str(tmp_path / "full")],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert full.returncode == 0, full.stderr[-4000:]
    ours = json.loads((tmp_path / "alone" / "coffee.json").read_text())
    theirs = json.loads((tmp_path / "full" / "coffee.json").read_text())
    assert ours["annotations"], "the tiny net found nothing: the comparison would be empty"
    assert ours == theirs
