"""Prompt flags shared by CLI commands: --box, --point, --text and their options (issue #4)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from fastsam_core.ops.references import POSTPROCESS_NAMES  # typing only: no torch

if TYPE_CHECKING:
    from fastsam_core.prompts import ClipSettings, Prompts


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "prompts", "select masks instead of returning everything (original-image pixels)"
    )
    group.add_argument(
        "--box",
        action="append",
        metavar="X1,Y1,X2,Y2",
        help="box prompt (repeatable): one mask per box, in the given order; boxes reaching past "
        "the image are clipped to it. The official repo's --box_prompt [[x,y,w,h]] is "
        "--box x,y,w,h --box-format xywh",
    )
    group.add_argument(
        "--box-format",
        choices=("xyxy", "xywh"),
        default="xyxy",
        help="--box values are x1,y1,x2,y2 (default) or x,y,width,height",
    )
    group.add_argument(
        "--box-rule",
        choices=POSTPROCESS_NAMES,
        default=None,
        help="box pixel rounding rule (default: follows --postprocess)",
    )
    group.add_argument(
        "--box-no-match",
        choices=("empty", "reference"),
        default="empty",
        help="row of a box overlapping no mask: an empty mask with score 0 (default) or, as the "
        "references do, the first mask (argmax over all-zero IoUs)",
    )
    group.add_argument(
        "--point",
        action="append",
        metavar="X,Y[,LABEL]",
        help="point prompt (repeatable); label 1 = object (default), 0 = background",
    )
    group.add_argument(
        "--point-mode",
        choices=("instances", "union"),
        default="instances",
        help="each mask under a point (default) or the official single union mask",
    )
    group.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help='text prompt (repeatable), e.g. --text "a dog"; needs the clip extra',
    )
    group.add_argument(
        "--text-rule",
        choices=("top1", "topk", "threshold", "official"),
        default="top1",
        help="masks per text (default: the best one)",
    )
    group.add_argument("--text-top-k", type=int, default=None, help="masks per text for topk")
    group.add_argument(
        "--text-threshold",
        type=float,
        default=None,
        help="minimum CLIP cosine similarity for --text-rule threshold",
    )
    group.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name")
    group.add_argument(
        "--clip-weights",
        default="openai",
        help="open_clip pretrained tag or a local checkpoint file (offline)",
    )
    group.add_argument(
        "--prompt-output",
        choices=("per_prompt", "subset"),
        default="per_prompt",
        help="rows per prompt in prompt order (default) or the ultralytics subset",
    )


def _numbers(text: str, flag: str, counts: tuple[int, ...], form: str, example: str) -> list[float]:
    """Comma-separated finite numbers (checked here, before any model loads)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in counts or len(values) != len(parts):
        raise ValueError(f"{flag} takes {form}, got {text!r}; e.g. {flag} {example}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{flag} takes finite numbers, got {text!r}; e.g. {flag} {example}")
    return values


def prompt_flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The prompt flags as keywords of `make_prompts` (boxes, points, labels, texts and the
    prompt options), the numbers checked; torch-free, shared by the PyTorch path
    (`parse_prompt_flags`) and the ONNX runtime (`cli._onnx_segment.onnx_prompts`)."""
    boxes = points = labels = None
    if args.box:
        form = "x,y,width,height" if args.box_format == "xywh" else "x1,y1,x2,y2"
        boxes = [
            _numbers(b, "--box", (4,), f"four numbers {form}", "10,20,110,220") for b in args.box
        ]
    if args.point:
        rows = [_numbers(p, "--point", (2, 3), "x,y or x,y,label", "40,60,1") for p in args.point]
        for text, row in zip(args.point, rows):
            if len(row) == 3 and row[2] not in (0, 1):
                raise ValueError(
                    f"--point labels must be 0 (background) or 1 (foreground), got {text!r}; "
                    "e.g. --point 40,60,0"
                )
        points = [r[:2] for r in rows]
        labels = [int(r[2]) if len(r) == 3 else 1 for r in rows]
    return {
        "boxes": boxes,
        "points": points,
        "labels": labels,
        "texts": list(args.text) if args.text else None,
        "box_format": args.box_format,
        "box_rule": args.box_rule or args.postprocess,
        "box_no_match": args.box_no_match,
        "point_mode": args.point_mode,
        "text_rule": args.text_rule,
        "text_top_k": args.text_top_k,
        "text_threshold": args.text_threshold,
        "output": args.prompt_output,
    }


def parse_prompt_flags(args: argparse.Namespace) -> Prompts | None:
    """The prompt flags checked once into `Prompts` (None without prompts), before any model
    loads; boxes and points are clipped to each image later (`Prompts.fit`)."""
    from fastsam_core.prompts.prompt_set import make_prompts  # imports torch: only inside a run

    return make_prompts(**prompt_flag_values(args))


def clip_settings(args: argparse.Namespace) -> ClipSettings:
    """--clip-model / --clip-weights as `ClipSettings` (the run builds one scorer from them)."""
    from fastsam_core.prompts import ClipSettings

    return ClipSettings(model=args.clip_model, weights=args.clip_weights)
