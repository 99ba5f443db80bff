"""`fastsam bench MODEL IMAGES... [--imgsz 1024] [--fast default] [--profile trace.json]`: time our
predictor on your own images (our side only; the side-by-side with the oracle is
`python -m bench.end_to_end` in the repository).

Per image: warm-up calls excluded, median and IQR over `--repeats`, split into stages
(preprocess, forward, NMS, masks, other), plus images/s at `--batch-sizes`. `--profile` writes a
torch profiler (chrome) trace of one warm call.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STAGES = ("preprocess", "forward", "nms", "masks", "other")  # what an everything call splits into


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time the predictor on your images (per stage, median over repeats)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model file (.pt / .safetensors) or a weights name")
    parser.add_argument("images", nargs="+", help="image files, directories or globs")
    parser.add_argument(
        "--imgsz", type=int, default=None, help="letterbox size (default: the model's)"
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--fast", default="default", help="runtime preset: off, default, compile, ..."
    )
    parser.add_argument(
        "--mask-backend", default="auto", help="mask backend name (reference, auto, ...)"
    )
    parser.add_argument(
        "--no-retina", action="store_true", help="masks at the letterbox resolution"
    )
    parser.add_argument("--conf", type=float, default=0.4)
    parser.add_argument("--iou", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="*", default=[], help="images/s at these B"
    )
    parser.add_argument("--profile", type=Path, help="write a torch profiler chrome trace here")
    parser.add_argument("--json", type=Path, help="write the numbers as JSON here")
    parser.set_defaults(func=run)


def _stats(stats: Any) -> dict[str, float]:
    return {"median": stats.median, "iqr": stats.iqr}


def run(args: argparse.Namespace) -> int:
    import torch

    from fastsam_core.io.images import load_images
    from fastsam_core.predictor import Predictor
    from fastsam_core.profiling import StageClock, device_sync, summarize

    if args.repeats < 1 or args.warmup < 0:
        raise ValueError(
            f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, {args.warmup}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    predictor = Predictor(
        args.model, device=args.device, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
        retina_masks=not args.no_retina, mask_backend=args.mask_backend,
        fast=False if args.fast == "off" else args.fast,
    )  # fmt: skip
    load_s = time.perf_counter() - start
    images = load_images(args.images)
    if not images:
        raise FileNotFoundError(f"no images found in {args.images}")
    device = predictor.device
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"fast={args.fast}, mask_backend={args.mask_backend}, load {load_s:.2f} s"
    )
    rows = []
    for image in images:
        samples: dict[str, list[float]] = {}
        detections = 0
        for i in range(args.warmup + args.repeats):
            clock = StageClock()
            device_sync(device)
            start = time.perf_counter()
            (result,) = predictor.predict_images([image], timer=clock)
            device_sync(device)
            total = time.perf_counter() - start
            detections = len(result)
            if i < args.warmup:
                continue
            stages = {s: v for s, v in clock.split(total).items() if s in STAGES}
            for key, value in {"total": total, **stages}.items():
                samples.setdefault(key, []).append(value)
        row: dict[str, Any] = {"image": image.name, "hw": list(image.hw), "detections": detections,
               **{k: _stats(summarize(v)) for k, v in samples.items()}}  # fmt: skip
        rows.append(row)
        parts = "  ".join(f"{s} {row[s]['median'] * 1e3:.1f}" for s in STAGES)
        print(
            f"{image.name}: {row['total']['median'] * 1e3:.1f} ms (IQR "
            f"{row['total']['iqr'] * 1e3:.1f}), "
            f"{detections} masks | {parts} ms"
        )
    throughput = []
    for b in args.batch_sizes:
        batch = [images[i % len(images)] for i in range(b)]
        options = predictor.resolve_options(batch_size=b)
        predictor.predict_images(batch[:1], options)  # warm-up
        device_sync(device)
        start = time.perf_counter()
        predictor.predict_images(batch, options)
        device_sync(device)
        seconds = time.perf_counter() - start
        throughput.append({"batch": b, "images_per_s": b / seconds})
        print(f"B={b}: {b / seconds:.2f} images/s")
    compile_s = predictor.runner.describe()["compile_seconds"]
    if compile_s:
        print(f"compile time (not in the timings): {compile_s}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if device.type == "cuda" else []
        )
        with profile(activities=activities, record_shapes=True) as prof:
            predictor.predict_images(images[:1])
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.profile))
        print(f"wrote profiler trace {args.profile}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "fast": args.fast, "mask_backend": args.mask_backend, "load_s": load_s,
            "compile_seconds": compile_s, "images": rows, "throughput": throughput,
        }, indent=2))  # fmt: skip
    return 0
