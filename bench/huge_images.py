"""Huge photos (48 and 96 MP) in bounded memory, ours vs the oracle (issue 15 item 4).

    python -m bench.huge_images --checkpoint N.pt          # any ultralytics FastSAM-s .pt
    python -m bench.huge_images --checkpoint N.pt --conf 0.4 0.1 --oracle-cap-gb 12

Makes each photo by upscaling a bundled photo (bicubic, JPEG q90) into a temporary directory,
then runs every (photo, conf) case in a fresh subprocess per side, so each peak RSS is that run's
alone (`ru_maxrss` of the child):

* ours: decode (`io.images.load_images`) -> `Predictor.predict_images` (FastSAM-s at 1024,
  retina masks, timed per stage by `profiling.StageClock`) -> `Results.to_json()` (COCO RLE from
  each mask's crop, stability, tight boxes) -> one JSONL line written, i.e. what
  `fastsam segment --format jsonl` does per image. Post-processing = the "masks" stage + JSON
  records + the write; its share of end to end (decode to written line, model load excluded).
* oracle: ultralytics `FastSAM(checkpoint).predict(path, retina_masks=True)` with the same conf,
  iou 0.9 and imgsz, then pycocotools RLE of its dense masks, under an address-space cap
  (`resource.setrlimit(RLIMIT_AS)`) so a run that would swallow the machine fails with the error
  it hits instead (reported).

Target (issue 15): peak RSS <= 3 x the decoded image's bytes + 1 GiB; post-processing <= 25 %.
The oracle is imported only in its child process (AGPL; the product never imports it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, env_info, load_average, write_json

SIZES_MP = {"48MP": (5660, 8490), "96MP": (8000, 12000)}  # (H, W), the 3:2 of sa_862.jpg
GIB = 1 << 30


def source_photo(name: str) -> Path:
    """`name` in bench/end_to_end_inputs.IMAGES_DIRS ($FASTSAM_BENCH_IMAGES, ../shared/images,
    then the test fixtures); the first fixture photo when no folder has it."""
    from bench.end_to_end_inputs import IMAGES_DIRS

    for folder in IMAGES_DIRS:
        if (folder / name).exists():
            return folder / name
    fixtures = sorted(IMAGES_DIRS[-1].glob("*.jpg"))
    if not fixtures:
        raise SystemExit(f"no photo {name!r} in {[str(d) for d in IMAGES_DIRS]}")
    return fixtures[0]


def make_photo(source: Path, out: Path, hw: tuple[int, int]) -> Path:
    """Upscale `source` to (H, W) (bicubic) and save it as JPEG q90."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # we make the huge file ourselves
    with Image.open(source) as img:
        img.convert("RGB").resize((hw[1], hw[0]), Image.BICUBIC).save(out, quality=90)
    return out


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _rss_bytes() -> int:
    return _status_bytes("VmRSS")


def _reset_peak() -> None:
    """VmHWM := VmRSS (Linux), so the next VmHWM read is the peak of what follows."""
    Path("/proc/self/clear_refs").write_text("5")


# ----------------------------------------------------------------------------- child processes


def run_ours(image: Path, weights: Path, conf: float, imgsz: int, out: Path) -> dict[str, Any]:
    from PIL import Image

    from fastsam_core.io.images import load_images
    from fastsam_core.predictor import Predictor
    from fastsam_core.profiling import StageClock

    Image.MAX_IMAGE_PIXELS = None  # issue 15: `--max-pixels` lifts it in the CLI
    predictor = Predictor(str(weights), device="cpu", imgsz=imgsz, conf=conf, iou=0.9)
    base = _rss_bytes()
    start = time.perf_counter()
    images = load_images(str(image))
    decoded = time.perf_counter()
    peak_decode = _status_bytes("VmHWM")
    _reset_peak()
    clock = StageClock()
    result = predictor.predict_images(images, timer=clock)[0]
    predicted = time.perf_counter()
    line = json.dumps({"file_name": str(image)} | result.to_json())
    records = time.perf_counter()
    with open(out, "a", encoding="utf-8") as journal:
        journal.write(line + "\n")
    end = time.perf_counter()
    post = clock.seconds.get("masks", 0.0) + (end - predicted)
    return {
        "masks": len(result.boxes),
        "decoded_bytes": images[0].image.numel() * images[0].image.element_size(),
        "stored_mask_pixels": int(result.masks.data.numel()),
        "rss_after_load": base,
        # clear_refs also resets ru_maxrss: the run's peak is the larger of the two parts
        "peak_rss": max(peak_decode, _status_bytes("VmHWM")),
        "peak_rss_decode": peak_decode,  # model load and io.images (decode to a uint8 tensor)
        "peak_rss_after_decode": _status_bytes("VmHWM"),  # letterbox .. JSONL line
        "decode_s": decoded - start,
        "stages_s": clock.seconds,
        "records_s": records - predicted,
        "write_s": end - records,
        "post_s": post,
        "total_s": end - start,
        "jsonl_bytes": len(line) + 1,
    }


def run_oracle(image: Path, checkpoint: Path, conf: float, imgsz: int) -> dict[str, Any]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import numpy as np
    import torch
    from pycocotools import mask as mask_utils
    from ultralytics import FastSAM

    threads = torch.get_num_threads()
    model = FastSAM(str(checkpoint))
    torch.set_num_threads(threads)  # ultralytics sets 1 thread on import
    base = _rss_bytes()
    start = time.perf_counter()
    result = model.predict(
        str(image), imgsz=imgsz, conf=conf, iou=0.9, retina_masks=True, device="cpu",
        verbose=False,
    )[0]  # fmt: skip
    predicted = time.perf_counter()
    masks = result.masks.data if result.masks is not None else torch.zeros((0, 1, 1))
    rles = [
        mask_utils.encode(np.asfortranarray(m.cpu().numpy().astype(np.uint8))) for m in masks
    ]  # one mask at a time: (H0, W0) uint8 Fortran order each
    end = time.perf_counter()
    return {
        "masks": len(rles),
        "rss_after_load": base,
        "peak_rss": _max_rss_bytes(),
        "speed_ms": dict(result.speed),
        "rle_s": end - predicted,
        "total_s": end - start,
    }


def child_main(args: argparse.Namespace) -> int:
    if args.cap_gb:
        cap = int(args.cap_gb * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        if args.child == "ours":
            report = run_ours(args.image, args.weights, args.conf[0], args.imgsz, args.jsonl)
        else:
            report = run_oracle(args.image, args.checkpoint, args.conf[0], args.imgsz)
    except (MemoryError, RuntimeError, ValueError, OSError) as err:
        report = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
        report["peak_rss"] = _max_rss_bytes()
    print("RESULT " + json.dumps(report))
    return 0


def spawn(side: str, image: Path, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Run one side in a fresh interpreter; its last RESULT line, or the way it died."""
    cmd = [
        sys.executable, "-m", "bench.huge_images", "--child", side, "--image", str(image),
        "--conf", str(extra["conf"]), "--imgsz", str(args.imgsz),
    ]  # fmt: skip
    if side == "ours":
        cmd += ["--weights", str(extra["weights"]), "--jsonl", str(extra["jsonl"])]
    else:
        cmd += ["--checkpoint", str(args.checkpoint), "--cap-gb", str(args.oracle_cap_gb)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": wall}
    return json.loads(lines[-1].removeprefix("RESULT ")) | {"wall_s": wall}


# ----------------------------------------------------------------------------- report


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def table(cases: list[dict[str, Any]]) -> str:
    head = (
        "| photo | conf | side | masks | peak RSS MB | after decode MB | budget MB | decode s | "
        "forward s | masks s | records+write s | end to end s | post % | error |"
    )
    rows = [head, "|" + "---|" * 14]
    for case in cases:
        for side in ("ours", "oracle"):
            r = case.get(side)
            if r is None:
                continue
            if side == "ours" and "error" not in r:
                stages = r["stages_s"]
                row = [
                    r["masks"], _mb(r["peak_rss"]), _mb(r.get("peak_rss_after_decode")),
                    _mb(case["budget_bytes"]), f"{r['decode_s']:.2f}",
                    f"{stages.get('forward', 0):.2f}",
                    f"{stages.get('masks', 0):.2f}", f"{r['records_s'] + r['write_s']:.2f}",
                    f"{r['total_s']:.2f}", f"{100 * r['post_s'] / r['total_s']:.0f}", "",
                ]  # fmt: skip
            elif "error" not in r:
                speed = r["speed_ms"]
                row = [
                    r["masks"], _mb(r["peak_rss"]), "-", _mb(case["budget_bytes"]), "-",
                    f"{speed.get('inference', 0) / 1e3:.2f}", "-", f"{r['rle_s']:.2f}",
                    f"{r['total_s']:.2f}",
                    f"{100 * (speed.get('postprocess', 0) / 1e3 + r['rle_s']) / r['total_s']:.0f}",
                    "",
                ]  # fmt: skip
            else:
                row = ["-", _mb(r.get("peak_rss")), "-", _mb(case["budget_bytes"])]
                row += ["-"] * 6 + [r["error"]]
            cells = [case["photo"], case["conf"], side, *row]
            rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, help="ultralytics FastSAM-s .pt (both sides)")
    parser.add_argument("--photo", default="sa_862.jpg", help="photo to upscale (3:2 best)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES_MP), choices=list(SIZES_MP))
    parser.add_argument("--conf", type=float, nargs="+", default=[0.4])
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--oracle-cap-gb", type=float, default=12.0, help="oracle RLIMIT_AS")
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per child process, s")
    parser.add_argument("--json", type=Path, help="also write the report here")
    # child process arguments (internal)
    parser.add_argument("--child", choices=["ours", "oracle"], help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--jsonl", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cap-gb", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    if args.checkpoint is None:
        raise SystemExit("--checkpoint PATH (an ultralytics FastSAM-s .pt) is required")
    from bench.end_to_end_inputs import converted

    weights = converted(args.checkpoint)
    source = source_photo(args.photo)
    report: dict[str, Any] = {
        "env": env_info("cpu"), "args": vars(args), "source_photo": str(source), "cases": [],
    }  # fmt: skip
    print(f"upscaling {source}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fastsam-huge-") as tmp:
        for size in args.sizes:
            photo = make_photo(source, Path(tmp) / f"{size}.jpg", SIZES_MP[size])
            hw = SIZES_MP[size]
            for conf in args.conf:
                case: dict[str, Any] = {
                    "photo": f"{size} {hw[1]}x{hw[0]}", "conf": conf,
                    "budget_bytes": 3 * hw[0] * hw[1] * 3 + GIB, "load_before": load_average(),
                }  # fmt: skip
                jsonl = Path(tmp) / "results.jsonl"
                case["ours"] = spawn("ours", photo, args, conf=conf, weights=weights, jsonl=jsonl)
                if not args.no_oracle:
                    case["oracle"] = spawn("oracle", photo, args, conf=conf)
                case["load_after"] = load_average()
                report["cases"].append(case)
                print(json.dumps(case, default=str), flush=True)
            photo.unlink()
    print(table(report["cases"]))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
