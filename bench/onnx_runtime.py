"""The torch-free runtime side by side with our torch path and the oracle (issue #14 targets).

One run, same checkpoint and photos on every side (BGR arrays decoded once with cv2; both of our
sides use the "ultralytics" post-processing, as the oracle does):

* parity: exported fp32 graph (dynamic H/W) vs our torch `fast` path: detections, largest box
  difference, mean mask IoU of the rows (pycocotools on the RLEs), box and point prompt rows;
* speed: forward only and end to end (median of `--repeats`) of torch fast, ONNX fp32, ONNX INT8
  and the oracle's `FastSAM.predict`, sparse (dogs.jpg) and dense (sa_862.jpg) at 640 and 1024;
  INT8's mean mask IoU to fp32;
* cold start: one `fastsam segment` process (import + load + first image, 640 px) with the graph
  vs with the converted weights, wall time and peak RSS (`/usr/bin/time`);
* install size: the runtime-only environment (a fresh venv with `FASTSAM_RUNTIME_ONLY=1` wheel +
  the `runtime` extra) vs torch and its dependency closure in this environment.

    python -m bench.onnx_runtime --checkpoint <FastSAM-s .pt> [--imgsz 640 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import REPO_ROOT, env_info, load_average, summarize
from bench.end_to_end_inputs import cache_dir, converted, load_images, official_checkpoint
from bench.oracle_side import import_oracle, oracle_call

CONF, IOU = 0.4, 0.9


def export_graph(weights: Path, int8: bool, calib: Path | None, calib_count: int) -> Path:
    """Dynamic-size graph of `weights` (fp32, or INT8 calibrated on `calib`), cached."""
    tag = "int8" if int8 else "fp32"
    out = cache_dir() / f"{weights.stem}-dynamic-{tag}.onnx"
    if out.exists():
        return out
    cmd = [sys.executable, "-m", "fastsam_core.cli", "export", str(weights), str(out), "--dynamic",
           "--postprocess", "ultralytics", "--imgsz", "1024"]  # fmt: skip
    if int8:
        cmd += ["--int8", "--calib", str(calib), "--calib-count", str(calib_count)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"export failed:\n{done.stderr[-3000:]}")
    print(done.stdout.strip(), file=sys.stderr)
    return out


def iou_matrix(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> np.ndarray:
    """(N, M) mask IoU of two lists of COCO RLEs (pycocotools)."""
    from pycocotools import mask as mask_utils

    def coco(rles: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"size": r["size"], "counts": r["counts"]} for r in rles]

    return np.asarray(mask_utils.iou(coco(ours), coco(theirs), [0] * len(theirs))).reshape(
        len(ours), len(theirs)
    )


def compare(first: Any, second: Any) -> dict[str, Any]:
    """Detections of one image's two results; each row of `first` paired with the row of
    `second` whose mask overlaps it most (rows with equal scores may come in either order):
    mean / min of those IoUs and the largest box difference of the pairs."""
    n1, n2 = len(first), len(second)
    row: dict[str, Any] = {"detections": [n1, n2]}
    if n1 == 0 or n2 == 0:
        same = n1 == n2
        row.update(box_max_diff=None, mean_mask_iou=1.0 if same else 0.0, min_mask_iou=None)
        return row
    matrix = iou_matrix(first.to_rle(), second.to_rle())  # (N1, N2)
    best = matrix.argmax(1)
    boxes1, boxes2 = np.asarray(first.boxes), np.asarray(second.boxes)
    row["box_max_diff"] = float(np.abs(boxes1 - boxes2[best]).max())
    row.update(mean_mask_iou=float(matrix.max(1).mean()), min_mask_iou=float(matrix.max(1).min()))
    return row


def timed(fn: Any, warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return summarize(samples).to_dict()


def forward_inputs(image: np.ndarray, imgsz: int) -> torch.Tensor:
    """(1, 3, H, W) uint8 letterbox of a BGR image, as both predictors build it."""
    from fastsam_core.ops.letterbox import letterbox_batch, letterbox_geometry

    rgb = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1]))
    geometry = letterbox_geometry(rgb.shape[:2], imgsz, stride=32, auto=True)
    return letterbox_batch([rgb], [geometry])


def cold_start(args: list[str], threads: int) -> dict[str, float]:
    """Wall time and peak RSS of one `fastsam ...` process (`/usr/bin/time -f`)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["/usr/bin/time", "-f", "TIME %e %M", sys.executable, "-m", "fastsam_core.cli",
               *args, "--out", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    match = re.search(r"TIME ([\d.]+) (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"cold start failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    return {"wall_s": float(match.group(1)), "peak_rss_mb": int(match.group(2)) / 1024}


def distribution_mb(name: str, seen: set[str]) -> float:
    """On-disk MB of distribution `name` and its (transitive, unconditional) requirements."""
    key = name.lower().replace("_", "-")
    if key in seen:
        return 0.0
    seen.add(key)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return 0.0
    size = sum((f.size or 0) for f in dist.files or [])
    for req in dist.requires or []:
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue
        dep = re.split(r"[ ;<>=!~\[(]", req.strip(), maxsplit=1)[0]
        size += distribution_mb(dep, seen) * 1e6
    return size / 1e6


def runtime_install_mb() -> float:
    """MB of a fresh venv's site-packages after installing the runtime-only wheel [runtime]."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.wheels import build_wheel, clean_env

    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp) / "build", FASTSAM_RUNTIME_ONLY="1")
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[runtime]"],
            check=True, env=clean_env(),
        )  # fmt: skip
        site = next((venv / "lib").glob("python*/site-packages"))
        skip = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth")
        total = sum(
            f.stat().st_size
            for f in site.rglob("*")
            if f.is_file() and f.relative_to(site).parts[0].split("-")[0] not in skip
        )
    return total / 1e6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="ultralytics .pt (default: FastSAM-s)")
    parser.add_argument("--images", nargs="+", default=["dogs.jpg", "sa_862.jpg"])
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--calib", type=Path, default=REPO_ROOT.parent / "shared" / "images")
    parser.add_argument("--calib-count", type=int, default=8)
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--no-install-size", action="store_true")
    parser.add_argument(
        "--json", type=Path, default=REPO_ROOT / "bench" / "results" / "onnx_runtime.json"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fastsam_core.onnxrt.predictor import OnnxPredictor
    from fastsam_core.predictor import Predictor

    torch.set_num_threads(args.threads)
    oracle_cls = None if args.no_oracle else import_oracle(args.threads)
    checkpoint = args.checkpoint or official_checkpoint("s")
    weights = converted(checkpoint)
    images = load_images(args.images, quick=False)  # name -> BGR
    graphs = {"onnx_fp32": export_graph(weights, False, None, 0)}
    if not args.no_int8:
        graphs["onnx_int8"] = export_graph(weights, True, args.calib, args.calib_count)
    common = {"conf": CONF, "iou": IOU, "postprocess": "ultralytics", "bgr": True}
    ours = Predictor(weights, **common)  # type: ignore[arg-type]
    runtimes = {k: OnnxPredictor(g, threads=args.threads, **common) for k, g in graphs.items()}
    oracle = None if oracle_cls is None else oracle_cls(str(checkpoint))
    report: dict[str, Any] = {
        "env": env_info(torch.device("cpu")), "checkpoint": str(checkpoint),
        "onnxruntime": metadata.version("onnxruntime"), "cases": [],
    }  # fmt: skip
    for name, image in images.items():
        for imgsz in args.imgsz:
            row = measure_case(name, image, imgsz, ours, runtimes, oracle, args)
            report["cases"].append(row)
            print(json.dumps(row), file=sys.stderr)
    if not args.no_cold_start:
        photo = next(d / args.images[0] for d in _image_dirs() if (d / args.images[0]).exists())
        base = ["segment", str(photo), "--imgsz", "640", "--format", "json"]
        report["cold_start"] = {
            "torch": cold_start([*base, "--model", str(weights)], args.threads),
            "onnx_fp32": cold_start([*base, "--model", str(graphs["onnx_fp32"])], args.threads),
        }
    if not args.no_install_size:
        report["install_mb"] = {
            "runtime_venv": runtime_install_mb(),
            "torch_closure_here": distribution_mb("torch", set()),
        }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(markdown(report))
    return 0


def measure_case(
    name: str,
    image: np.ndarray,
    imgsz: int,
    ours: Any,
    runtimes: dict[str, Any],
    oracle: Any,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Parity, prompts, INT8 agreement, forward and end-to-end times of one photo at one size."""
    h, w = image.shape[:2]
    box, point = [w * 0.25, h * 0.25, w * 0.75, h * 0.75], [[w * 0.5, h * 0.5]]
    fp32_runtime = runtimes["onnx_fp32"]
    row: dict[str, Any] = {"image": name, "imgsz": imgsz, "load_average": load_average()}
    fp32 = fp32_runtime(image, imgsz=imgsz)[0]
    row["parity"] = compare(ours(image, imgsz=imgsz)[0], fp32)
    row["box_prompt"] = compare(
        ours(image, imgsz=imgsz, boxes=[box])[0], fp32_runtime(image, imgsz=imgsz, boxes=[box])[0]
    )
    row["point_prompt"] = compare(
        ours(image, imgsz=imgsz, points=point, labels=[1])[0],
        fp32_runtime(image, imgsz=imgsz, points=point, labels=[1])[0],
    )
    if "onnx_int8" in runtimes:
        row["int8_vs_fp32"] = compare(fp32, runtimes["onnx_int8"](image, imgsz=imgsz)[0])
    batch = forward_inputs(image, imgsz)
    x, array = ours.runner.to_input(batch), batch.numpy()
    with torch.inference_mode():
        row["forward"] = {"torch_fast": timed(lambda: ours.runner(x), 1, args.repeats)}
    e2e = {"torch_fast": timed(lambda: ours(image, imgsz=imgsz), args.warmup, args.repeats)}
    for key, runtime in runtimes.items():
        row["forward"][key] = timed(lambda r=runtime: r.network(array), 1, args.repeats)
        e2e[key] = timed(lambda r=runtime: r(image, imgsz=imgsz), args.warmup, args.repeats)
    if oracle is not None:
        kwargs = {"imgsz": imgsz, "conf": CONF, "iou": IOU, "retina_masks": True,
                  "device": "cpu", "verbose": False}  # fmt: skip
        e2e["oracle"] = timed(
            lambda: oracle_call(oracle, image, **kwargs), args.warmup, args.repeats
        )
    row["e2e"] = e2e
    return row


def _image_dirs() -> list[Path]:
    from bench.end_to_end_inputs import IMAGES_DIRS

    return IMAGES_DIRS


def markdown(report: dict[str, Any]) -> str:
    """The RESULTS.md tables of a report."""
    lines = [
        "| image | imgsz | dets torch/onnx | box max diff | mean (min) mask IoU | "
        "box / point prompt IoU | INT8 vs fp32 IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["cases"]:
        p, i8 = c["parity"], c.get("int8_vs_fp32", {})

        def iou(d: dict[str, Any]) -> str:
            v = d.get("mean_mask_iou")
            return "-" if v is None else f"{v:.4f}"

        lines.append(
            f"| {c['image']} | {c['imgsz']} | {p['detections'][0]}/{p['detections'][1]} | "
            f"{p['box_max_diff'] if p['box_max_diff'] is None else round(p['box_max_diff'], 4)} "
            f"| {iou(p)} ({p['min_mask_iou'] if p['min_mask_iou'] is None else round(p['min_mask_iou'], 4)}) "  # noqa: E501
            f"| {iou(c['box_prompt'])} / {iou(c['point_prompt'])} | {iou(i8)} |"
        )
    sides = list(report["cases"][0]["e2e"]) if report["cases"] else []
    lines += ["", "| image | imgsz | forward ms: " + " / ".join(report["cases"][0]["forward"])
              + " | end to end ms: " + " / ".join(sides) + " | oracle / ours (e2e) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for c in report["cases"]:
        fwd = " / ".join(f"{v['median'] * 1e3:.0f}" for v in c["forward"].values())
        e2e = " / ".join(f"{c['e2e'][s]['median'] * 1e3:.0f}" for s in sides)
        ratio = ""
        if "oracle" in c["e2e"]:
            o = c["e2e"]["oracle"]["median"]
            ratio = ", ".join(
                f"{s} {o / c['e2e'][s]['median']:.2f}x" for s in sides if s != "oracle"
            )
        lines.append(f"| {c['image']} | {c['imgsz']} | {fwd} | {e2e} | {ratio} |")
    if "cold_start" in report:
        cs = report["cold_start"]
        lines += [
            "",
            "| cold start (640 px, one process) | wall s | peak RSS MB |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['wall_s']:.2f} | {v['peak_rss_mb']:.0f} |" for k, v in cs.items()]
    if "install_mb" in report:
        mb = report["install_mb"]
        lines += [
            "",
            f"Install size: runtime-only venv {mb['runtime_venv']:.0f} MB; torch and its "
            f"requirements in this environment {mb['torch_closure_here']:.0f} MB.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
