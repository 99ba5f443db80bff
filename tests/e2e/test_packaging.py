"""Packaging: the built wheel and the editable install expose the same import names, and the
product never imports ultralytics (AGPL, test-only oracle)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.support.wheels import PACKAGES, REPO_ROOT, build_wheel
from tests.support.wheels import clean_env as _clean_env


def _source_packages() -> list[str]:
    """Every package (folder with __init__.py) of the product, by its import name."""
    names = []
    for name, folder in PACKAGES.items():
        root = REPO_ROOT / folder
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            names.append(".".join([name, *rel.parts]))
    return names


def _source_modules(root: Path) -> set[str]:
    """Installed-relative paths of every .py file of the product (what the wheel must contain)."""
    files = set()
    for name, folder in PACKAGES.items():
        for py in (root / folder).rglob("*.py"):
            rel = py.relative_to(root / folder)
            if "__pycache__" in rel.parts or not (py.parent / "__init__.py").exists():
                continue
            files.add(f"{name}/{rel.as_posix()}")
    return files


# Runs in `python -I -S`: no site (so the editable install's .pth finder is not loaded), no cwd,
# no PYTHONPATH. sys.path = [wheel target] + stdlib + site-packages appended as plain folders
# (torch etc.), and `import ultralytics` is blocked.
_WHEEL_IMPORT = """
import importlib, importlib.abc, json, sys
target, site_packages, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ultralytics":
            raise ImportError("ultralytics is blocked")
        return None

sys.meta_path.insert(0, _Block())
sys.path.insert(0, target)
sys.path.append(site_packages)
files = {name: importlib.import_module(name).__file__ for name in names}
print(json.dumps(files))
"""

_EDITABLE_IMPORT = """
import importlib, json, sys
names = json.loads(sys.argv[1])
print(json.dumps({name: importlib.import_module(name).__file__ for name in names}))
"""


@pytest.fixture(scope="module")
def wheel_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources (the shared tree stays clean) and install it
    with `pip install --no-deps --target`."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    target = tmp / "target"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
         str(wheel)],
        check=False, capture_output=True, text=True, env=_clean_env(), cwd=tmp,
    )  # fmt: skip
    assert install.returncode == 0, f"pip install --target failed:\n{install.stderr}"
    (target / "wheel_name").write_text(wheel.name)
    shutil.copy2(wheel, target / "built.whl")
    return target


def test_wheel_contains_every_module(wheel_target: Path) -> None:
    with zipfile.ZipFile(wheel_target / "built.whl") as whl:
        names = set(whl.namelist())
    # Compare with the copy the wheel was built from (other work may add files meanwhile).
    missing = sorted(_source_modules(wheel_target.parent / "src") - names)
    assert not missing, f"wheel lacks {missing}"
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES), (
        f"wheel top-level entries {sorted(top)}; expected {sorted(PACKAGES)}"
    )
    # Never ship the generic name PyPI's unrelated `kernels` package owns, nor tests.
    assert not any(n.startswith(("kernels/", "tests/", "weights_convert/")) for n in names)


def test_wheel_imports_every_package_from_the_target(wheel_target: Path) -> None:
    names = _source_packages()
    assert {"fastsam_core.model", "fastsam_core.ops"} <= set(names)
    site_packages = sysconfig.get_paths()["purelib"]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", textwrap.dedent(_WHEEL_IMPORT), str(wheel_target),
         site_packages, json.dumps(names)],
        check=False, capture_output=True, text=True, env=_clean_env(), cwd=wheel_target.parent,
    )  # fmt: skip
    assert proc.returncode == 0, f"importing from the wheel failed:\n{proc.stderr[-4000:]}"
    files = json.loads(proc.stdout.strip().splitlines()[-1])
    outside = {n: f for n, f in files.items() if not Path(f).resolve().is_relative_to(wheel_target)}
    assert not outside, f"imported from outside the wheel target {wheel_target}: {outside}"


def test_editable_install_imports_the_same_names() -> None:
    names = _source_packages()
    proc = subprocess.run(
        [sys.executable, "-c", _EDITABLE_IMPORT, json.dumps(names)],
        check=False, capture_output=True, text=True, env=_clean_env(), cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"editable import failed (is the repo installed with `pip install -e .`?):\n"
        f"{proc.stderr[-4000:]}"
    )
    files = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, file in files.items():
        folder = PACKAGES[name.split(".")[0]]
        assert Path(file).resolve().is_relative_to(REPO_ROOT / folder), (name, file)


def _ultralytics_imports(path: Path) -> list[str]:
    """`import ultralytics...`, `from ultralytics... import`, and import_module/__import__ calls
    with a literal 'ultralytics...' argument."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "ultralytics"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "ultralytics":
                found.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] == "ultralytics":
                    found.append(f"{fname}({arg.value!r})")
    return [f"{path.relative_to(REPO_ROOT)}:{name}" for name in found]


def test_product_never_imports_ultralytics() -> None:
    files = [p for folder in PACKAGES.values() for p in (REPO_ROOT / folder).rglob("*.py")]
    assert len(files) > 10
    offenders = [hit for p in files for hit in _ultralytics_imports(p)]
    assert not offenders, f"the product must not import ultralytics (AGPL): {offenders}"


def test_the_scan_catches_imports(tmp_path: Path) -> None:
    bad = REPO_ROOT / "tests" / "e2e" / "_scan_probe_tmp.py"
    try:
        bad.write_text(
            "import ultralytics\nfrom ultralytics.nn import tasks\nimport importlib\n"
            "importlib.import_module('ultralytics.utils')\nx = 'ultralytics.nn.tasks'  # fine\n"
        )
        hits = _ultralytics_imports(bad)
    finally:
        bad.unlink(missing_ok=True)
    assert [h.split(":")[1] for h in hits] == [
        "ultralytics", "ultralytics.nn", "import_module('ultralytics.utils')"
    ]  # fmt: skip
