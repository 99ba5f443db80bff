"""`fastsam label` as a user runs it (subprocess): the journal format, resume after SIGKILL,
Ctrl-C, 2-process torchrun (gloo) against one process, and settings checked on resume.

The model is the tiny bundled checkpoint (tests/fixtures/ul120_tiny_seg_r26.pt) at --imgsz 256:
random weights, but it gives tens of masks on two of the four photos and none on the others,
so the lines are neither all empty nor all alike. Every process runs with one torch thread.
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

import pytest

from tests.support.photos import photo_paths

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
_DATASET = ("results.jsonl", "coco_results.json", "coco_images.json")


def _args(out: Path, *extra: str) -> list[str]:
    model = ["--model", str(TINY), "--imgsz", "256", "--device", "cpu", "--threads", "1"]
    return [*model, "--out", str(out), *extra]


def _label(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fastsam_core.cli", "label", *args]
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_ENV
    )


def _dataset_files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in _DATASET}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 photos (3 copies of each bundled one): several batches per run."""
    folder = tmp_path_factory.mktemp("photos")
    for copy in range(3):
        for path in photo_paths():
            shutil.copy(path, folder / f"{path.stem}_{copy}.jpg")
    return folder


@pytest.fixture(scope="module")
def reference(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process run, batch 2, 2 decoding workers."""
    out = tmp_path_factory.mktemp("reference")
    done = _label(str(photos), *_args(out, "--batch", "2", "--workers", "2"))
    assert done.returncode == 0, done.stderr
    return out


def test_lines_are_segment_lines_in_source_order(photos: Path, reference: Path) -> None:
    lines = [json.loads(x) for x in (reference / "results.jsonl").read_text().splitlines()]
    names = sorted(p.name for p in photos.iterdir())
    assert [Path(line["file_name"]).name for line in lines] == names
    assert [line["image_id"] for line in lines] == list(range(1, len(names) + 1))
    assert [line["stem"] for line in lines] == [Path(n).stem for n in names]
    masks = [len(line["annotations"]) for line in lines]
    assert sum(masks) > 0 and 0 in masks  # the tiny model finds masks on some photos only
    record = next(line["annotations"][0] for line in lines if line["annotations"])
    for key in ("segmentation", "bbox", "score", "stability_score", "point_coords"):
        assert key in record
    coco = json.loads((reference / "coco_results.json").read_text())
    assert len(coco) == sum(masks)
    assert not list(reference.glob("results.rank*.jsonl"))

    # The same lines as `fastsam segment --format jsonl` (batch 1 there: compare batch 1 here).
    seg_out, label_out = reference.parent / "seg", reference.parent / "lab1"
    cmd = [sys.executable, "-m", "fastsam_core", "segment", str(photos)]
    model = ["--model", str(TINY), "--imgsz", "256", "--device", "cpu"]
    seg = subprocess.run(
        [*cmd, *model, "--out", str(seg_out), "--format", "jsonl"],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO, env=_ENV,
    )  # fmt: skip
    assert seg.returncode == 0, seg.stderr
    one = _label(str(photos), *_args(label_out, "--batch", "1", "--workers", "0"))
    assert one.returncode == 0, one.stderr
    assert (seg_out / "results.jsonl").read_bytes() == (label_out / "results.jsonl").read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_resume_after_sigkill_equals_an_uninterrupted_run(
    photos: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastsam_core.cli", "label", str(photos)]
    proc = subprocess.Popen(
        [*cmd, *_args(out, "--batch", "2", "--workers", "2")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=_ENV,
    )  # fmt: skip
    journal = out / "results.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= 2:  # one batch done
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill"
    kept = journal.read_bytes().count(b"\n")
    assert 2 <= kept < 12 and not (out / "coco_results.json").exists()
    with journal.open("ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"image_id": 99, "file_name": "half a li')

    resumed = _label(str(photos), *_args(out, "--batch", "2", "--workers", "2"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{kept} already done" in resumed.stdout, resumed.stdout
    assert _dataset_files(out) == _dataset_files(reference)  # byte for byte
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files
    again = _label(str(photos), *_args(out, "--batch", "2", "--workers", "2"))
    assert again.returncode == 0 and "labelled 0 image(s)" in again.stdout
    assert _dataset_files(out) == _dataset_files(reference)


def test_torchrun_two_ranks_equal_one_process(
    photos: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # --standalone: a local rendezvous on a free port (no fixed MASTER_PORT to collide on).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "fastsam_core.cli", "label", str(photos)]
    proc = subprocess.Popen(
        [*cmd, *_args(out, "--batch", "2", "--workers", "1")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO, env=_ENV,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:  # hung: SIGTERM makes torchrun stop its ranks (each runs in its own session)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "labelled 12 image(s)" in done.stdout
    assert _dataset_files(out) == _dataset_files(reference)
    assert not list(out.glob("results.rank*.jsonl"))  # merged, then removed


def test_resume_merges_parts_of_another_world_size(
    photos: Path, reference: Path, tmp_path: Path
) -> None:
    """Part journals of a killed 2-rank run are finished by a single process (and vice versa)."""
    out = tmp_path / "out"
    out.mkdir()
    lines = (reference / "results.jsonl").read_bytes().splitlines(keepends=True)
    (out / "results.rank0.jsonl").write_bytes(b"".join(lines[0:2]))  # batch 0 of rank 0
    (out / "results.rank1.jsonl").write_bytes(b"".join(lines[2:4]) + lines[4][:50])  # truncated
    resumed = _label(str(photos), *_args(out, "--batch", "2", "--workers", "0"))
    assert resumed.returncode == 0, resumed.stderr
    assert "labelled 8 image(s)" in resumed.stdout and "4 already done" in resumed.stdout
    assert _dataset_files(out) == _dataset_files(reference)
    assert not list(out.glob("results.rank*.jsonl"))


def test_resume_with_other_settings_is_refused(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _label(str(photos / "coffee_0.jpg"), *_args(out, "--workers", "0"))
    assert first.returncode == 0, first.stderr
    other = _label(str(photos / "coffee_0.jpg"), *_args(out, "--workers", "0", "--conf", "0.5"))
    assert other.returncode == 1 and "other settings (conf)" in other.stderr, other.stderr
    forced = _label(
        str(photos / "coffee_0.jpg"), *_args(out, "--workers", "0", "--conf", "0.5", "--force")
    )
    assert forced.returncode == 0 and "labelled 1 image(s)" in forced.stdout, forced.stderr


def test_prompts_file_gives_prompt_rows(photos: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"image": "coffee_0.jpg", "boxes": [[0, 0, 300, 200], [100, 100, 400, 300]]},
        {"image": str(photos / "astronaut_1.jpg"), "points": [[200, 200]], "labels": [1]},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sources = [str(photos / n) for n in ("astronaut_1.jpg", "coffee_0.jpg", "rocket_0.jpg")]
    out = tmp_path / "out"
    done = _label(*sources, *_args(out, "--workers", "0", "--prompts", str(prompts)))
    assert done.returncode == 0, done.stderr
    by_name = {
        Path(line["file_name"]).name: line["annotations"]
        for line in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    boxes = by_name["coffee_0.jpg"]
    assert [r["prompt_kind"] for r in boxes] == ["box", "box"]
    assert [r["prompt_id"] for r in boxes] == [0, 1]
    assert all(r["prompt_kind"] == "point" for r in by_name["astronaut_1.jpg"])
    assert all("prompt_kind" not in r for r in by_name["rocket_0.jpg"])  # everything mode

    prompts.write_text(json.dumps({"image": "nowhere.jpg", "boxes": [[0, 0, 1, 1]]}) + "\n")
    bad = _label(*sources, *_args(tmp_path / "o2", "--prompts", str(prompts)))
    assert bad.returncode == 1 and "line 1: 'nowhere.jpg' is not an image of this run" in bad.stderr
    assert not (tmp_path / "o2").exists()  # checked before the model loads


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_keeps_finished_lines_and_exits_130(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Python's SIGINT handler re-installed: a runner started in the background ignores SIGINT.
    child = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from fastsam_core.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    cmd = [sys.executable, "-c", child, "label", str(photos)]
    proc = subprocess.Popen(
        [*cmd, *_args(out, "--batch", "2", "--workers", "2")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=_ENV,
    )  # fmt: skip
    journal = out / "results.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.stat().st_size:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    text = journal.read_text()
    assert text.endswith("\n") and text.count("\n") % 2 == 0  # whole batches only
    for line in text.splitlines():
        json.loads(line)


def test_video_frames_are_lines_with_their_frame_index(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    import numpy as np
    from PIL import Image

    clip = tmp_path / "clip.mp4"
    with Image.open(photo_paths()[2]) as img:  # coffee
        rgb = np.asarray(img.convert("RGB").resize((320, 224)))
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 224, "yuv420p"
        for i in range(5):  # the photo panned 8 px per frame
            frame = av.VideoFrame.from_ndarray(np.roll(rgb, 8 * i, axis=1).copy(), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = tmp_path / "out"
    done = _label(str(clip), str(photo_paths()[3]), *_args(out, "--vid-stride", "2"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [line.get("frame") for line in lines] == [0, 2, 4, None]  # then rocket.jpg
    assert [line["file_name"] for line in lines[:3]] == [f"{clip}#{i}" for i in (0, 2, 4)]
    assert len({line["stem"] for line in lines}) == 4
    assert [line["image"]["height"] for line in lines[:3]] == [224] * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch must be >= 1, got 0"),
        (["--workers", "-1"], "--workers must be >= 0, got -1"),
        (["--format", "png"], "--format takes jsonl and/or coco"),
        (["--box", "1,2,3"], "--box takes four numbers"),
    ],
)
def test_usage_errors_before_the_model_loads(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastsam_core.cli import main

    out = tmp_path / "out"
    code = main(["label", str(photo_paths()[0]), "--model", "missing.pt", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err, err
    assert not out.exists()
