"""Images/s of `fastsam label` vs `fastsam segment` vs the oracle's loop, and a memory soak
(issue 15 targets).

    python -m bench.label_throughput --images 200            # the throughput table
    python -m bench.label_throughput --soak --images 1000    # RSS every 50 images, label only
    python -m bench.label_throughput --quick                 # smoke run: 4 images, tiny model

Every side runs as a user runs it, in its own fresh process, on the same folder of N photos
(copies of the images of `bench.end_to_end_inputs.IMAGES_DIRS`, cycled), FastSAM-s-scale weights
(--checkpoint: an ultralytics .pt; default the test suite's calibrated random-weight FastSAM-s),
imgsz 640 (--imgsz), retina masks, conf 0.4, iou 0.9, RLE output:
* label 1x2: `fastsam label` one process, 2 torch threads, 1 decoding worker;
* label 2x1: `torchrun --nproc-per-node 2` ranks of 1 thread, 1 decoding worker each;
* segment: `fastsam segment --format jsonl` with 2 threads;
* oracle: ultralytics `FastSAM(ckpt)(path, ...)` looped over the files, masks RLE-encoded with
  pycocotools (the same output work), 2 threads.
Wall time includes start-up (imports, model load), reported separately from a 1-image run, so
steady images/s = (N - 1) / (wall(N) - wall(1)). The soak runs `label` over N images and samples
the resident memory of the process and its decoding workers each time 50 more lines are journalled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, env_info, load_average, write_json
from bench.end_to_end_inputs import IMAGES_DIRS, converted

_ORACLE_CHILD = """
import os, sys, time, json
os.environ.setdefault("YOLO_OFFLINE", "1")
import torch
from pathlib import Path
from ultralytics import FastSAM
from bench.oracle_side import rle_encode_dense
torch.set_num_threads(int(sys.argv[3]))
model = FastSAM(sys.argv[2])
for path in sorted(Path(sys.argv[1]).glob("*.jpg")):
    r = model(str(path), imgsz=int(sys.argv[4]), conf=0.4, iou=0.9, retina_masks=True, device="cpu",
              verbose=False)[0]
    torch.set_num_threads(int(sys.argv[3]))  # its device setup resets the thread count
    if r.masks is not None:
        rle_encode_dense(r.masks.data.bool())
"""


def make_folder(root: Path, count: int) -> Path:
    """`count` jpg copies of the bench photos (cycled), named 00000.jpg, 00001.jpg, ..."""
    sources = sorted({p for d in IMAGES_DIRS if d.is_dir() for p in d.glob("*.jpg")})
    if not sources:
        raise SystemExit(f"no .jpg photos in {IMAGES_DIRS}")
    folder = root / f"photos{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shutil.copy(sources[i % len(sources)], folder / f"{i:05d}.jpg")
    return folder


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO_ROOT)}


def side_command(
    side: str, folder: Path, weights: Path, checkpoint: Path, out: Path, imgsz: int = 640
) -> list[str]:
    """The command line of one side (see the module docstring)."""
    py = sys.executable
    common = ["--model", str(weights), "--imgsz", str(imgsz), "--device", "cpu", "--out", str(out)]
    if side == "label 1x2":
        return [py, "-m", "fastsam_core.cli", "label", str(folder), *common, "--threads", "2",
                "--workers", "1", "--batch", "2", "--format", "jsonl"]  # fmt: skip
    if side == "label 2x1":
        return [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                "fastsam_core.cli", "label", str(folder), *common, "--threads", "1",
                "--workers", "1", "--batch", "2", "--format", "jsonl"]  # fmt: skip
    if side == "segment":
        return [py, "-m", "fastsam_core", "segment", str(folder), *common, "--format", "jsonl"]
    if side == "oracle":
        return [py, "-c", _ORACLE_CHILD, str(folder), str(checkpoint), "2", str(imgsz)]
    raise ValueError(f"unknown side {side!r}")


def timed(command: list[str], threads: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(threads), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:6]} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def _rss_kb(pid: int) -> int:
    """Resident KiB of `pid` and its children (decoding workers), from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def soak(
    folder: Path, weights: Path, out: Path, imgsz: int, every: int = 50
) -> list[dict[str, float]]:
    """RSS of a 1-process label run each time `every` more images are journalled."""
    command = side_command("label 1x2", folder, weights, weights, out, imgsz)
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = out / "results.jsonl"
    samples: list[dict[str, float]] = []
    start = time.perf_counter()
    while proc.poll() is None:
        lines = journal.read_bytes().count(b"\n") if journal.exists() else 0
        if lines >= every * (len(samples) + 1):
            samples.append({"images": lines, "rss_mb": _rss_kb(proc.pid) / 1024,
                            "seconds": time.perf_counter() - start})  # fmt: skip
            print(json.dumps(samples[-1]), flush=True)
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"soak run failed with exit code {proc.returncode}")
    return samples


def default_checkpoint() -> Path:
    from tests.support.oracle_models import calibrated_oracle_checkpoint

    return calibrated_oracle_checkpoint("s", 16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="photos in the folder")
    parser.add_argument("--checkpoint", type=Path, help="ultralytics .pt (FastSAM-s scale)")
    parser.add_argument("--sides", nargs="+", default=["label 1x2", "label 2x1", "segment",
                                                       "oracle"])  # fmt: skip
    parser.add_argument("--imgsz", type=int, default=640, help="letterbox size, every side")
    parser.add_argument("--soak", action="store_true", help="RSS every 50 images, label only")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 images, tiny model")
    parser.add_argument("--json", type=Path, default=Path("bench/results/label_throughput.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.imgsz, args.sides = 4, 256, ["label 1x2", "segment"]
        checkpoint = REPO_ROOT / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"
        weights = checkpoint
    else:
        checkpoint = args.checkpoint or default_checkpoint()
        weights = converted(checkpoint)
    report: dict[str, Any] = {"env": env_info("cpu"), "args": {k: str(v) for k, v in
                              vars(args).items()}, "checkpoint": str(checkpoint)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fastsam-label-bench-") as tmp:
        root = Path(tmp)
        folder = make_folder(root, args.images)
        if args.soak:
            report["soak"] = soak(folder, weights, root / "soak", args.imgsz)
            write_json(args.json, report)
            return 0
        one = make_folder(root, 1)
        rows = []
        for side in args.sides:
            threads = 1 if side == "label 2x1" else 2
            startup = timed(
                side_command(side, one, weights, checkpoint, root / "o1", args.imgsz), threads
            )
            shutil.rmtree(root / "o1", ignore_errors=True)
            wall = timed(
                side_command(side, folder, weights, checkpoint, root / "oN", args.imgsz), threads
            )
            shutil.rmtree(root / "oN", ignore_errors=True)
            steady = (args.images - 1) / max(wall - startup, 1e-9)
            row = {"side": side, "images": args.images, "wall_s": wall, "one_image_s": startup}
            row |= {"images_per_s": args.images / wall, "steady_images_per_s": steady}
            rows.append(row | {"load_average": load_average()})
            print(json.dumps(rows[-1]), flush=True)
        report["rows"] = rows
    write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
