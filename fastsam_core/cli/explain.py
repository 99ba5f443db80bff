"""`fastsam explain IMG --model M --out DIR [--top K]`: pictures of prototypes and coefficients."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="draw what the model computes: prototypes, coefficients, per-level scores, anchors",
        description="Run the model once on IMG and write PNGs into DIR: prototypes.png (the K "
        "prototypes), mask_NN.png (for each top mask: its coefficients as bars, the mask rebuilt "
        "as sigmoid(coefficients . prototypes) cropped to its box, the final mask), "
        "scores_by_level.png (anchor scores at strides 8/16/32 over the photo), anchors.png "
        "(each mask's anchor point) and explain.json (the numbers).",
    )
    parser.add_argument("image", help="one image file")
    parser.add_argument(
        "--model", required=True, help="model file (.pt / .safetensors) or name (fastsam-s)"
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--top", type=int, default=4, help="how many of the best masks (4)")
    parser.add_argument("--imgsz", type=int, default=None, help="letterbox size (model default)")
    parser.add_argument("--conf", type=float, default=0.4, help="score threshold (0.4)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastsam_core.viz.explain import explain, write_explanation

    expl = explain(
        args.image, args.model, top_k=args.top, imgsz=args.imgsz, device=args.device,
        conf=args.conf,
    )  # fmt: skip
    written = write_explanation(expl, args.out)
    print(
        f"{expl.num_masks} masks; explained the top {len(expl.masks)} "
        f"(input {expl.geometry.input_hw[0]}x{expl.geometry.input_hw[1]}, "
        f"{expl.protos.shape[0]} prototypes of {expl.protos.shape[1]}x{expl.protos.shape[2]})"
    )
    for path in written:
        print(f"wrote {path}")
    return 0
