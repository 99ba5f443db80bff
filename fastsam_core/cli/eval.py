"""`fastsam eval --data D --model M`: COCO box and mask AP/AR (needs the `eval` extra)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="COCO box/mask AP and AR of a model on a dataset (pip install fastsam-core[eval])",
        description="Run the model over every image of a COCO .json or YOLO-seg .yaml (its 'val' "
        "split) and score boxes and masks with pycocotools.",
    )
    p.add_argument("--data", required=True, help="COCO annotations .json or dataset .yaml")
    p.add_argument("--model", required=True, help="fastsam-s, fastsam-x or a .safetensors/.pt path")
    p.add_argument("--imgsz", type=int, default=None, help="inference size (default: the model's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--conf", type=float, default=0.001)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--max-det", type=int, default=100)
    p.add_argument("--split", default="val", help="YAML entry to evaluate")
    p.add_argument(
        "--class-agnostic", action="store_true", help="one category for all objects (FastSAM style)"
    )
    p.add_argument("--single-class", action="store_true", help="alias of --class-agnostic")
    p.add_argument(
        "--json", dest="json_out", default=None, help="also write the metrics to this file"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastsam_core.eval.coco import evaluate_model

    metrics = evaluate_model(
        args.model,
        args.data,
        imgsz=args.imgsz,
        device=args.device,
        class_agnostic=args.class_agnostic or args.single_class,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        split=args.split,
    )
    for name in (
        "box_map",
        "box_map50",
        "box_map75",
        "mask_map",
        "mask_map50",
        "mask_map75",
        "mask_ar100",
    ):
        print(f"{name:12s} {metrics[name]:.4f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(metrics, f, indent=1)
    return 0
