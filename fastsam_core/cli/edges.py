"""`fastsam edges IMG... --model M --out DIR`: zero-shot edge maps (issue #16 part 1).

One `<stem>.png` per image: the uint8 edge strength of `fastsam_core.tasks.edges.edge_map`
(everything-mode probability maps -> Sobel -> max -> edge NMS). Existing files are kept unless
`--force`; the exit code is 1 if any image failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "edges",
        help="zero-shot edge maps from everything-mode masks (PNG per image)",
        description="Write an edge-strength PNG per image: every everything-mode mask's "
        "probability map -> Sobel magnitude inside its box -> max over masks -> edge NMS.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="images, folders or globs")
    parser.add_argument("--model", default="fastsam-x", help="fastsam-s, fastsam-x or a path")
    parser.add_argument("--out", default="fastsam_edges", help="output directory")
    parser.add_argument("--imgsz", type=int, default=None, help="letterbox size")
    parser.add_argument("--conf", type=float, default=0.4, help="score threshold (default 0.4)")
    parser.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default 0.9)")
    parser.add_argument("--max-det", type=int, default=300, help="most masks per image")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from fastsam_core.io.images import expand_sources
    from fastsam_core.tasks.edges import SoftMaskPredictor, detect_edges

    items = expand_sources(args.sources)
    if not items:
        raise FileNotFoundError(f"no images found in {args.sources}")
    missing = [str(p) for p in items if isinstance(p, Path) and not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such image file(s): {', '.join(missing)}")
    out_dir = Path(args.out)
    targets = [out_dir / f"{Path(str(item)).stem}.png" for item in items]
    if len({t.name.casefold() for t in targets}) != len(targets):
        raise ValueError("two inputs share a file stem; edge maps would overwrite each other")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.force:
        raise FileExistsError(f"{len(existing)} output file(s) exist, e.g. {existing[0]}; --force")
    predictor = SoftMaskPredictor(
        args.model, device=args.device, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
        max_det=args.max_det,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for item, target in zip(items, targets):
        try:
            edges = detect_edges(predictor, item)[0]
        except (ValueError, OSError) as err:
            print(f"fastsam edges: {item}: {err}", file=sys.stderr)
            failed += 1
            continue
        Image.fromarray(edges).save(target)
        print(f"wrote {target}")
    return 1 if failed else 0
