"""`fastsam segment` with --box / --point / --text prompts (subprocess), checked against the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.photos import photo

REPO = Path(__file__).resolve().parents[2]
IMGSZ = "640"
PHOTO = photo("coffee.jpg")  # bundled, 600x400 (keeps runs short)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrated random-weight FastSAM-s (oracle-made once, cached), converted to safetensors."""
    try:
        from tests.support.oracle_models import calibrated_oracle_checkpoint

        checkpoint = calibrated_oracle_checkpoint("s", 16)
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"needs the ultralytics oracle to build the test checkpoint once: {err}")
    from fastsam_weights_convert import convert_file

    out = tmp_path_factory.mktemp("ckpt") / "fastsam-s-random.safetensors"
    convert_file(checkpoint, out)
    return out


def _segment(weights: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "fastsam_core",
        "segment",
        str(PHOTO),
        "--model",
        str(weights),
        "--imgsz",
        IMGSZ,
        "--device",
        "cpu",
        "--format",
        "json",
        "--out",
        str(out),
        *args,
    ]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def everything(weights: Path) -> object:
    from fastsam_core import Predictor

    predictor = Predictor(weights, imgsz=int(IMGSZ))
    return predictor, predictor(PHOTO)[0]


def test_cli_boxes_and_points_match_api(weights: Path, everything: object, tmp_path: Path) -> None:
    predictor, result = everything
    assert len(result) >= 3
    b = result.boxes
    box_args = [f"{x1},{y1},{x2},{y2}" for x1, y1, x2, y2 in b[[2, 0]].tolist()]
    x, y = ((b[1, :2] + b[1, 2:]) / 2).tolist()
    proc = _segment(
        weights,
        tmp_path,
        "--box",
        box_args[0],
        "--box",
        box_args[1],
        "--point",
        f"{x:.1f},{y:.1f}",
        "--point",
        "3,3,0",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "coffee.json").read_text())
    expected = predictor(
        PHOTO, boxes=b[[2, 0]].tolist(), points=[[round(x, 1), round(y, 1)], [3, 3]], labels=[1, 0]
    )[0]
    got_boxes = [a["bbox_xyxy"] for a in doc["annotations"]]
    assert len(got_boxes) == len(expected) >= 2
    for got, want in zip(got_boxes, expected.boxes.tolist()):
        assert got == pytest.approx(want, abs=1e-3)


def test_cli_xywh_and_union(weights: Path, everything: object, tmp_path: Path) -> None:
    _, result = everything
    x1, y1, x2, y2 = result.boxes[0].tolist()
    proc = _segment(
        weights,
        tmp_path,
        "--box",
        f"{x1},{y1},{x2 - x1},{y2 - y1}",
        "--box-format",
        "xywh",
        "--point",
        f"{(x1 + x2) / 2:.0f},{(y1 + y2) / 2:.0f}",
        "--point-mode",
        "union",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "coffee.json").read_text())
    assert len(doc["annotations"]) in (1, 2)  # the box's mask (+ the union mask if any pixel set)
    assert doc["annotations"][0]["bbox_xyxy"] == pytest.approx(result.boxes[0].tolist(), abs=1e-3)


@pytest.mark.parametrize("mode", ["empty", "reference"])
def test_cli_box_overlapping_no_mask_keeps_its_row(
    weights: Path, everything: object, tmp_path: Path, mode: str
) -> None:
    """A zero-area box overlaps no mask: still one row per box, in order, as the API gives."""
    predictor, result = everything
    real = result.boxes[0].tolist()
    boxes = [[5.0, 5.0, 5.0, 5.0], real, [5.0, 5.0, 5.0, 5.0]]
    flags = [arg for box in boxes for arg in ("--box", ",".join(str(v) for v in box))]
    proc = _segment(weights, tmp_path, *flags, "--box-no-match", mode)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "coffee.json").read_text())["annotations"]
    expected = predictor(PHOTO, boxes=boxes, box_no_match=mode)[0]
    assert len(records) == len(expected) == 3
    assert [r["area"] for r in records] == expected.masks_original().areas().tolist()
    for record, want in zip(records, expected.boxes.tolist()):
        assert record["bbox_xyxy"] == pytest.approx(want, abs=1e-3)
    if mode == "empty":
        assert records[0]["area"] == 0 and records[0]["bbox_xyxy"] == [0, 0, 0, 0]
        assert records[0]["score"] == 0 and records[2] == dict(records[0], id=2, prompt_id=2)
    else:  # the references' argmax pick: a real mask
        assert expected.source_ids[0] >= 0 and records[0]["score"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--box", "1,2,3"], "--box takes four numbers"),
        (["--box", "a,b,c,d"], "--box takes four numbers"),
        (["--point", "1"], "--point takes x,y or x,y,label"),
        (["--text-rule", "topk", "--text", "a dog"], "needs top_k >= 1"),
    ],
)
def test_cli_bad_prompt_flags(weights: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = _segment(weights, tmp_path, *args)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_cli_prompt_errors_per_image(weights: Path, tmp_path: Path) -> None:
    proc = _segment(weights, tmp_path / "a", "--point=-5,10")  # argparse: "=" before a leading "-"
    assert proc.returncode == 0, proc.stderr  # clipped onto the image, not refused
    proc = _segment(weights, tmp_path / "b", "--box=-50,-50,-10,-10")
    assert proc.returncode == 1 and "entirely outside" in proc.stderr
    proc = _segment(weights, tmp_path, "--point", "5,10,2")
    assert proc.returncode == 1 and "labels must be 0" in proc.stderr
    proc = _segment(weights, tmp_path, "--text", "a dog", "--clip-weights", str(tmp_path / "no.pt"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_cli_missing_clip_offline_fails_once_fast(
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Offline with no CLIP weights cached: one error naming --clip-weights, before any image is
    segmented (not one download attempt per image)."""
    import time

    pytest.importorskip("open_clip", reason="text prompts need the clip extra")
    from fastsam_core.cli import main
    from fastsam_core.prompts import clip_scorer, get_clip_scorer

    monkeypatch.setattr(clip_scorer, "_reachable", lambda host, timeout=3.0: False)
    monkeypatch.setattr(clip_scorer, "_cached_locally", lambda *args: False)  # nothing on disk
    get_clip_scorer.cache_clear()
    start = time.perf_counter()
    code = main([
        "segment", str(PHOTO), str(PHOTO), "--model", str(weights), "--imgsz", IMGSZ,
        "--device", "cpu", "--text", "a dog", "--out", str(tmp_path / "o"),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "--clip-weights" in err and err.count("error") == 1, err
    assert time.perf_counter() - start < 60 and not (tmp_path / "o").exists()
    get_clip_scorer.cache_clear()
