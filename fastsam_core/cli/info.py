"""`fastsam info MODEL [--imgsz 1024] [--flops]`: config, parameters and FLOPs per part."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig

PARTS = ("backbone", "neck", "head")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show a model's config, parameter count and FLOPs per part",
        description="MODEL is a .pt / .safetensors file or a preset name (fastsam-s, fastsam-x; "
        "architecture only, random weights).",
    )
    parser.add_argument("model", help="model file or preset name (fastsam-s, fastsam-x)")
    parser.add_argument("--imgsz", type=int, default=1024, help="square input size for FLOPs")
    parser.add_argument("--flops", action="store_true", help="count FLOPs at --imgsz")
    parser.set_defaults(func=run)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per part (backbone, neck, head) and in total."""
    counts = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in PARTS}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def count_flops(cfg: YoloSegConfig, imgsz: int) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one (1, 3, imgsz, imgsz) forward, per part and in total.

    Runs on the meta device: shapes only, no compute and no memory.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from fastsam_core.model.yolov8_seg import YoloV8Seg

    if imgsz <= 0 or imgsz % 32:
        raise ValueError(f"--imgsz must be a positive multiple of 32, got {imgsz}")
    with torch.device("meta"):
        model = YoloV8Seg(cfg).eval()
        images = torch.zeros(1, 3, imgsz, imgsz)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    per_module = counter.get_flop_counts()
    flops = {part: int(sum(per_module.get(f"YoloV8Seg.{part}", {}).values())) for part in PARTS}
    flops["total"] = int(counter.get_total_flops())
    return flops


def run(args: argparse.Namespace) -> int:
    from fastsam_core.model.yolov8_seg import MODEL_REGISTRY
    from fastsam_core.weights import load_model

    if args.model in MODEL_REGISTRY:
        model = MODEL_REGISTRY[args.model]()
        source = f"preset {args.model}: architecture only, RANDOM weights (not a trained model)"
    elif Path(args.model).exists() or Path(args.model).suffix:
        model = load_model(args.model)
        source = f"file {args.model}"
    else:
        raise ValueError(
            f"{args.model!r} is neither a model file nor a preset; presets: "
            f"{sorted(MODEL_REGISTRY)}"
        )
    cfg = model.cfg
    print(f"model:      {source}")
    print(f"scale:      {cfg.scale or 'custom'}")
    print(f"channels:   {list(cfg.channels)} (stem, P2, P3, P4, P5)")
    print(f"depths:     {list(cfg.depths)} (C2f repeats P2..P5), neck {cfg.neck_depth}")
    print(
        f"head:       reg_max {cfg.reg_max}, {cfg.num_classes} classes "
        f"{list(cfg.class_names) if cfg.class_names else ''}, {cfg.num_mask_coeffs} mask "
        f"coefficients, proto {cfg.proto_channels}, class-branch width {cfg.class_hidden}"
    )
    print(f"imgsz:      {cfg.imgsz} (default inference size), bn_eps {cfg.bn_eps}")
    params = count_parameters(model)
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()))
    if args.flops:
        flops = count_flops(cfg, args.imgsz)
        print(
            f"GFLOPs @ {args.imgsz}x{args.imgsz}: "
            + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in flops.items())
        )
    return 0
