"""`fastsam eval --data D --model M [--task T]`: COCO box and mask AP/AR (needs the `eval` extra),
or one of the paper's other tasks (`fastsam_core.tasks`): proposal AR, BSDS edge ODS/OIS/AP/R50,
box-prompted mask AP from a detector's boxes."""

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
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:N")
    p.add_argument(
        "--task",
        choices=("instances", "proposals", "edges", "box-prompted"),
        default="instances",
        help="instances: COCO AP (default); proposals: class-agnostic AR@10/100/1000; edges: BSDS "
        "ODS/OIS/AP/R50 (--data may also be a folder with images/ and boundaries/); "
        "box-prompted: mask AP of a detector's boxes as prompts (--boxes)",
    )
    p.add_argument(
        "--boxes", default=None, metavar="DETECTIONS.json", help="box-prompted: COCO results file"
    )
    p.add_argument(
        "--conf", type=float, default=None, help="default 0.001 (edges, box-prompted: 0.4)"
    )
    p.add_argument("--iou", type=float, default=None, help="default 0.7 (edges, box-prompted: 0.9)")
    p.add_argument(
        "--max-det", type=int, default=None, help="default 100 (proposals 1000, edges 300)"
    )
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
    if args.task != "instances":
        return _run_task(args)
    if args.boxes is not None:
        raise ValueError("--boxes DETECTIONS.json is only used by --task box-prompted")
    from fastsam_core.eval.coco import evaluate_model

    given = {"conf": args.conf, "iou": args.iou, "max_det": args.max_det}
    metrics = evaluate_model(
        args.model,
        args.data,
        imgsz=args.imgsz,
        device=args.device,
        class_agnostic=args.class_agnostic or args.single_class,
        split=args.split,
        **{k: v for k, v in given.items() if v is not None},  # else evaluate_model's defaults
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


def _run_task(args: argparse.Namespace) -> int:
    """proposals / edges / box-prompted: one `NAME VALUE` line per metric (`AR@100 0.473`)."""
    from fastsam_core.tasks import TASK_METRICS, evaluate_task

    metrics = evaluate_task(
        args.task, args.model, args.data, boxes=args.boxes, imgsz=args.imgsz, device=args.device,
        conf=args.conf, iou=args.iou, max_det=args.max_det, split=args.split,
    )  # fmt: skip
    for name in TASK_METRICS[args.task]:
        print(f"{name} {metrics[name]:.3f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(metrics, f, indent=1)
    return 0
