"""`fastsam export MODEL OUT.onnx`: the network + box decoding as one ONNX graph (issue 14)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fastsam_core.ops.references import POSTPROCESS_NAMES  # stdlib-only module


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to an .onnx graph for the torch-free runtime",
        description="Export a FastSAM / YOLOv8-seg model as one .onnx file: the network, DFL box "
        "decoding, anchors and sigmoid scores, with the metadata the runtime needs. Run it with "
        "`fastsam segment IMG --model OUT.onnx` (numpy + pillow + onnxruntime, no PyTorch).",
    )
    parser.add_argument("model", help="fastsam-s, fastsam-x, or a .pt/.safetensors path")
    parser.add_argument("output", help="destination .onnx file")
    parser.add_argument(
        "--imgsz",
        type=int,
        nargs="+",
        metavar="N",
        default=None,
        help="input size: N (square) or H W, rounded up to multiples of 32 (default: the "
        "checkpoint's, 1024 for FastSAM); the default letterbox size with --dynamic",
    )
    parser.add_argument(
        "--dynamic", action="store_true", help="free input height and width (multiples of 32)"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, min 18)")
    parser.add_argument(
        "--half", action="store_true", help="fp16 network (uint8 input, float32 outputs)"
    )
    parser.add_argument(
        "--postprocess",
        choices=POSTPROCESS_NAMES,
        default="official",
        help="whose Conv+BN fuse formula to bake in (default official; match segment's)",
    )
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="overwrite OUTPUT if it exists (by default an existing file is never replaced)",
    )
    int8 = parser.add_argument_group("INT8 (static quantization, head and mask branch in float)")
    int8.add_argument("--int8", action="store_true", help="quantize backbone and neck to int8")
    int8.add_argument(
        "--calib", metavar="DIR_OR_GLOB", help="calibration photos (a folder or a glob pattern)"
    )
    int8.add_argument(
        "--calib-count",
        type=int,
        default=32,
        metavar="N",
        help="use at most N calibration photos (default 32)",
    )
    parser.set_defaults(func=run)


def _imgsz(values: list[int] | None) -> int | tuple[int, int] | None:
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise ValueError(f"--imgsz takes N or H W, got {len(values)} numbers {values}")


def run(args: argparse.Namespace) -> int:
    imgsz = _imgsz(args.imgsz)
    if args.int8 and not args.calib:
        raise ValueError("--int8 needs calibration photos: pass --calib DIR_OR_GLOB")
    if args.calib and not args.int8:
        raise ValueError("--calib only applies to --int8")
    if args.int8 and args.half:
        raise ValueError("--int8 and --half exclude each other; pick one")
    if args.calib_count < 1:
        raise ValueError(f"--calib-count must be >= 1, got {args.calib_count}")
    out = Path(args.output)
    if out.exists() and not args.force:  # before loading the model: fail fast
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")

    from fastsam_core.onnx_export import export_onnx

    options = {
        "imgsz": imgsz,
        "dynamic": args.dynamic,
        "opset": args.opset,
        "half": args.half,
        "postprocess": args.postprocess,
    }
    if not args.int8:
        export_onnx(args.model, out, force=args.force, **options)
    else:
        import tempfile

        from fastsam_core.onnxrt.quantize import quantize_graph

        with tempfile.TemporaryDirectory(prefix="fastsam-export-") as folder:
            fp32 = export_onnx(args.model, Path(folder) / "fp32.onnx", **options)
            report = quantize_graph(fp32, out, args.calib, count=args.calib_count, force=args.force)
        if report is not None:
            print(report.summary())
    _describe(out)
    return 0


def _describe(path: Path) -> None:
    """Print what was written, read back through the runtime (so it is known to load)."""
    from fastsam_core.onnxrt.session import OnnxNetwork

    info = OnnxNetwork(path, threads=1).info
    height, width = info.imgsz
    size = f"dynamic (default {height}x{width})" if info.dynamic else f"{height}x{width} (fixed)"
    precision = "int8" if info.int8 else "fp16" if info.half else "fp32"
    print(f"wrote {path}")
    print(f"  size:        {os.path.getsize(path) / 1e6:.1f} MB")
    print(f"  input:       images uint8 (B, 3, H, W), {size}")
    print(f"  precision:   {precision}, opset {info.opset}")
    print(f"  model:       {info.config.get('scale') or 'custom'} scale, reg_max {info.reg_max}, "
          f"{info.num_classes} classes, {info.postprocess} fused weights")  # fmt: skip
    print(f"  source:      sha256 {info.source_sha256 or 'unknown (in-memory model)'}")
