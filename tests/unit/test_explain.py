"""`fastsam explain` (issue 17): prototypes, coefficients, per-level scores and anchors as PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from fastsam_core.cli import main
from fastsam_core.viz.explain import explain, write_explanation
from fastsam_core.weights import load_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = FIXTURES / "ul120_tiny_seg_r26.pt"
PHOTO = FIXTURES / "images" / "astronaut.jpg"  # 512 x 512: no letterbox padding at imgsz 256


@pytest.fixture(scope="module")
def expl():
    torch.manual_seed(0)
    return explain(str(PHOTO), load_model(MODEL), top_k=3, imgsz=256)


def test_the_top_masks_in_score_order(expl):
    assert expl.num_masks >= 3 and [m.rank for m in expl.masks] == [1, 2, 3]
    scores = [m.score for m in expl.masks]
    assert scores == sorted(scores, reverse=True)
    assert expl.protos.shape == (32, 64, 64)  # (K, 256 / 4, 256 / 4)
    assert {s: tuple(g.shape) for s, g in expl.level_scores.items()} == {
        8: (32, 32),
        16: (16, 16),
        32: (8, 8),
    }


def test_each_anchor_carries_its_mask_score(expl):
    offsets = {8: 0, 16: 32 * 32, 32: 32 * 32 + 16 * 16}
    for m in expl.masks:
        grid = expl.level_scores[m.stride]
        local = m.anchor_index - offsets[m.stride]
        assert 0 <= local < grid.numel()
        assert float(grid.flatten()[local]) == pytest.approx(m.score, abs=1e-6)
        assert 0 <= float(m.anchor_xy[0]) <= 512 and 0 <= float(m.anchor_xy[1]) <= 512


def test_rebuilt_mask_equals_the_final_mask_where_it_is_decisive(expl):
    for m in expl.masks:
        assert m.rebuilt.shape == m.final.shape == (512, 512)
        assert 0.0 <= float(m.rebuilt.min()) and float(m.rebuilt.max()) <= 1.0
        x1, y1, x2, y2 = m.box.tolist()
        ys, xs = torch.nonzero(m.rebuilt).unbind(1)
        if len(xs):  # zero outside the box (crop rule x1 <= x < x2)
            assert xs.min() >= x1 - 1e-4 and xs.max() < x2 and ys.min() >= y1 - 1e-4
            assert ys.max() < y2
        # no letterbox padding: sigmoid(resized coeffs . protos) > 0.5 is exactly the final mask
        assert torch.equal(m.rebuilt > 0.5, m.final), m.rank
        assert m.agreement() == 1.0


def test_files_and_sizes(expl, tmp_path):
    written = write_explanation(expl, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["prototypes.png", "scores_by_level.png", "anchors.png", "explain.json"]
        + [f"mask_0{i}.png" for i in (1, 2, 3)]
    )
    sizes = {p.name: Image.open(p).size for p in written if p.suffix == ".png"}
    assert sizes["anchors.png"] == (512, 512)  # the photo
    assert sizes["prototypes.png"] == (8 * (128 + 4), 4 * (128 + 14 + 4))  # 8 x 4 tiles, 2x
    assert sizes["scores_by_level.png"] == (3 * 512 + 2 * 6, 512 + 14)
    assert sizes["mask_01.png"][0] == 2 * 512 + 6  # rebuilt | final, side by side
    summary = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert summary["num_masks"] == expl.num_masks and len(summary["masks"]) == 3
    first = summary["masks"][0]
    assert len(first["coefficients"]) == 32 and first["stride"] in (8, 16, 32)
    assert first["coefficients"] == [round(float(v), 4) for v in expl.masks[0].coeffs]


def test_cli(tmp_path, capsys):
    out = tmp_path / "explain"
    args = ["explain", str(PHOTO), "--model", str(MODEL), "--out", str(out), "--top", "1"]
    assert main([*args, "--imgsz", "256"]) == 0
    printed = capsys.readouterr().out
    assert "explained the top 1 (input 256x256, 32 prototypes of 64x64)" in printed
    assert (out / "mask_01.png").is_file() and not (out / "mask_02.png").exists()
    assert main([*args[:-1], "0"]) == 1
    assert "top_k must be >= 1, got 0" in capsys.readouterr().err


def test_no_detection_still_draws_prototypes_and_levels(tmp_path):
    model = load_model(MODEL)
    expl = explain(str(PHOTO), model, top_k=2, imgsz=256, conf=1.0)  # score > 1: nothing
    assert expl.num_masks == 0 and expl.masks == []
    names = sorted(p.name for p in write_explanation(expl, tmp_path))
    assert names == ["explain.json", "prototypes.png", "scores_by_level.png"]
