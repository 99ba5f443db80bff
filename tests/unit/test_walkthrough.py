"""docs/WALKTHROUGH.md and docs/ARCHITECTURE.md are what the generator writes today (issue 17)."""

from __future__ import annotations

from pathlib import Path

from fastsam_core import walkthrough

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_docs_equal_a_fresh_run(tmp_path):
    for path in walkthrough.generate(tmp_path):
        committed = DOCS / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} is out of date; regenerate it: {walkthrough.COMMAND}"
        )


def test_every_unit_is_placed_in_a_layer():
    # a new package must be given a row in walkthrough.LAYERS (and so in ARCHITECTURE.md)
    assert set(walkthrough.import_graph()) <= set(walkthrough.LAYERS)
    assert walkthrough._violations() == ""


def test_where_names_file_and_function():
    from fastsam_core.ops.nms import non_max_suppression

    assert walkthrough.where(non_max_suppression) == (
        "`fastsam_core/ops/nms.py::non_max_suppression`"
    )
