"""`fastsam segment`: everything-mode masks for images, videos, directories and globs (issue #3
part 5; videos: issue #15, every `--vid-stride`-th frame).

One output set per image (or kept video frame, `<video>_f<frame>`) in `--out`, named after the
image's stem:
`<stem>.png` (overlay), `<stem>.json` (COCO / SAM-style records with RLE, `export.records`),
`<stem>.rle.json` (RLE only), `<stem>.npz` (boxes, scores, packed compact masks),
`<stem>.polygons.json` (outer rings and hole rings per mask). Dataset formats write one file for
the run: `jsonl` appends a line per finished image to `results.jsonl`; `coco` writes
`coco_results.json` (a `COCO.loadRes` list) and `coco_images.json` (images table) at the end,
from that journal. Images are segmented as a stream (decoded ahead, bounded memory).

`--skip-existing` continues a stopped run: an image is skipped when its whole output set exists
(every set is written to temporary files renamed only when all are written) and, for dataset
formats, its line is in `results.jsonl`. Existing outputs are never replaced without
`--force`, and an input image is never replaced, even with `--force` (e.g. `x.png` segmented into
its own folder). Stems are made unique (`x`, `x_2`, ...; case-insensitively, for macOS and
Windows). A file that cannot be read or segmented, a directory without images or a glob matching
nothing is reported and skipped; the exit code is 1 if any failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fastsam_core.cli._onnx_segment import is_onnx_model, onnx_predictor, onnx_prompts
from fastsam_core.cli._prompt_args import add_prompt_arguments, clip_settings, parse_prompt_flags
from fastsam_core.cli._segment_outputs import (
    COCO_IMAGES,
    COCO_RESULTS,
    JOURNAL,
    SUFFIXES,
    done_stems,
    image_ids,
    remove_stale_temps,
    save_output_set,
    write_coco,
)
from fastsam_core.cli._source_args import add_source_arguments, source_options
from fastsam_core.cli._sources import check_out_dir, expand_items, unique_stems
from fastsam_core.ops.references import POSTPROCESS_NAMES  # typing only: no torch

FORMATS = ("png", "json", "rle", "npz", "polygons", "jsonl", "coco")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment everything in images (masks, boxes, scores)",
        description="Segment every object in each image with FastSAM (everything mode).",
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="image files, video files, directories or glob patterns (quote globs)",
    )
    parser.add_argument(
        "--model",
        default="fastsam-x",
        help="fastsam-s, fastsam-x (downloaded once), a .pt/.safetensors path, or an .onnx graph "
        "from `fastsam export` (runs without PyTorch)",
    )
    parser.add_argument(
        "--imgsz",
        type=int,
        default=None,
        help="letterbox size (default: the checkpoint's, 1024 for FastSAM)",
    )
    parser.add_argument("--conf", type=float, default=0.4, help="score threshold (default 0.4)")
    parser.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default 0.9)")
    parser.add_argument(
        "--retina",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="masks at the original resolution (default) or the network's",
    )
    parser.add_argument("--max-det", type=int, default=300, help="most masks per image")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--out", default="fastsam_output", help="output directory")
    parser.add_argument(
        "--format",
        default="png,json",
        help=f"comma-separated outputs from {','.join(FORMATS)} (default png,json)",
    )
    replace = parser.add_mutually_exclusive_group()
    replace.add_argument("--force", action="store_true", help="replace existing output files")
    replace.add_argument(
        "--skip-existing",
        action="store_true",
        help="continue a stopped run: skip images whose outputs are complete, redo the rest",
    )
    parser.add_argument(
        "--coco-gt",
        default=None,
        metavar="JSON",
        help="number images as in this COCO annotation file (by file name; default 1, 2, ...)",
    )
    parser.add_argument(
        "--overlay",
        default="",
        help="extras drawn on the png: comma-separated boxes,labels,prompts,no-contours",
    )
    parser.add_argument("--alpha", type=float, default=0.6, help="overlay mask opacity (0.6)")
    parser.add_argument(
        "--postprocess",
        choices=POSTPROCESS_NAMES,
        default="official",
        help="reference semantics: FastSAM repo (default) or ultralytics 8.4",
    )
    parser.add_argument(
        "--mask-backend", default="auto", help="mask assembly backend: auto, reference, eager, ..."
    )
    parser.add_argument(
        "--fast",
        nargs="?",
        const="default",
        default="default",
        metavar="PRESET",
        help="network fast path preset (fastsam_core.runtime): default (channels_last, the "
        "default; masks equal to the plain path within the tested tolerance), off (plain fp32 "
        "NCHW, what the parity tests pin), compile, bf16, ...",
    )
    add_prompt_arguments(parser)
    add_source_arguments(parser)
    parser.set_defaults(func=run)


def _parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(
            f"--format takes a comma-separated subset of {','.join(FORMATS)}, got {text!r}"
        )
    return list(dict.fromkeys(formats))


def _check_outputs(items: list[Any], outputs: list[Path], force: bool) -> None:
    """Refuse to replace an input image (even with --force) or an existing file (without it)."""
    inputs = {Path(item).resolve() for item in items if isinstance(item, (str, Path))}
    clobbered = [p for p in outputs if p.resolve() in inputs]
    if clobbered:
        raise FileExistsError(
            f"output {clobbered[0]} would replace the input image {clobbered[0].resolve()}; "
            "choose another --out (inputs are never overwritten, even with --force)"
        )
    if force:
        return
    existing = [p for p in outputs if p.exists() or p.is_symlink()]
    if existing:
        listed = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{len(existing)} output file(s) already exist ({listed}); pass --force to "
            "replace them, --skip-existing to continue a stopped run, or choose another --out"
        )


def _plot_options(text: str, alpha: float) -> dict[str, Any]:
    """--overlay extras and --alpha -> `Results.plot` keywords (prompts added per run)."""
    extras = {e.strip().lower() for e in text.split(",") if e.strip()}
    bad = sorted(extras - {"boxes", "labels", "prompts", "no-contours"})
    if bad or not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"--overlay takes boxes,labels,prompts,no-contours and --alpha a value in [0, 1]; "
            f"got {text!r}, {alpha}"
        )
    return {
        "alpha": alpha,
        "contours": "no-contours" not in extras,
        "boxes": "boxes" in extras,
        "labels": "labels" in extras,
        "prompts": "prompts" in extras,  # replaced by the Prompts object in run()
    }


def run(args: argparse.Namespace) -> int:
    # Everything the user typed is checked before the model loads: formats, prompts, --out, inputs.
    formats = _parse_formats(args.format)
    plot = _plot_options(args.overlay, args.alpha)
    onnx = is_onnx_model(args.model)  # an exported graph: the torch-free runtime
    prompts = onnx_prompts(args) if onnx else parse_prompt_flags(args)
    plot["prompts"] = prompts if plot["prompts"] else None
    out_dir = Path(args.out)
    check_out_dir(out_dir)
    items, failures = expand_items(args.sources, source_options(args)["vid_stride"])
    stems = unique_stems(items)
    ids = image_ids(items, args.coco_gt)
    dataset = bool({"jsonl", "coco"} & set(formats))
    outputs = [out_dir / f"{s}{SUFFIXES[f]}" for s in stems for f in formats if f in SUFFIXES]
    outputs += [out_dir / JOURNAL] if dataset else []
    outputs += [out_dir / COCO_RESULTS, out_dir / COCO_IMAGES] if "coco" in formats else []
    _check_outputs(items, outputs, args.force or args.skip_existing)
    journaled: set[str] = set()
    if dataset and args.skip_existing:
        from fastsam_core.export.jsonl import read_journal

        journaled = {str(line.get("stem")) for line in read_journal(out_dir / JOURNAL)[0]}
    done: set[str] = set()
    if args.skip_existing and out_dir.is_dir():
        remove_stale_temps(out_dir, stems, formats)
        done = done_stems(out_dir, stems, formats, journaled)
    todo = [(item, stem, i) for item, stem, i in zip(items, stems, ids) if stem not in done]

    from tqdm import tqdm  # type: ignore[import-untyped]

    from fastsam_core.export.jsonl import append_line, open_journal
    from fastsam_core.stream import ImageError  # torch-free: both predictors yield it

    if onnx:
        predictor = onnx_predictor(args)
    else:
        from fastsam_core.predictor import Predictor

        predictor = Predictor(
            args.model,
            device=args.device,
            imgsz=args.imgsz,
            conf=args.conf,
            iou=args.iou,
            max_det=args.max_det,
            retina_masks=args.retina,
            postprocess=args.postprocess,
            mask_backend=args.mask_backend,
            fast=False if args.fast == "off" else args.fast,
            clip=clip_settings(args),
        )
    if prompts is not None and prompts.texts:
        predictor.clip_scorer  # noqa: B018  built once for the run: a missing model fails here
    out_dir.mkdir(parents=True, exist_ok=True)
    journal = open_journal(out_dir / JOURNAL, resume=args.skip_existing) if dataset else None
    segmented = 0
    stream = predictor.stream([item for item, _, _ in todo], prompts=prompts)
    progress = tqdm(
        zip(todo, stream), total=len(todo), desc="segment", unit="img", disable=len(todo) <= 1
    )
    try:
        for (item, stem, image_id), result in progress:
            if isinstance(result, ImageError):
                failures += 1
                tqdm.write(f"fastsam segment: failed {item}: {result.message}", file=sys.stderr)
                continue
            try:
                result = result.to("cpu")
                needs_doc = dataset or bool({"json", "rle"} & set(formats))
                document = result.to_json() if needs_doc else {}  # RLE encoded once
                save_output_set(result, stem, out_dir, formats, document, plot)
                if journal is not None and stem not in journaled:
                    line = {"image_id": image_id, "file_name": str(item), "stem": stem}
                    append_line(journal, line | document)
                segmented += 1
            except (ValueError, TypeError, OSError, RuntimeError) as err:
                failures += 1
                tqdm.write(f"fastsam segment: failed {item}: {err}", file=sys.stderr)
    finally:
        progress.close()
        stream.close()
        if journal is not None:
            journal.close()
    if "coco" in formats:
        write_coco(out_dir, stems, predictor.names)
    skipped = f"; {len(done)} already done" if done else ""
    print(
        f"segmented {segmented} image(s) into {out_dir}{skipped}"
        + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0
