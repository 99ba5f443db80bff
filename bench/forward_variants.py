"""Forward pass only: which network fast path wins on this machine (issue 6, "keep only what wins").

    python -m bench.forward_variants --scale s --imgsz 640 --variants eager_nchw eager_cl compile_cl compile_cl_freeze

Every variant runs the same fused fp32 FastSAM network on the same input; repeats are interleaved
across variants (round robin) so load changes hit all alike. Compile time is reported separately.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import env_info, load_average, summarize, write_json

CEILINGS = ("matmul_2048", "conv3x3_256")
VARIANTS = (
    "eager_nchw",
    "eager_cl",
    "eager_cl_bf16",
    "compile_cl",
    "compile_cl_freeze",
    "compile_cl_dynamic",
)


def ceiling(name: str) -> tuple[Any, torch.Tensor, float]:
    """(callable, input, GFLOP per call): a large sgemm, and a 3x3 conv at FastSAM's P3 width
    (channels_last oneDNN): what this machine's PyTorch reaches at best."""
    if name == "matmul_2048":
        a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
        return (lambda x: torch.mm(x, b)), a, 2 * 2048**3 / 1e9
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 256, 80, 80).contiguous(memory_format=torch.channels_last)
    return conv, x, 2 * 256 * 256 * 9 * 80 * 80 / 1e9


def build(variant: str, model: torch.nn.Module, x: torch.Tensor) -> tuple[Any, torch.Tensor, float]:
    """(callable, input, compile seconds) for one variant."""
    import copy

    net = copy.deepcopy(model)
    if variant == "eager_nchw":
        return net, x, 0.0
    net = net.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    if variant == "eager_cl":
        return net, xc, 0.0
    if variant == "eager_cl_bf16":

        def bf16(inp: torch.Tensor) -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(inp)

        return bf16, xc, 0.0
    options = {"freezing": True} if variant == "compile_cl_freeze" else None
    compiled = torch.compile(
        net, options=options, dynamic=True if variant.endswith("dynamic") else None
    )
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(xc)
    return compiled, xc, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from fastsam_core.cli.info import count_flops
    from fastsam_core.config import yolov8_seg_config
    from fastsam_core.model.fuse import fuse_conv_bn
    from fastsam_core.model.yolov8_seg import YoloV8Seg

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["eager_nchw", "eager_cl", "compile_cl_freeze"],
        choices=VARIANTS,
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default="bench/results/forward_variants.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = yolov8_seg_config(args.scale)
    model = fuse_conv_bn(YoloV8Seg(cfg)).eval()
    x = torch.rand(1, 3, args.imgsz, args.imgsz)
    gflops = count_flops(cfg, args.imgsz)["total"] / 1e9
    runners, compile_s = {}, {}
    with torch.inference_mode():
        ref = model(x)
        for v in args.variants:
            fn, inp, compile_s[v] = build(v, model, x)
            out = fn(inp)  # warm-up (not timed)
            err = float((out.protos.float() - ref.protos).norm() / ref.protos.norm())
            runners[v] = (fn, inp, err)
            print(f"{v}: compile {compile_s[v]:.1f} s, protos rel err {err:.1e}", flush=True)
        ceilings = {name: ceiling(name) for name in CEILINGS}
        samples: dict[str, list[float]] = {v: [] for v in [*args.variants, *CEILINGS]}
        for _ in range(args.repeats):
            for v, (fn, inp, _) in runners.items():
                start = time.perf_counter()
                fn(inp)
                samples[v].append(time.perf_counter() - start)
            for name, (fn, inp, _) in ceilings.items():
                fn(inp)
                start = time.perf_counter()
                for _ in range(5):
                    fn(inp)
                samples[name].append((time.perf_counter() - start) / 5)
    rows = {}
    for v in args.variants:
        s = summarize(samples[v])
        rows[v] = {
            **s.to_dict(),
            "gflop_per_s": gflops / s.median,
            "compile_s": compile_s[v],
            "rel_err": runners[v][2],
        }
        print(
            f"{v:<20} {s.median * 1e3:8.1f} ms (IQR {s.iqr * 1e3:.1f})  {gflops / s.median:6.1f} GFLOP/s"
        )
    for name, (_, _, gflop) in ceilings.items():
        c = summarize(samples[name])
        rows[name] = {**c.to_dict(), "gflop_per_s": gflop / c.median}
        print(
            f"{name:<20} {c.median * 1e3:8.1f} ms (IQR {c.iqr * 1e3:.1f})  {gflop / c.median:6.1f} GFLOP/s (ceiling)"
        )
    write_json(
        args.json,
        {
            "env": env_info("cpu"),
            "scale": args.scale,
            "imgsz": args.imgsz,
            "gflops": gflops,
            "variants": rows,
            "load_average_end": load_average(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
