"""Layering (issue 11): train/ and eval/ share data/ and model/, never importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fastsam_core"


def _imported_packages(package: str) -> set[str]:
    """Second-level fastsam_core names imported anywhere (also lazily) by files of `package`."""
    found = set()
    for path in (PACKAGE / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found |= {n.split(".")[1] for n in names if n.startswith("fastsam_core.")}
    return found - {package}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("train", {"eval", "predictor", "cli"}),
        ("eval", {"train", "cli"}),
        ("data", {"train", "eval", "predictor", "cli"}),
        ("io", {"train", "eval", "data", "predictor", "cli"}),
        ("model", {"train", "eval", "data", "io", "predictor", "cli"}),
    ],
)
def test_no_upward_or_sideways_imports(package: str, forbidden: set[str]) -> None:
    assert _imported_packages(package) & forbidden == set()


def test_the_graph_is_read() -> None:  # guards the test above against reading nothing
    assert {"data", "model"} <= _imported_packages("train")
    assert {"data", "predictor"} <= _imported_packages("eval")
    assert "io" in _imported_packages("data")
