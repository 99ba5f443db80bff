"""Start-up (issue 12 part 2): `fastsam --help`, `fastsam SUB --help` and argument errors work
where `import torch` fails; `import fastsam_core` leaves torch, torchvision, open_clip and triton
unimported, and every public name still resolves on first use (PEP 562)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = sorted(
    m.name for m in pkgutil.iter_modules([str(REPO / "fastsam_core" / "cli")]) if m.name[0] != "_"
)
HEAVY = ("torch", "torchvision", "open_clip", "triton")

# `fastsam_core.cli.main(argv)` in a fresh interpreter where importing torch (or a package built on
# it) raises ImportError; exits with main's return code or argparse's SystemExit code.
_WITHOUT_TORCH = f"""
import importlib.abc, sys

class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, _BlockTorch())
from fastsam_core.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, *args]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


def _fastsam_without_torch(*argv: str) -> subprocess.CompletedProcess[str]:
    return _python("-c", _WITHOUT_TORCH, *argv)


def test_subcommands_are_discovered() -> None:
    assert {"segment", "convert", "info"} <= set(SUBCOMMANDS), SUBCOMMANDS


def test_help_without_torch() -> None:
    done = _fastsam_without_torch("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fastsam"), done.stdout
    for name in SUBCOMMANDS:
        assert name in done.stdout, (name, done.stdout)


def test_no_command_prints_help_without_torch() -> None:
    done = _fastsam_without_torch()
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("usage: fastsam"), done.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_without_torch(name: str) -> None:
    done = _fastsam_without_torch(name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: fastsam {name}"), done.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_argument_error_without_torch(name: str) -> None:
    """Bad arguments are argparse's error (exit 2, usage on stderr) before anything heavy loads."""
    done = _fastsam_without_torch(name, "--no-such-option")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"usage: fastsam {name}" in done.stderr and f"fastsam {name}: error:" in done.stderr
    assert "Traceback" not in done.stderr and "blocked" not in done.stderr, done.stderr


def test_unknown_command_without_torch() -> None:
    done = _fastsam_without_torch("segmnet")
    assert done.returncode == 2
    assert "invalid choice: 'segmnet'" in done.stderr, done.stderr


def test_import_fastsam_core_is_light() -> None:
    code = "import json, sys, fastsam_core; print(json.dumps(sorted(sys.modules)))"
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_public_names_resolve() -> None:
    """Every name of `__all__` resolves (same object as its defining module's), `import *` works,
    unknown names raise AttributeError, and the product never imports torchvision."""
    code = """
import importlib, json, sys
import fastsam_core

names = sorted(fastsam_core.__all__)
assert names == sorted(fastsam_core._EXPORTS), "__all__ and _EXPORTS differ"
for name in names:
    module = importlib.import_module(fastsam_core._EXPORTS[name])
    assert getattr(fastsam_core, name) is getattr(module, name), name
    assert name in dir(fastsam_core), name
star = {}
exec("from fastsam_core import *", star)
assert set(names) <= set(star), set(names) - set(star)
try:
    fastsam_core.NoSuchName
except AttributeError as err:
    assert "NoSuchName" in str(err), err
else:
    raise AssertionError("fastsam_core.NoSuchName did not raise AttributeError")
print(json.dumps({"version": fastsam_core.__version__, "modules": sorted(sys.modules)}))
"""
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["version"].count(".") == 2, out["version"]
    loaded = {name.split(".")[0] for name in out["modules"]}
    assert "torchvision" not in loaded  # the product's NMS is its own (tests compare torchvision)
