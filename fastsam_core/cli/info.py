"""`fastsam info MODEL [--imgsz 1024] [--flops] [--features]`: config, parameters and FLOPs per
part, and the names `model.capture(...)` accepts with their shapes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    parser.add_argument(
        "--features",
        action="store_true",
        help="list the feature names of `model.capture(...)` with their shapes at --imgsz",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastsam_core.model.flops import count_flops, count_parameters
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
    print(f"backbone:   {cfg.backbone}")
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
    if args.features:
        _print_features(model, args.imgsz)
    return 0


def _print_features(model: Any, imgsz: int) -> None:
    """Each capture name, its shape for one (1, 3, imgsz, imgsz) input, and what it holds."""
    import torch

    from fastsam_core.model.capture import FEATURES

    if imgsz <= 0 or imgsz % 32:
        raise ValueError(f"--imgsz must be a positive multiple of 32, got {imgsz}")
    with torch.device("meta"):  # shapes only: no compute, no memory
        skeleton = type(model)(model.cfg).eval()
        with torch.no_grad(), skeleton.capture(*FEATURES) as feats:
            skeleton(torch.zeros(1, 3, imgsz, imgsz))
    print(f"features @ {imgsz}x{imgsz} (with model.capture(NAME, ...) as feats: model(x)):")
    for name, (_, _, what) in FEATURES.items():
        print(f"  {name:<18} {tuple(feats[name].shape)!s:<22} {what}")


def __getattr__(name: str) -> Any:
    """`count_flops` / `count_parameters` moved to `fastsam_core.model.flops` (issue 11); this
    forward keeps `bench/` and `tests/e2e/test_cli_convert.py` working until they import it there.
    """
    if name in ("count_flops", "count_parameters"):
        from fastsam_core.model import flops

        return getattr(flops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
