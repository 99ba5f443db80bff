"""`fastsam segment --model X.onnx`: the torch-free runtime behind the same flags (issue 14).

`cli.segment` routes here on the `.onnx` suffix: the predictor is `onnxrt.OnnxPredictor` and
prompts are checked by `onnxrt.prompt_inputs` (the prompt flags read by `cli._prompt_args`, the
sources by `io.images`, as for PyTorch models), so the command runs with torch not importable.
Outputs are written by the same `cli._segment_outputs`.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastsam_core.cli._prompt_args import prompt_flag_values


def is_onnx_model(model: str) -> bool:
    """True for a path ending in .onnx (any case): the runtime handles it."""
    return str(model).lower().endswith(".onnx")


def onnx_prompts(args: argparse.Namespace) -> Any:
    """The prompt flags checked into `onnxrt.NumpyPrompts` (None without prompts; --text is
    refused: CLIP is not exported), torch-free."""
    from fastsam_core.onnxrt.prompt_inputs import make_prompts

    return make_prompts(**prompt_flag_values(args))


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
