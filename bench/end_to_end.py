"""End to end, ours vs the oracle (ultralytics 8.4.190 FastSAM) in the same run (issue 6).

    python -m bench.end_to_end                  # FastSAM-s, dogs.jpg + sa_862.jpg, 640/1024, retina on/off
    python -m bench.end_to_end --quick          # CI smoke run (tiny model, small image, 1 repeat)
    python -m bench.end_to_end --profile trace.json   # torch profiler trace of our predictor

What is timed (bench/common.py: warm-up excluded, median and IQR over repeats):
* cases (image x imgsz x retina [x box prompt]): both sides get the SAME decoded BGR arrays (cv2);
  repeats alternate ours / oracle so load changes hit both. Our stages come from timing wrappers
  around the predictor's steps (preprocess = letterbox + to_input, forward, NMS, masks, prompt,
  other = box decode, full-box step, Results); the oracle's from its own `speed` dict
  (preprocess / inference / postprocess). Output encoding (COCO RLE of every mask) is timed
  separately: ours `Results.to_rle`, the oracle's dense masks through pycocotools.
* our variants: "plain" (fp32 NCHW, reference masks), "fast" (runtime default preset + the
  fastest mask backend), "compile" (+ torch.compile; compile time reported separately).
* forward only: each variant's network vs the oracle's, with GFLOP/s (FLOPs from `fastsam info`).
* throughput: images/s at batch 1, 4, 16.
* cold start and peak RSS: each side in its own fresh subprocess (import, load, first call).
The oracle is imported only here (never by the product): it is AGPL and a test/bench tool.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import REPO_ROOT, env_info, load_average, measure, summarize, write_json
from fastsam_core.mask_backends import auto_backend_name
from fastsam_core.stage_timing import StageClock, instrumented

IMAGES_DIR = Path(os.environ.get("FASTSAM_BENCH_IMAGES", REPO_ROOT.parent / "shared" / "images"))
DEFAULT_IMAGES = {"sparse": "dogs.jpg", "dense": "sa_862.jpg"}
IOU = 0.9
CONF = 0.4  # FastSAM's default; --conf overrides (both sides)
THREADS = torch.get_num_threads()  # --threads; restored after every oracle call (see oracle_call)
OUR_STAGES = ("preprocess", "forward", "nms", "masks", "prompt", "other")


# ----------------------------------------------------------------------------- inputs


def cache_dir() -> Path:
    root = os.environ.get("FASTSAM_TEST_CACHE") or Path.home() / ".cache" / "fastsam-core-tests"
    path = Path(root) / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def oracle_checkpoint_for(scale: str, quick: bool) -> Path:
    """A cached oracle-made random-weight checkpoint (class-calibrated unless quick)."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support import oracle_models

    if quick:
        return oracle_models.oracle_checkpoint(scale, reg_max=16)
    return oracle_models.calibrated_oracle_checkpoint(scale, reg_max=16)


def converted(checkpoint: Path) -> Path:
    """`fastsam convert` of `checkpoint` (in a subprocess, ultralytics never imported), cached."""
    out = cache_dir() / f"{checkpoint.stem}-{checkpoint.stat().st_size}.safetensors"
    if not out.exists():
        tmp = out.with_suffix(".tmp.safetensors")
        subprocess.run(
            [sys.executable, "-m", "fastsam_core", "convert", str(checkpoint), str(tmp), "--force"],
            check=True, cwd=REPO_ROOT, capture_output=True,
        )  # fmt: skip
        os.replace(tmp, out)
    return out


def load_images(names: list[str], quick: bool) -> dict[str, np.ndarray]:
    """name -> (H, W, 3) uint8 BGR, decoded once with cv2 (the oracle's reader); generated if absent."""
    import cv2

    images = {}
    for name in names:
        path = IMAGES_DIR / name
        if path.exists():
            image = cv2.imread(str(path))
            if image is None:
                raise ValueError(f"cv2 could not decode {path}")
        else:  # smooth random blobs: a stand-in photo (documented in the JSON as generated)
            rng = np.random.default_rng(abs(hash(name)) % 2**32)
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            image = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
            name = f"generated:{name}"
        if quick:
            image = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4))
        images[name] = np.ascontiguousarray(image)
    return images


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


# ----------------------------------------------------------------------------- oracle side


def import_oracle(threads: int) -> Any:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics-config"))
    from ultralytics import FastSAM

    torch.set_num_threads(threads)  # ultralytics sets torch to 1 thread on import
    return FastSAM


def oracle_call(oracle: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the oracle, then restore our thread count: its predictor setup (first call) runs
    `select_device`, which sets torch to min(8, cpu_count - 1) = 1 thread on a 2-core machine,
    and would silently make every later timing (ours and its own) single-threaded."""
    try:
        return oracle(*args, **kwargs)
    finally:
        torch.set_num_threads(THREADS)


def check_threads(where: str) -> None:
    """Fail loudly instead of timing with a thread count other than --threads."""
    if torch.get_num_threads() != THREADS:
        raise RuntimeError(
            f"{where}: torch runs {torch.get_num_threads()} threads, expected --threads {THREADS}"
        )


def rle_encode_dense(masks: torch.Tensor) -> list[dict[str, Any]]:
    """COCO RLE of (N, H, W) bool masks with pycocotools (the oracle's output encoding)."""
    from pycocotools import mask as mask_utils

    if masks.shape[0] == 0:
        return []
    array = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    return mask_utils.encode(array)


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
        with instrumented(predictor, clock):
            start = time.perf_counter()
            results = predictor(image, **ours_kwargs)
            total = time.perf_counter() - start
        start = time.perf_counter()
        results[0].to_rle()
        encode = time.perf_counter() - start
        counts[variant] = len(results[0])
        if record:
            stages = {s: clock.seconds.get(s, 0.0) for s in OUR_STAGES if s != "other"}
            stages["other"] = max(total - sum(stages.values()), 0.0)
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


# ----------------------------------------------------------------------------- subprocess workers

_WORKER = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
side, weights, image_path, imgsz, retina, threads, spec, conf = sys.argv[1:9]
imgsz, retina, threads, conf = int(imgsz), retina == "1", int(threads), float(conf)
import numpy as np, torch
if side == "oracle":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import FastSAM
torch.set_num_threads(threads)
if side == "ours":
    from fastsam_core.predictor import Predictor
t_import = time.perf_counter() - t0
image = np.load(image_path)
t1 = time.perf_counter()
if side == "ours":
    model = Predictor(weights, conf=conf, iou=0.9, postprocess="ultralytics", bgr=True,
                      **json.loads(spec))
    call = lambda: model(image, imgsz=imgsz, retina_masks=retina)
else:
    model = FastSAM(weights)
    call = lambda: model(image, imgsz=imgsz, retina_masks=retina, conf=conf, iou=0.9,
                         device="cpu", verbose=False)
t_load = time.perf_counter() - t1
t2 = time.perf_counter()
call()
t_first = time.perf_counter() - t2
torch.set_num_threads(threads)  # the oracle's first call sets 1 thread on a 2-core machine
t3 = time.perf_counter()
call()
t_second = time.perf_counter() - t3

def peak_rss_mb():
    # VmHWM: this process image's own high-water mark (ru_maxrss would include the parent's RSS
    # at fork time, which Linux carries across exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import_s": t_import, "load_s": t_load, "first_call_s": t_first,
                  "second_call_s": t_second, "cold_start_s": t_import + t_load + t_first,
                  "peak_rss_mb": peak_rss_mb(),
                  "threads": torch.get_num_threads()}))
"""


def cold_start(
    side: str,
    weights: Path,
    image: np.ndarray,
    imgsz: int,
    retina: bool,
    threads: int,
    variant: str,
) -> dict[str, Any]:
    """Import + load + first call in a fresh process; its peak RSS (one side per process)."""
    path = cache_dir() / f"coldstart-{os.getpid()}.npy"
    np.save(path, image)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "YOLO_CONFIG_DIR": str(cache_dir() / "ultralytics-config"),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_WORKER), side, str(weights), str(path), str(imgsz),
             "1" if retina else "0", str(threads), json.dumps(_resolved_spec(variant) if side == "ours" else {}), str(CONF)],
            capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=1800, check=False,
        )  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} cold-start worker failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        side=side, variant=variant if side == "ours" else None, imgsz=imgsz, retina=retina
    )
    result["load_average"] = load_average()
    return result


# ----------------------------------------------------------------------------- report


def _ms(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['median'] * 1e3:8.1f}±{stats['iqr'] * 1e3 / 2:<6.1f}"


def print_report(report: dict[str, Any]) -> None:
    env = report["env"]
    print(
        f"\n# end to end on {env['device_name']} ({env['threads']} threads), torch {env['torch']}, "
        f"commit {env['commit'][:12]}, load {env['load_average']}"
    )
    print(
        "\ncase                          variant   ours e2e ms       oracle e2e ms     ratio   "
        "dets o/u | ours stages ms (pre fwd nms masks prompt other) enc | oracle (pre inf post) enc"
    )
    for row in report["cases"]:
        label = f"{row['case']} {row['imgsz']} retina={'on' if row['retina'] else 'off'}" + (
            f" +{row['prompt']}" if row["prompt"] else ""
        )
        oracle = row.get("oracle")
        for variant, stages in row["ours"].items():
            parts = " ".join(f"{stages.get(s, {}).get('median', 0) * 1e3:.0f}" for s in OUR_STAGES)
            ratio = row.get("ratio", {}).get(variant)
            oracle_parts = (
                " ".join(
                    f"{oracle[k]['median'] * 1e3:.0f}"
                    for k in ("preprocess", "inference", "postprocess")
                    if k in oracle
                )
                + f" {oracle['encode']['median'] * 1e3:.0f}"
                if oracle
                else "-"
            )
            print(
                f"{label:<30}{variant:<9}{_ms(stages['total'])}  {_ms(oracle['total'] if oracle else None)}  "
                f"{(f'{ratio:5.2f}x' if ratio else '  -  ')}  {row['detections'].get('oracle', '-')}/"
                f"{row['detections'].get(variant)} | {parts} {stages['encode']['median'] * 1e3:.0f} | "
                f"{oracle_parts}"
            )
    if report.get("forward"):
        print("\nforward only (ms, GFLOP/s):")
        for row in report["forward"]:
            cells = [
                f"{k} {v['median'] * 1e3:.0f} ({v.get('gflop_per_s', 0):.1f})"
                for k, v in row.items()
                if isinstance(v, dict)
            ]
            print(f"  {tuple(row['input_hw'])} {row['gflops'] or 0:.1f} GFLOP: " + ", ".join(cells))
    if report.get("throughput"):
        print("\nthroughput (images/s):")
        for row in report["throughput"]:
            print(
                f"  {row['variant']:<8} imgsz {row['imgsz']} B={row['batch']:<3} "
                f"{row['images_per_s']:.2f} img/s ({row['seconds']['median']:.2f} s per batch)"
            )
    if report.get("cold_start"):
        print("\ncold start (fresh process; s) and peak RSS:")
        for row in report["cold_start"]:
            print(
                f"  {row['side']:<7}{row.get('variant') or '':<9} import {row['import_s']:.1f}  load "
                f"{row['load_s']:.1f}  first call {row['first_call_s']:.1f}  second {row['second_call_s']:.1f}"
                f"  peak RSS {row['peak_rss_mb']:.0f} MB"
            )
    compile_times = report.get("compile_seconds")
    if compile_times:
        print(f"\ncompile time (s, not in any timing above): {compile_times}")


def markdown(report: dict[str, Any]) -> str:
    """The side-by-side table of a report as Markdown (for bench/RESULTS.md)."""
    env = report["env"]
    lines = [
        (
            f"Machine: {env['device_name']}, {env['cpu_count']} cores, {env['threads']} torch threads; "
            f"torch {env['torch']}, triton {env['triton']}; commit {env['commit'][:12]}; load average "
            f"at start {env['load_average']}, at end {env.get('load_average_end')}."
        ),
        "",
        (
            "| case | variant | ours e2e ms (median ± IQR/2) | oracle e2e ms | oracle / ours | dets oracle/ours "
            "| ours pre / fwd / nms / masks / other ms | oracle pre / inf / post ms | RLE enc ours / oracle ms | load |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        label = f"{row['case']} {row['imgsz']} retina {'on' if row['retina'] else 'off'}"
        label += f" + {row['prompt']} prompt" if row["prompt"] else ""
        oracle = row.get("oracle", {})
        for variant, st in row["ours"].items():
            med = {k: v["median"] * 1e3 for k, v in st.items()}
            omed = {k: v["median"] * 1e3 for k, v in oracle.items()}
            lines.append(
                f"| {label} | {variant} | {med['total']:.0f} ± {st['total']['iqr'] * 5e2:.0f} | "
                f"{omed.get('total', 0):.0f} ± {oracle.get('total', {}).get('iqr', 0) * 5e2:.0f} | "
                f"**{row.get('ratio', {}).get(variant, 0):.2f}x** | {row['detections'].get('oracle', '-')}/"
                f"{row['detections'][variant]} | {med['preprocess']:.0f} / {med['forward']:.0f} / "
                f"{med['nms']:.0f} / {med['masks']:.0f} / {med['other']:.0f} | {omed.get('preprocess', 0):.0f} / "
                f"{omed.get('inference', 0):.0f} / {omed.get('postprocess', 0):.0f} | {med['encode']:.0f} / "
                f"{omed.get('encode', 0):.0f} | {row['load_average'][0]:.1f} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny model, 1 repeat")
    parser.add_argument(
        "--scale", default="s", help="oracle checkpoint scale when --checkpoint is not given"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="ultralytics .pt (default: cached oracle-made one)"
    )
    parser.add_argument(
        "--images", nargs="+", help=f"file names in {IMAGES_DIR} (default dogs.jpg sa_862.jpg)"
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
        args.batch_sizes, args.images = [1, 2], args.images or ["dogs.jpg"]
        args.conf = 0.05 if args.conf == CONF else args.conf  # random tiny net: some detections
        args.variants = [v for v in args.variants if v != "compile"]
    return args


def main(argv: list[str] | None = None) -> int:
    global CONF, THREADS
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    CONF, THREADS = args.conf, args.threads
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    oracle_cls = None if args.no_oracle else import_oracle(args.threads)
    checkpoint = args.checkpoint or oracle_checkpoint_for(args.scale, args.quick)
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
