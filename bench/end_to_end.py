"""End to end, ours vs the oracle (ultralytics 8.4.190 FastSAM) in the same run (issue 6).

    python -m bench.end_to_end                  # official FastSAM-s, dogs.jpg + sa_862.jpg, 640/1024
    python -m bench.end_to_end --quick --checkpoint N.pt   # CI smoke run (small image, 1 repeat)
    python -m bench.end_to_end --profile trace.json   # torch profiler trace of our predictor

What is timed (fastsam_core.profiling, the one clock: warm-up excluded, median and IQR over repeats):
* cases (image x imgsz x retina [x box prompt]): both sides get the SAME decoded BGR arrays (cv2);
  repeats alternate ours / oracle so load changes hit both. Our stages come from the predictor's
  own stage hooks (`timer=StageClock()`: preprocess = letterbox + to_input, forward, NMS with the
  box decode, masks, prompt, other = full-box step, Results); the oracle's from its own `speed` dict
  (preprocess / inference / postprocess). Output encoding (COCO RLE of every mask) is timed
  separately: ours `Results.to_rle`, the oracle's dense masks through pycocotools.
* our variants: "plain" (fp32 NCHW, reference masks), "fast" (runtime default preset + the
  fastest mask backend), "compile" (+ torch.compile; compile time reported separately).
* forward only: each variant's network vs the oracle's, with GFLOP/s (FLOPs from `fastsam info`).
* throughput: images/s at batch 1, 4, 16.
* cold start and peak RSS: each side in its own fresh subprocess (import, load, first call).
The oracle is imported only by bench/oracle_side.py (never by the product): AGPL, a test/bench tool.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import oracle_side
from bench.cold_start import cold_start
from bench.common import REPO_ROOT, env_info, load_average, measure, summarize, write_json
from bench.end_to_end_inputs import (
    DEFAULT_IMAGES,
    IMAGES_DIRS,
    converted,
    load_images,
    official_checkpoint,
)
from bench.end_to_end_report import markdown, print_report
from bench.oracle_side import check_threads, import_oracle, oracle_call, rle_encode_dense
from fastsam_core.mask_backends import auto_backend_name
from fastsam_core.profiling import StageClock

IOU = 0.9
CONF = 0.4  # FastSAM's default; --conf overrides (both sides)


# ----------------------------------------------------------------------------- our side


VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"fast": False, "mask_backend": "reference"},
    "fast": {"fast": True, "mask_backend": "best"},
    "compile": {"fast": "compile", "mask_backend": "best"},
    # bf16 is not parity-safe (see tests/unit/test_runtime.py): opt-in only
    "bf16": {"fast": "bf16", "mask_backend": "best"},
}


def _resolved_spec(variant: str, device: torch.device | None = None) -> dict[str, Any]:
    device = device or torch.device("cpu")
    spec = dict(VARIANTS[variant])
    if spec["mask_backend"] == "best":
        spec["mask_backend"] = auto_backend_name(device)
    return spec


def make_predictor(weights: Path, variant: str, device: torch.device) -> tuple[Any, float]:
    from fastsam_core.predictor import Predictor

    spec = _resolved_spec(variant, device)
    start = time.perf_counter()
    predictor = Predictor(
        str(weights), device=device, conf=CONF, iou=IOU, postprocess="ultralytics", bgr=True, **spec
    )
    return predictor, time.perf_counter() - start


# ----------------------------------------------------------------------------- cases


def run_case(
    name: str,
    image: np.ndarray,
    imgsz: int,
    retina: bool,
    box_prompt: bool,
    predictors: dict[str, Any],
    oracle: Any | None,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time every variant of ours and the oracle on one input, alternating per repeat."""
    h, w = image.shape[:2]
    prompt_box = [w * 0.25, h * 0.25, w * 0.75, h * 0.75]
    ours_kwargs: dict[str, Any] = {"imgsz": imgsz, "retina_masks": retina}
    oracle_kwargs: dict[str, Any] = {
        "imgsz": imgsz, "retina_masks": retina, "conf": CONF, "iou": IOU, "device": "cpu",
        "verbose": False,
    }  # fmt: skip
    if box_prompt:
        ours_kwargs["boxes"] = [prompt_box]
        oracle_kwargs["bboxes"] = [prompt_box]
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in predictors}
    counts: dict[str, int] = {}
    oracle_samples: dict[str, list[float]] = {}

    def ours_once(variant: str, record: bool) -> None:
        clock = StageClock()
        predictor = predictors[variant]
        check_threads(f"ours {variant}")
        start = time.perf_counter()
        results = predictor(image, timer=clock, **ours_kwargs)
        total = time.perf_counter() - start
        start = time.perf_counter()
        results[0].to_rle()
        encode = time.perf_counter() - start
        counts[variant] = len(results[0])
        if record:
            stages = clock.split(total)  # OUR_STAGES
            for key, value in {"total": total, "encode": encode, **stages}.items():
                samples[variant].setdefault(key, []).append(value)

    def oracle_once(record: bool) -> None:
        check_threads("oracle")
        start = time.perf_counter()
        results = oracle_call(oracle, image, **oracle_kwargs)
        total = time.perf_counter() - start
        r = results[0]
        masks = (
            r.masks.data.bool() if r.masks is not None else torch.zeros(0, 1, 1, dtype=torch.bool)
        )
        start = time.perf_counter()
        rle_encode_dense(masks)
        encode = time.perf_counter() - start
        counts["oracle"] = 0 if r.masks is None else int(masks.shape[0])
        if record:
            speed = {k: v / 1e3 for k, v in r.speed.items()}  # ms -> s
            for key, value in {"total": total, "encode": encode, **speed}.items():
                oracle_samples.setdefault(key, []).append(value)

    for i in range(warmup + repeats):
        record = i >= warmup
        for variant in predictors:
            ours_once(variant, record)
        if oracle is not None:
            oracle_once(record)
    row: dict[str, Any] = {
        "case": name, "image_hw": [h, w], "imgsz": imgsz, "retina": retina,
        "prompt": "box" if box_prompt else None, "detections": counts,
        "load_average": load_average(),
        "ours": {v: {k: summarize(s).to_dict() for k, s in stage.items()} for v, stage in samples.items()},
    }  # fmt: skip
    if oracle is not None:
        row["oracle"] = {k: summarize(s).to_dict() for k, s in oracle_samples.items()}
        oracle_total = row["oracle"]["total"]["median"]
        row["ratio"] = {v: oracle_total / row["ours"][v]["total"]["median"] for v in predictors}
    return row


def forward_only(
    predictors: dict[str, Any], oracle: Any | None, sizes: list[tuple[int, int]],
    warmup: int, repeats: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """The network alone on a (1, 3, H, W) photo-like input: each variant, the oracle's net,
    and achieved GFLOP/s."""
    from fastsam_core.cli.info import count_flops

    rows = []
    for hw in sizes:
        some = next(iter(predictors.values()))
        cfg = some.model.cfg
        flops = count_flops(cfg, hw[0]) if hw[0] == hw[1] else None
        batch = torch.randint(0, 256, (1, 3, *hw), dtype=torch.uint8)
        row: dict[str, Any] = {
            "input_hw": list(hw),
            "gflops": flops["total"] / 1e9 if flops else None,
        }
        for variant, predictor in predictors.items():
            check_threads(f"forward {variant}")
            x = predictor.runner.to_input(batch)
            stats = measure(lambda r=predictor.runner, x=x: r(x), warmup=warmup, repeats=repeats)
            row[variant] = stats.to_dict()
        if oracle is not None and oracle.predictor is not None:
            net = oracle.predictor.model  # AutoBackend, fused, channels_last on CPU (as it runs)
            x = (batch.float() / 255).contiguous(memory_format=torch.channels_last)

            def oracle_forward(net: Any = net, x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    net(x)

            check_threads("forward oracle")
            row["oracle"] = measure(oracle_forward, warmup=warmup, repeats=repeats).to_dict()
        if row["gflops"]:
            for key in [k for k in row if isinstance(row[k], dict)]:
                row[key]["gflop_per_s"] = row["gflops"] / row[key]["median"]
        row["load_average"] = load_average()
        rows.append(row)
    return rows


def throughput(
    weights: Path, variant: str, image: np.ndarray, imgsz: int, batch_sizes: list[int],
    repeats: int, device: torch.device,
) -> list[dict[str, Any]]:  # fmt: skip
    """Images/s of our predictor at each batch size (B copies of one image, retina masks)."""
    predictor, _ = make_predictor(weights, variant, device)
    rows = []
    for b in batch_sizes:
        images = [image] * b
        predictor(images[:1], imgsz=imgsz)  # warm-up (lazy init, compile)
        check_threads(f"throughput {variant} B={b}")
        stats = measure(
            lambda images=images, b=b: predictor(images, imgsz=imgsz, batch_size=b),
            warmup=0,
            repeats=repeats,
        )
        rows.append({
            "variant": variant, "batch": b, "imgsz": imgsz, "seconds": stats.to_dict(),
            "images_per_s": b / stats.median, "load_average": load_average(),
        })  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny model, 1 repeat")
    parser.add_argument(
        "--scale", default="s", help="official checkpoint (s or x) when --checkpoint is not given"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="ultralytics .pt (default: the official FastSAM-{scale})"
    )
    parser.add_argument(
        "--images",
        nargs="+",
        help=f"file names in {' or '.join(map(str, IMAGES_DIRS))} (default dogs.jpg sa_862.jpg)",
    )
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 1024])
    parser.add_argument("--retina", choices=["on", "off"], nargs="+", default=["on", "off"])
    parser.add_argument(
        "--variants", nargs="+", default=["plain", "fast"], choices=sorted(VARIANTS)
    )
    parser.add_argument(
        "--box-prompt", action="store_true", help="also time a box prompt per image"
    )
    parser.add_argument("--conf", type=float, default=CONF, help="confidence threshold, both sides")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--no-oracle", action="store_true", help="our side only")
    parser.add_argument("--no-forward", action="store_true", help="skip the forward-only table")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the subprocess runs")
    parser.add_argument(
        "--markdown", type=Path, help="print an existing JSON report as Markdown, exit"
    )
    parser.add_argument("--profile", type=Path, help="write a torch profiler (chrome) trace here")
    parser.add_argument(
        "--json", type=Path, default=REPO_ROOT / "bench" / "results" / "end_to_end.json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.imgsz, args.retina, args.repeats, args.warmup = "n", [160], ["on"], 1, 1
        args.batch_sizes, args.images = [1, 2], args.images or ["coffee.jpg"]
        args.conf = 0.05 if args.conf == CONF else args.conf  # random tiny net: some detections
        args.variants = [v for v in args.variants if v != "compile"]
    return args


def main(argv: list[str] | None = None) -> int:
    global CONF
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    CONF, oracle_side.THREADS = args.conf, args.threads
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    oracle_cls = None if args.no_oracle else import_oracle(args.threads)
    checkpoint = args.checkpoint or official_checkpoint(args.scale)
    weights = converted(checkpoint)
    images = load_images(args.images or list(DEFAULT_IMAGES.values()), args.quick)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "env": env_info(device), "args": {k: str(v) for k, v in vars(args).items()},
        "checkpoint": str(checkpoint), "weights": str(weights),
        "mask_backend_fast": auto_backend_name(device), "cases": [],
    }  # fmt: skip
    load_seconds = {}
    predictors = {}
    for variant in args.variants:
        predictors[variant], load_seconds[variant] = make_predictor(weights, variant, device)
    oracle = None
    if oracle_cls is not None:
        start = time.perf_counter()
        oracle = oracle_cls(str(checkpoint))
        load_seconds["oracle"] = time.perf_counter() - start
    report["load_seconds"] = load_seconds
    for name, image in images.items():
        for imgsz in args.imgsz:
            for retina in args.retina:
                prompts = [False, True] if args.box_prompt else [False]
                for box_prompt in prompts:
                    row = run_case(
                        name,
                        image,
                        imgsz,
                        retina == "on",
                        box_prompt,
                        predictors,
                        oracle,
                        args.warmup,
                        args.repeats,
                    )
                    report["cases"].append(row)
                    print(
                        json.dumps(
                            {k: row[k] for k in ("case", "imgsz", "retina", "prompt", "detections")}
                            | {"ratio": row.get("ratio")}
                        ),
                        flush=True,
                    )
    first_image = next(iter(images.values()))
    if not args.no_forward:
        sizes = [(s, s) for s in args.imgsz]
        report["forward"] = forward_only(predictors, oracle, sizes, args.warmup, args.repeats)
    if args.batch_sizes:
        report["throughput"] = []
        for variant in ["fast"] if "fast" in args.variants else args.variants[:1]:
            report["throughput"] += throughput(
                weights, variant, first_image, args.imgsz[0], args.batch_sizes,
                max(1, min(args.repeats, 3)), device,
            )  # fmt: skip
    if not args.no_cold_start:
        report["cold_start"] = []
        sides = [("ours", v) for v in args.variants if v != "compile"] + (
            [("oracle", "-")] if oracle else []
        )
        for side, variant in sides:
            report["cold_start"].append(cold_start(
                side, weights if side == "ours" else checkpoint, first_image, args.imgsz[0],
                "on" in args.retina, args.threads, variant,
                _resolved_spec(variant) if side == "ours" else {}, CONF,
            ))  # fmt: skip
    report["compile_seconds"] = {
        v: p.runner.describe()["compile_seconds"]
        for v, p in predictors.items()
        if p.runner.compile_seconds
    }
    if args.profile:
        profile(predictors[args.variants[-1]], first_image, args.imgsz[0], args.profile)
        report["profile"] = str(args.profile)
    report["env"]["load_average_end"] = load_average()
    write_json(args.json, report)
    print_report(report)
    print(f"\nwrote {args.json}")
    return 0


def profile(predictor: Any, image: np.ndarray, imgsz: int, path: Path) -> None:
    """One warm call of `predictor` under torch.profiler; chrome trace written to `path`."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    predictor(image, imgsz=imgsz)
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
    )
    with (
        torch_profile(activities=activities, record_shapes=True) as prof,
        record_function("fastsam_predict"),
    ):
        predictor(image, imgsz=imgsz)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    raise SystemExit(main())
