"""`fastsam segment` as a user runs it (subprocess) on the real photos, outputs re-read and checked.

The checkpoint is an oracle-made random-weight FastSAM-s (BatchNorm recalibrated on the photos,
class branch calibrated for a realistic number of boxes at conf 0.4) converted by our converter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam_core.results import Results
from tests.support.photos import PHOTOS_DIR, photo, photo_paths

REPO = Path(__file__).resolve().parents[2]
PHOTOS = ["coffee.jpg", "rocket.jpg"]  # bundled; the slow test below runs every bundled photo


@pytest.fixture(scope="session")
def converted_s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrated random-weight FastSAM-s, converted .pt -> .safetensors (built once, cached)."""
    try:
        from tests.support.oracle_models import calibrated_oracle_checkpoint
    except ImportError as err:  # pragma: no cover
        pytest.skip(f"test support unavailable: {err}")
    try:
        checkpoint = calibrated_oracle_checkpoint("s", 16)
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"needs the ultralytics oracle to build the test checkpoint once: {err}")
    from fastsam_weights_convert import convert_file

    out = tmp_path_factory.mktemp("ckpt") / "fastsam-s-random.safetensors"
    convert_file(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(photo(name), folder / name)
    (folder / "m_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # sorts in the middle
    return folder


def _segment(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fastsam_core", "segment", *args]
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def _check_outputs(out: Path, stem: str, photo: Path, conf: float) -> int:
    """Re-read the PNG/JSON/RLE/NPZ of one image; returns the number of masks."""
    from pycocotools import mask as mask_utils

    with Image.open(photo) as img:
        original = np.asarray(img.convert("RGB"))
    h0, w0 = original.shape[:2]
    overlay = np.asarray(Image.open(out / f"{stem}.png").convert("RGB"))
    assert overlay.shape == (h0, w0, 3)

    doc = json.loads((out / f"{stem}.json").read_text())
    assert doc["image"]["height"] == h0 and doc["image"]["width"] == w0
    records = doc["annotations"]
    rle_doc = json.loads((out / f"{stem}.rle.json").read_text())
    assert rle_doc["rle"] == [r["segmentation"] for r in records]
    loaded = Results.load_npz(out / f"{stem}.npz")
    assert len(loaded) == len(records)

    scores = [r["score"] for r in records]
    assert all(s > conf for s in scores) and scores == sorted(scores, reverse=True)
    union = np.zeros((h0, w0), bool)
    for i, record in enumerate(records):
        x, y, w, h = record["bbox"]
        assert -1e-3 <= x and -1e-3 <= y and x + w <= w0 + 1e-3 and y + h <= h0 + 1e-3
        rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
        mask = mask_utils.decode(rle).astype(bool)  # (H0, W0)
        assert mask.shape == (h0, w0)
        assert int(mask.sum()) == record["area"] == int(mask_utils.area(rle))
        np.testing.assert_allclose(loaded.boxes[i].numpy(), record["bbox_xyxy"], atol=1e-3)
        assert np.array_equal(loaded.masks_original().dense(i).numpy(), mask)
        if record["area"]:  # retina official masks are cropped by their box (+1 px rounding)
            ys, xs = np.nonzero(mask)
            assert xs.min() >= x - 1 and xs.max() <= x + w + 1
            assert ys.min() >= y - 1 and ys.max() <= y + h + 1
        union |= mask
    if union.any():  # the overlay changed the masked pixels, not the rest
        changed = np.any(overlay != original, axis=2)
        assert changed[union].mean() > 0.5
    return len(records)


def test_segment_directory_with_a_bad_file(
    converted_s: Path, photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = _segment(
        str(photo_dir),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "png,json,rle,npz",
    )
    assert proc.returncode == 1, proc.stderr  # one file failed, the others were written
    assert "m_broken.jpg" in proc.stderr and "cannot read image" in proc.stderr
    assert "segmented 2 image(s)" in proc.stdout and "1 failed" in proc.stdout
    counts = {
        stem: _check_outputs(out, stem, photo_dir / f"{stem}.jpg", conf=0.4)
        for stem in (Path(p).stem for p in PHOTOS)
    }
    assert sum(counts.values()) > 0, counts
    assert not list(out.glob("m_broken*")) and not list(out.glob(".*"))  # no partial/temp files

    # Never overwrite without --force; nothing is touched.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _segment(
        str(photo_dir / "coffee.jpg"),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--out",
        str(out),
        "--format",
        "json",
    )
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    forced = _segment(
        str(photo_dir / "coffee.jpg"),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "json",
        "--force",
        "--no-retina",
        "--conf",
        "0.5",
    )
    assert forced.returncode == 0, forced.stderr
    assert (out / "coffee.json").stat().st_mtime_ns != before["coffee.json"]
    doc = json.loads((out / "coffee.json").read_text())
    assert all(r["score"] > 0.5 for r in doc["annotations"])


def test_segment_usage_errors(
    converted_s: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One clear line and exit code 1 (in-process: the same `main` the entry point runs)."""
    from fastsam_core.cli import main

    cases = [
        ([str(tmp_path / "nothing.jpg"), "--model", str(converted_s)], "nothing.jpg"),
        (
            [str(photo("chelsea.jpg")), "--model", str(tmp_path / "missing.safetensors")],
            "weights file not found",
        ),
        (
            [str(photo("chelsea.jpg")), "--model", str(converted_s), "--format", "png,gif"],
            "--format",
        ),
        (
            [str(photo("chelsea.jpg")), "--model", str(converted_s), "--conf", "-1"],
            "conf must be in [0, 1]",
        ),
        ([str(photo("chelsea.jpg")), "--model", str(converted_s), "--device", "cuda:7"], "cuda:7"),
    ]
    for args, message in cases:
        code = main(["segment", *args, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_cleanly(converted_s: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"  # 20 files: the run is still going when the interrupt comes
    photos.mkdir()
    for copy in range(5):
        for path in photo_paths():
            shutil.copy(path, photos / f"{path.stem}_{copy}.jpg")
    out = tmp_path / "out"
    # The child re-installs Python's SIGINT handler: under `nohup`/`&` the test runner inherits
    # SIGINT ignored, Python then installs no KeyboardInterrupt handler and the signal is lost.
    child = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from fastsam_core.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    cmd = [
        sys.executable,
        "-c",
        child,
        "segment",
        str(photos),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "json,npz",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the run finished before the interrupt arrived"
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files
    for path in out.glob("*.json"):
        json.loads(path.read_text())  # every written file is complete


@pytest.mark.slow
def test_segment_all_bundled_photos(converted_s: Path, tmp_path: Path) -> None:
    photos = photo_paths()
    out = tmp_path / "out"
    proc = _segment(
        str(PHOTOS_DIR),
        "--model",
        str(converted_s),
        "--imgsz",
        "640",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--format",
        "json",
        "--no-retina",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{p.stem}.json" for p in photos)


# ---------------------------------------------------------------------------- hostile inputs
def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `fastsam segment` in-process; returns (exit code, stderr)."""
    from fastsam_core.cli import main

    code = main(["segment", *args])
    return code, capsys.readouterr().err


def test_unique_stems_never_collide() -> None:
    from fastsam_core.cli._sources import unique_stems

    items = ["x/a.jpg", "y/a.png", "a_2.jpg", "A.jpg", "b.png", "z/b.png"]
    stems = unique_stems(items)
    assert stems == ["a", "a_2", "a_2_2", "A_3", "b", "b_2"]
    assert len({s.casefold() for s in stems}) == len(items)  # also on case-insensitive disks


def test_outputs_never_replace_an_input_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Segmenting x.png into its own folder would write the overlay x.png over it: refused,
    even with --force, before any model loads (the --model path here does not exist)."""
    photo = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(photo)
    before = photo.read_bytes()
    model = str(tmp_path / "never-loaded.safetensors")
    for extra in ([], ["--force"]):
        code, err = _main([str(photo), "--model", model, "--out", str(tmp_path), *extra], capsys)
        assert code == 1 and "would replace the input image" in err and "x.png" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert photo.read_bytes() == before
    # A json-only run into the same folder writes x.json, which is not an input: allowed to
    # proceed (it then fails on the missing model, one line).
    code, err = _main(
        [str(photo), "--model", model, "--out", str(tmp_path), "--format", "json"], capsys
    )
    assert code == 1 and "would replace" not in err and "never-loaded" in err


def test_existing_outputs_and_out_file_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "in" / "y.jpg"
    photo.parent.mkdir()
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(photo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "y.json").write_text("user data")
    model = str(tmp_path / "never-loaded.safetensors")
    code, err = _main([str(photo), "--model", model, "--out", str(out), "--format", "json"], capsys)
    assert code == 1 and "already exist" in err and "--force" in err
    assert (out / "y.json").read_text() == "user data"
    (out / "y.png").symlink_to(tmp_path / "dangling")  # a dangling link is still "existing"
    code, err = _main([str(photo), "--model", model, "--out", str(out), "--format", "png"], capsys)
    assert code == 1 and "already exist" in err
    code, err = _main([str(photo), "--model", model, "--out", str(out / "y.json")], capsys)
    assert code == 1 and "is a file; pass a directory" in err
    assert (out / "y.json").read_text() == "user data"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--box", "1,2,nan,4"], "--box takes finite numbers"),
        (["--box", "1,2,inf,4"], "--box takes finite numbers"),
        (["--box", "1,2,3"], "--box takes four numbers x1,y1,x2,y2"),
        (["--box", "1;2;3;4"], "--box takes four numbers"),
        (["--box", ""], "--box takes four numbers"),
        (["--box", "1,2,3", "--box-format", "xywh"], "four numbers x,y,width,height"),
        (["--point", "1,2,5"], "--point labels must be 0 (background) or 1 (foreground)"),
        (["--point", "1,nan"], "--point takes finite numbers"),
        (["--point", "1,2,3,4"], "--point takes x,y or x,y,label"),
        (["--text", "   "], "text prompts must not be empty"),
        (["--text-rule", "threshold", "--text", "a"], "needs a finite threshold"),
    ],
)
def test_bad_prompt_flags_fail_before_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    photo = tmp_path / "p.jpg"
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(photo)
    model = str(tmp_path / "never-loaded.safetensors")  # never reached: flags fail first
    code, err = _main([str(photo), "--model", model, "--out", str(tmp_path / "o"), *flags], capsys)
    assert code == 1 and message in err and "Traceback" not in err, err
    assert "never-loaded" not in err and not (tmp_path / "o").exists()


def test_bad_choice_flags_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastsam_core.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["segment", "x.jpg", "--box", "1,2,3,4", "--box-no-match", "argmax"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--box-no-match" in err and "'empty', 'reference'" in err


def test_sources_without_images_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    model = str(tmp_path / "never-loaded.safetensors")
    out = str(tmp_path / "o")
    code, err = _main([str(empty), "--model", model, "--out", out], capsys)
    assert code == 1 and "skipped" in err and "no image files" in err
    assert "no images found" in err and "Traceback" not in err
    code, err = _main([str(tmp_path / "*.jpg"), "--model", model, "--out", out], capsys)
    assert code == 1 and "no image files match" in err


def test_missing_corrupt_and_good_images_in_one_run(
    converted_s: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad source is one line on stderr; the good image is still written; exit code 1."""
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), np.uint8)).save(good)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tiny)
    sources = [str(tmp_path / n) for n in ("missing.jpg", "zero.jpg", "text.png", "cut.jpg")]
    out = tmp_path / "out"
    code, err = _main(
        [*sources, str(good), str(tiny), "--model", str(converted_s), "--imgsz", "128"]
        + ["--device", "cpu", "--out", str(out), "--format", "json", "--box", "0,0,1,1"],
        capsys,
    )
    assert code == 1 and "Traceback" not in err, err
    for name in ("missing.jpg", "zero.jpg", "text.png", "cut.jpg"):
        assert name in err
    assert "empty (0 bytes)" in err and "cannot read image" in err
    doc = json.loads((out / "good.json").read_text())
    assert len(doc["annotations"]) == 1  # one row for the one box (empty if it hits no mask)
    assert len(json.loads((out / "tiny.json").read_text())["annotations"]) == 1  # 1x1 image
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "tiny.json"]


def test_inputs_checked_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad image path, an empty glob or a bad --out fail at once: the model file (garbage here,
    so loading it would fail with its own message) is never opened."""
    import time

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a model")
    good = tmp_path / "p.jpg"
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(good)
    (tmp_path / "file").write_text("x")
    cases = [
        ([str(tmp_path / "missing.jpg")], "missing.jpg"),
        ([str(tmp_path / "*.png")], "no image files match"),
        ([str(good), "--out", str(tmp_path / "file")], "is a file; pass a directory"),
    ]
    for args, message in cases:
        start = time.perf_counter()
        code, err = _main([*args, "--model", str(garbage)], capsys)
        assert code == 1 and message in err and "garbage" not in err, err
        assert time.perf_counter() - start < 10


def test_segment_defaults_are_auto_device_and_fast_path() -> None:
    from fastsam_core.cli import build_parser

    args = build_parser().parse_args(["segment", "x.jpg"])
    assert args.device == "auto" and args.fast == "default"
    assert build_parser().parse_args(["segment", "x.jpg", "--fast"]).fast == "default"
    assert build_parser().parse_args(["segment", "x.jpg", "--fast", "off"]).fast == "off"


# ---------------------------------------------------------------------- issue 13: resume, datasets
def _segment_args(converted_s: Path, out: Path, *extra: str) -> list[str]:
    model = ["--model", str(converted_s), "--imgsz", "320", "--device", "cpu", "--fast", "off"]
    return [*model, "--out", str(out), *extra]


def _tree(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_resume_after_sigkill_redoes_at_most_the_in_flight_image(
    converted_s: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for copy in range(2):
        for path in photo_paths():
            shutil.copy(path, photos / f"{path.stem}_{copy}.jpg")
    stems = sorted(p.stem for p in photos.iterdir())
    fmt = ["--format", "png,json,npz,jsonl,coco"]
    reference = tmp_path / "reference"
    full = _segment(str(photos), *_segment_args(converted_s, reference, *fmt))
    assert full.returncode == 0, full.stderr

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastsam_core", "segment", str(photos)]
    proc = subprocess.Popen(
        [*cmd, *_segment_args(converted_s, out, *fmt)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 300

    def finished_npz() -> list[Path]:  # not the hidden temp files an image is staged in
        return [p for p in out.glob("*.npz") if not p.name.startswith(".")]

    while not finished_npz() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill"
    complete = {
        s for s in stems if all((out / f"{s}{x}").exists() for x in (".png", ".json", ".npz"))
    }
    journaled = {json.loads(line)["stem"] for line in (out / "results.jsonl").open()}
    assert complete and len(complete) < len(stems) and journaled <= complete
    assert not (out / "coco_results.json").exists()  # written only when a run ends

    resumed = _segment(str(photos), *_segment_args(converted_s, out, *fmt, "--skip-existing"))
    assert resumed.returncode == 0, resumed.stderr
    redone = len(stems) - len(journaled)
    assert f"segmented {redone} image(s)" in resumed.stdout
    assert redone <= len(stems) - len(complete) + 1  # at most the in-flight image again
    assert f"{len(journaled)} already done" in resumed.stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files
    assert _tree(out) == _tree(reference)  # byte-identical to an uninterrupted run
    again = _segment(str(photos), *_segment_args(converted_s, out, *fmt, "--skip-existing"))
    assert again.returncode == 0 and "segmented 0 image(s)" in again.stdout
    assert _tree(out) == _tree(reference)


def test_coco_output_loads_and_evaluates_with_pycocotools(
    converted_s: Path, photo_dir: Path, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "out"
    proc = _segment(str(photo_dir), *_segment_args(converted_s, out, "--format", "json,coco"))
    assert proc.returncode == 1 and "m_broken.jpg" in proc.stderr  # the others still written
    table = json.loads((out / "coco_images.json").read_text())
    assert [im["file_name"] for im in table["images"]] == [str(photo_dir / p) for p in PHOTOS]
    assert [im["id"] for im in table["images"]] == [1, 3]  # source order; m_broken.jpg was 2
    # Ground truth built from the same images: each image's own per-image JSON masks.
    gt = {"images": table["images"], "categories": table["categories"], "annotations": []}
    for im in table["images"]:
        doc = json.loads((out / f"{Path(im['file_name']).stem}.json").read_text())
        assert doc["annotations"], "the test checkpoint finds masks on the photos"
        for record in doc["annotations"]:
            gt["annotations"].append(
                {"id": len(gt["annotations"]) + 1, "image_id": im["id"], "iscrowd": 0,
                 "category_id": record["category_id"], "segmentation": record["segmentation"],
                 "area": record["area"], "bbox": record["bbox"]}
            )  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    coco_gt = COCO(str(tmp_path / "gt.json"))
    coco_dt = coco_gt.loadRes(str(out / "coco_results.json"))
    for iou_type in ("segm", "bbox"):
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats[0] > 0.99  # every mask matches itself
    record = json.load((out / "coco_results.json").open())[0]
    for key in ("predicted_iou", "stability_score", "point_coords", "crop_box", "det_bbox"):
        assert key in record
    assert 0.0 <= record["stability_score"] <= 1.0
    # --coco-gt numbers images as an existing annotation file does (by file name)
    for i, im in enumerate(gt["images"]):
        im["file_name"], im["id"] = Path(im["file_name"]).name, 100 + i
    (tmp_path / "gt2.json").write_text(json.dumps(gt))
    out2 = tmp_path / "out2"
    coffee = str(photo_dir / "coffee.jpg")
    args = _segment_args(
        converted_s, out2, "--format", "coco", "--coco-gt", str(tmp_path / "gt2.json")
    )
    assert _segment(coffee, *args).returncode == 0
    assert {r["image_id"] for r in json.load((out2 / "coco_results.json").open())} == {100}


def test_jsonl_polygons_and_overlay_options(
    converted_s: Path, photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    coffee = str(photo_dir / "coffee.jpg")
    extra = [
        "--format",
        "png,jsonl,polygons",
        "--overlay",
        "boxes,labels,prompts",
        "--alpha",
        "0.3",
    ]
    proc = _segment(coffee, *_segment_args(converted_s, out, *extra, "--box", "10,10,200,150"))
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert line["image_id"] == 1 and line["stem"] == "coffee" and line["file_name"] == coffee
    (record,) = line["annotations"]  # one row per box prompt
    assert record["prompt_kind"] == "box" and record["prompt_id"] == 0
    assert 0.0 <= record["prompt_score"] <= 1.0 and "source_id" in record
    polygons = json.loads((out / "coffee.polygons.json").read_text())
    assert len(polygons["polygons"]) == 1 and set(polygons["polygons"][0]) == {
        "id",
        "outer",
        "holes",
    }
    overlay = np.asarray(Image.open(out / "coffee.png").convert("RGB"))
    assert (overlay[10, 12:198] == 255).all()  # the prompt box is drawn in white
    bad = _segment(coffee, *_segment_args(converted_s, tmp_path / "o", "--overlay", "sparkles"))
    assert bad.returncode != 0 and "--overlay" in bad.stderr and "Traceback" not in bad.stderr
