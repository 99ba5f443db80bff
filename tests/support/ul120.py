"""A cached virtualenv with ``ultralytics==8.0.120`` (the OFFICIAL FastSAM reference, spec §0 "U120").

Tests cannot import 8.0.120 next to the 8.4.190 oracle, so they run it in a subprocess:

    python = ul120_python()                       # builds <cache>/venv120 once (file-locked)
    out = run_ul120(script, inputs={"x": tensor})  # runs `script` there, returns its `result` dict

The venv uses ``--system-site-packages`` (torch, numpy, cv2 come from this interpreter) and installs only
``ultralytics==8.0.120 --no-deps`` into its own site-packages, which shadow the system's 8.4.190.
Cache dir: ``$FASTSAM_TEST_CACHE`` or ``~/.cache/fastsam-core-tests``. Concurrent test processes serialise the
install on ``<cache>/venv120.lock``; a ``.ready`` marker is written only after a successful install.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

from tests.support.cache import test_cache_root

VERSION = "8.0.120"


cache_dir = test_cache_root  # the shared test cache (tests/support/cache.py)


def ul120_env() -> dict[str, str]:
    """Environment for running 8.0.120 under torch >= 2.6, offline, with a private settings dir."""
    env = dict(os.environ)
    config_dir = cache_dir() / "ul120-config"
    config_dir.mkdir(exist_ok=True)
    env.update(
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",  # 8.0.x pickles full modules (spec §2.4)
        YOLO_OFFLINE="1",
        YOLO_CONFIG_DIR=str(config_dir),
        PYTHONNOUSERSITE="1",
    )
    env.pop("PYTHONPATH", None)  # keep the repo (and its tests package) out of the 8.0.120 process
    return env


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ul120_python() -> Path:
    """Path to a python executable whose ``import ultralytics`` is 8.0.120; builds the venv once.

    Raises:
        RuntimeError: venv creation or ``pip install`` failed (the message carries pip's output).
    """
    root = cache_dir()
    venv = root / "venv120"
    ready = venv / ".ready"
    if ready.exists():
        return _venv_python(venv)
    with open(root / "venv120.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing right now
        try:
            if ready.exists():
                return _venv_python(venv)
            shutil.rmtree(venv, ignore_errors=True)  # a half-built venv from a killed run
            steps = [
                [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                [
                    str(_venv_python(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    f"ultralytics=={VERSION}",
                ],
            ]
            for cmd in steps:
                proc = subprocess.run(
                    cmd, check=False, capture_output=True, text=True, env=ul120_env()
                )
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"building the ultralytics=={VERSION} test venv failed at {cmd}:\n"
                        f"{proc.stdout}\n{proc.stderr}"
                    )
            check = subprocess.run(
                [
                    str(_venv_python(venv)),
                    "-c",
                    "import ultralytics; print(ultralytics.__version__)",
                ],
                check=False,
                capture_output=True,
                text=True,
                env=ul120_env(),
            )
            if check.stdout.strip() != VERSION:
                raise RuntimeError(
                    f"venv {venv} imports ultralytics {check.stdout.strip()!r}, expected {VERSION}:\n"
                    f"{check.stderr}"
                )
            ready.write_text(VERSION)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return _venv_python(venv)


# Importing `ultralytics` runs its package __init__, which pulls in the whole 8.0.120 engine (~2x slower).
# Scripts only need `ultralytics.yolo.utils.*`, so the two parent packages are registered as bare namespace
# modules and their __init__ files are skipped.
_PRELUDE = """
import importlib.util, sys, types
import torch
_root = importlib.util.find_spec("ultralytics").submodule_search_locations[0]
for _name, _sub in (("ultralytics", ""), ("ultralytics.yolo", "/yolo")):
    _mod = types.ModuleType(_name)
    _mod.__path__ = [_root + _sub]
    _mod.__version__ = "{version}"
    sys.modules[_name] = _mod
import ultralytics.yolo.utils.ops as ops
assert "/venv120/" in ops.__file__, ops.__file__
torch.set_num_threads(1)
inputs = torch.load(sys.argv[1])
""".replace("{version}", VERSION)
_EPILOGUE = """
torch.save(result, sys.argv[2])
"""


def run_ul120(script: str, inputs: dict, timeout: float = 300.0, cache: bool = True) -> dict:
    """Run ``script`` under ultralytics 8.0.120 and return the dict it assigns to ``result``.

    Args:
        script: python source; sees ``inputs`` (the dict below, loaded with torch.load) and ``ops``
            (``ultralytics.yolo.utils.ops`` of 8.0.120) and must set ``result`` to a dict of tensors / values.
        inputs: tensors and plain values, saved with torch.save.
        timeout: seconds before the subprocess is killed.
        cache: reuse the result of an identical (script, inputs) run stored under the cache dir
            (8.0.120 is a fixed oracle: same inputs, same outputs).

    Raises:
        RuntimeError: the script failed (its stderr is included).
    """
    python = ul120_python()
    with tempfile.TemporaryDirectory() as tmp:
        src, inp, out = Path(tmp, "script.py"), Path(tmp, "in.pt"), Path(tmp, "out.pt")
        src.write_text(_PRELUDE + textwrap.dedent(script) + _EPILOGUE)
        torch.save(inputs, inp)
        digest = hashlib.sha256(src.read_bytes() + _tensor_digest(inputs)).hexdigest()[:24]
        cached = cache_dir() / "ul120-results" / f"{digest}.pt"
        if cache and cached.exists():
            return torch.load(cached, weights_only=False)
        proc = subprocess.run(
            [str(python), str(src), str(inp), str(out)],
            check=False,
            capture_output=True,
            text=True,
            env=ul120_env(),
            timeout=timeout,
            cwd=tmp,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ultralytics {VERSION} subprocess failed:\n{proc.stderr[-4000:]}")
        if cache:
            cached.parent.mkdir(exist_ok=True)
            tmp_cached = cached.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(out, tmp_cached)
            os.replace(tmp_cached, cached)  # atomic: concurrent runs never read a partial file
        return torch.load(out, weights_only=False)


def _tensor_digest(value: object) -> bytes:
    """Content hash of nested dicts/lists/tuples of tensors and plain values (independent of pickling)."""
    h = hashlib.sha256()

    def visit(v: object) -> None:
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            h.update(b"D")
            for k in sorted(v, key=repr):
                h.update(repr(k).encode())
                visit(v[k])
        elif isinstance(v, (list, tuple)):
            h.update(f"L{len(v)}".encode())
            for item in v:
                visit(item)
        else:
            h.update(repr(v).encode())

    visit(value)
    return h.digest()
