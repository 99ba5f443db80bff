"""`fastsam segment --model X.onnx`: the torch-free runtime behind the same flags (issue 14).

`cli.segment` routes here on the `.onnx` suffix: the predictor is `onnxrt.OnnxPredictor`, prompts
are checked by `onnxrt.prompt_inputs` and sources expanded by `onnxrt.decode`, so the command runs
with torch not importable. Outputs are written by the same `cli._segment_outputs`.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastsam_core.cli._prompt_args import _numbers


def is_onnx_model(model: str) -> bool:
    """True for a path ending in .onnx (any case): the runtime handles it."""
    return str(model).lower().endswith(".onnx")


def onnx_prompts(args: argparse.Namespace) -> Any:
    """The prompt flags checked into `onnxrt.NumpyPrompts` (None without prompts); the flag
    parsing of `cli._prompt_args.parse_prompt_flags`, torch-free."""
    from fastsam_core.onnxrt.prompt_inputs import make_prompts

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
    return make_prompts(
        boxes,
        points,
        labels,
        list(args.text) if args.text else None,
        box_format=args.box_format,
        box_rule=args.box_rule or args.postprocess,
        box_no_match=args.box_no_match,
        point_mode=args.point_mode,
        output=args.prompt_output,
    )


def onnx_predictor(args: argparse.Namespace) -> Any:
    """`OnnxPredictor` from the segment flags (--fast and --mask-backend are PyTorch-only)."""
    if args.mask_backend != "auto":
        raise ValueError(
            f"--mask-backend {args.mask_backend} applies to PyTorch models; {args.model} is an "
            "ONNX graph (its masks are assembled by the runtime)"
        )
    from fastsam_core.onnxrt.predictor import OnnxPredictor

    return OnnxPredictor(
        args.model,
        device=args.device,
        imgsz=args.imgsz,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        retina_masks=args.retina,
        postprocess=args.postprocess,
    )
