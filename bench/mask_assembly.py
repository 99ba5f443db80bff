"""Mask assembly backends x N x resolution: wall time and peak memory (issue #5, STYLE §10).

Question: how much faster and leaner than the reference (`ops.masks`, dense (N, H, W) masks) are the
region-only backends (`fastsam_kernels.mask_assembly`)?

Inputs are synthetic but shaped like FastSAM's dense "everything" case on a 1500x2250 photo: 32
prototypes at 1/4 of the letterbox input (randn), coefficients randn * 0.5, and N boxes in letterbox
pixels inside the content area: box 0 is the whole image (FastSAM's full-image box), the others have
log-uniform sides between 3 % and 60 % of the image side (seeded). The official post-processing with
logit > 0 (the predictor default) is timed. Every backend's masks are checked against the reference
(per-mask pixel counts) in the same run.

Resolutions: "640" and "1024" = letterbox-resolution masks (retina off) at imgsz 640 / 1024;
"retina" = original-resolution masks (1500x2250) at imgsz 1024.

Usage:
    python -m bench.mask_assembly                # full grid on CPU (slow: the reference takes minutes)
    python -m bench.mask_assembly --device cuda  # adds the Triton kernel
    python -m bench.mask_assembly --quick        # CI smoke test: 640, N=10, reference + eager
Writes bench/results/mask_assembly-<device>-<UTC>.json and prints a table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import (
    device_sync,
    env_info,
    peak_memory,
    release_freed_memory,
    summarize,
    write_json,
)
from fastsam_core.mask_backends import get_mask_backend
from fastsam_core.ops.boxes import scale_boxes
from fastsam_core.ops.letterbox import LetterboxGeometry, letterbox_geometry

ORIG_HW = (1500, 2250)
RESOLUTIONS = {"640": (640, False), "1024": (1024, False), "retina": (1024, True)}  # imgsz, retina
COUNTS = (10, 100, 300)
SLOW_S = 3.0  # a backend whose first call takes longer gets only 2 timed calls


def make_case(resolution: str, n: int, seed: int = 0) -> dict[str, Any]:
    """Synthetic protos, coefficients and boxes (see module docstring) for one grid cell."""
    imgsz, retina = RESOLUTIONS[resolution]
    geometry = letterbox_geometry(ORIG_HW, imgsz)
    in_h, in_w = geometry.input_hw
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(32, in_h // 4, in_w // 4, generator=gen)
    coeffs = torch.randn(n, 32, generator=gen) * 0.5
    content = torch.tensor([geometry.resized_hw[1], geometry.resized_hw[0]], dtype=torch.float32)
    low, high = math.log(0.03), math.log(0.6)
    sides = torch.exp(torch.empty(n, 2).uniform_(low, high, generator=gen)) * content  # (N, 2) w, h
    corner = torch.rand(n, 2, generator=gen) * (content - sides)
    offset = torch.tensor([geometry.pad_left, geometry.pad_top], dtype=torch.float32)
    boxes = torch.cat([corner, corner + sides], 1) + offset.repeat(2)  # (N, 4) letterbox px
    boxes[0] = torch.cat([offset, offset + content])  # the full-image box
    return {
        "geometry": geometry,
        "protos": protos,
        "coeffs": coeffs,
        "boxes_input": boxes,
        "boxes_orig": scale_boxes(boxes, geometry, rule="official"),
        "retina": retina,
    }


def _frame_pixels(geometry: LetterboxGeometry, retina: bool) -> int:
    h, w = geometry.orig_hw if retina else geometry.input_hw
    return h * w


def run_backend(
    name: str, case: dict[str, Any], device: torch.device, repeats: int
) -> dict[str, Any]:
    """First call (compile/warm-up), timed calls (peak memory measured on the first), pixel counts."""
    backend = get_mask_backend(name)  # explicit name: no fallback
    args = [
        case[k].to(device) if isinstance(case[k], torch.Tensor) else case[k]
        for k in ("protos", "coeffs", "boxes_input", "boxes_orig", "geometry")
    ]

    def call() -> Any:
        return backend(*args, retina=case["retina"], postprocess="official", mask_rule="logit")

    device_sync(device)
    start = time.perf_counter()
    masks = call()
    device_sync(device)
    first = time.perf_counter() - start
    areas = masks.areas().cpu()
    stored = int(masks.data.numel())
    del masks
    reps = repeats if first < SLOW_S else min(repeats, 2)
    samples, peak = [], None
    for i in range(reps):
        start = time.perf_counter()
        if i == 0:
            peak = peak_memory(call, device)
        else:
            call()
            device_sync(device)
        samples.append(time.perf_counter() - start)
    stats = summarize(samples)
    return {
        "backend": name,
        "median_ms": stats.median * 1e3,
        "iqr_ms": stats.iqr * 1e3,
        "repeats": reps,
        "first_call_ms": first * 1e3,
        "compile_ms": max(first - stats.median, 0.0) * 1e3,
        "peak_bytes": peak,
        "stored_pixels": stored,
        "areas": areas,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backends",
        default=None,
        help="comma list (default: reference,eager,compiled, plus triton on CUDA)",
    )
    parser.add_argument("--resolutions", default=",".join(RESOLUTIONS))
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (1 gives stable numbers on a loaded machine)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 640, N=10, reference+eager, 2 repeats"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default bench/results/...)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    release_freed_memory()  # CPU peak memory: freed blocks must leave the resident set
    if args.quick:
        backends = (args.backends or "reference,eager").split(",")
        resolutions, counts, repeats = ["640"], [10], 2
    else:
        default = "reference,eager,compiled" + (",triton" if device.type == "cuda" else "")
        # (triton on CPU would run in the interpreter: correct but meaningless as a timing)
        backends = (args.backends or default).split(",")
        resolutions = args.resolutions.split(",")
        counts = [int(c) for c in args.counts.split(",")]
        repeats = args.repeats
    rows = []
    print(
        f"{'resolution':>10} {'N':>4} {'backend':>10} {'median ms':>10} {'iqr':>7} {'first ms':>9} "
        f"{'peak MB':>8} {'speedup':>8} {'mem ratio':>9} {'area diff':>9}"
    )
    for resolution in resolutions:
        for n in counts:
            case = make_case(resolution, n)
            results = [run_backend(name, case, device, repeats) for name in backends]
            ref = next((r for r in results if r["backend"] == "reference"), None)
            for r in results:
                r.update(
                    resolution=resolution,
                    n=n,
                    retina=case["retina"],
                    frame_pixels=_frame_pixels(case["geometry"], case["retina"]),
                    proto_hw=list(case["protos"].shape[1:]),
                    mask_pixels_set=int(r["areas"].sum()),
                )
                if ref is not None:  # correctness in the same run: per-mask pixel counts
                    r["max_area_diff_vs_reference"] = (
                        int((r["areas"] - ref["areas"]).abs().max()) if n else 0
                    )
                    r["speedup_vs_reference"] = ref["median_ms"] / r["median_ms"]
                    if ref["peak_bytes"] and r["peak_bytes"]:
                        r["memory_ratio_vs_reference"] = r["peak_bytes"] / ref["peak_bytes"]
            for r in results:
                peak = r["peak_bytes"] / 2**20 if r["peak_bytes"] is not None else float("nan")
                print(
                    f"{resolution:>10} {n:>4} {r['backend']:>10} {r['median_ms']:>10.1f} {r['iqr_ms']:>7.1f} "
                    f"{r['first_call_ms']:>9.1f} {peak:>8.1f} {r.get('speedup_vs_reference', float('nan')):>8.1f} "
                    f"{r.get('memory_ratio_vs_reference', float('nan')):>9.3f} "
                    f"{r.get('max_area_diff_vs_reference', 0):>9}"
                )
            for r in results:
                del r["areas"]
                rows.append(r)
            sys.stdout.flush()
    payload = {
        "environment": env_info(device),
        "question": "mask assembly backends x N x resolution",
        "postprocess": "official",
        "mask_rule": "logit",
        "coeff_dtype": "float32",
        "orig_hw": list(ORIG_HW),
        "quick": args.quick,
        "results": rows,
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = (
        args.out
        or Path(__file__).resolve().parent / "results" / f"mask_assembly-{device.type}-{stamp}.json"
    )
    print(f"wrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
