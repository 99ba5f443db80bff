"""Prompt flags shared by CLI commands: --box, --point, --text and their options (issue #4)."""

from __future__ import annotations

import argparse
import math
from typing import Any


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "prompts", "select masks instead of returning everything (original-image pixels)"
    )
    group.add_argument(
        "--box",
        action="append",
        metavar="X1,Y1,X2,Y2",
        help="box prompt (repeatable): one mask per box, in the given order",
    )
    group.add_argument(
        "--box-format",
        choices=("xyxy", "xywh"),
        default="xyxy",
        help="--box values are x1,y1,x2,y2 (default) or x,y,width,height",
    )
    group.add_argument(
        "--box-rule",
        choices=("official", "ultralytics"),
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
        "--clip-to-image",
        action="store_true",
        help="clip boxes/points outside the image instead of failing",
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


def prompt_kwargs(args: argparse.Namespace) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(prompts for `prompts.prompt` or None, prompt options) from the parsed flags."""
    options: dict[str, Any] = {
        "box_format": args.box_format,
        "box_rule": args.box_rule or args.postprocess,
        "box_no_match": args.box_no_match,
        "point_mode": args.point_mode,
        "clip": args.clip_to_image,
        "text_rule": args.text_rule,
        "text_top_k": args.text_top_k,
        "text_threshold": args.text_threshold,
        "output": args.prompt_output,
        "clip_model": args.clip_model,
        "clip_pretrained": args.clip_weights,
    }
    prompts: dict[str, Any] = {}
    if args.box:
        form = "x,y,width,height" if args.box_format == "xywh" else "x1,y1,x2,y2"
        prompts["boxes"] = [
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
        prompts["points"] = [r[:2] for r in rows]
        prompts["labels"] = [int(r[2]) if len(r) == 3 else 1 for r in rows]
    if args.text:
        from fastsam_core.prompts.inputs import parse_texts  # lazy: keeps `fastsam --help` fast

        prompts["texts"] = parse_texts(list(args.text))  # empty or blank texts fail here
    return (prompts or None), options
