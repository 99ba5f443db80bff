"""`fastsam segment`: everything-mode masks for images, directories and globs (issue #3 part 5).

One output set per image in `--out`, named after the image's stem:
`<stem>.png` (overlay), `<stem>.json` (COCO-style records with RLE), `<stem>.rle.json` (RLE only),
`<stem>.npz` (boxes, scores, packed compact masks). Existing outputs are never replaced without
`--force`, and an input image is never replaced, even with `--force` (e.g. `x.png` segmented into
its own folder). Stems are made unique (`x`, `x_2`, ...; case-insensitively, for macOS and
Windows). A file that cannot be read or segmented, a directory without images or a glob matching
nothing is reported and skipped; the exit code is 1 if any failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastsam_core.cli._prompt_args import add_prompt_arguments, prompt_kwargs

if TYPE_CHECKING:
    from fastsam_core.results import Results

FORMATS = ("png", "json", "rle", "npz")
SUFFIXES = {"png": ".png", "json": ".json", "rle": ".rle.json", "npz": ".npz"}


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
        help="image files, directories or glob patterns (quote globs)",
    )
    parser.add_argument(
        "--model",
        default="fastsam-x",
        help="fastsam-s, fastsam-x (downloaded once) or a .pt/.safetensors path",
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
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--postprocess",
        choices=("official", "ultralytics"),
        default="official",
        help="reference semantics: FastSAM repo (default) or ultralytics 8.4",
    )
    parser.add_argument(
        "--mask-backend", default="auto", help="mask assembly backend: auto, reference, eager, ..."
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="inference fast path (channels_last, fused): ~13%% faster forward on CPU, masks "
        ">= 99.9%% equal to the plain path (bench/RESULTS.md)",
    )
    add_prompt_arguments(parser)
    parser.set_defaults(func=run)


def _parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(
            f"--format takes a comma-separated subset of {','.join(FORMATS)}, got {text!r}"
        )
    return list(dict.fromkeys(formats))


def _unique_stems(items: list[Any]) -> list[str]:
    """Output stems per item: the file stem, with _2, _3... when it is already taken.

    Taken is case-insensitive (`A.jpg` and `a.png` would share files on macOS and Windows) and
    counts generated names too (`a.jpg`, `a.png`, `a_2.jpg` -> a, a_2, a_2_2).
    """
    stems: list[str] = []
    taken: set[str] = set()
    for i, item in enumerate(items):
        base = Path(item).stem if isinstance(item, (str, Path)) else f"image{i}"
        stem, count = base, 1
        while stem.casefold() in taken:
            count += 1
            stem = f"{base}_{count}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


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
            "replace them or choose another --out"
        )


def _write_atomic(target: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary file in the same folder, then rename (Ctrl-C leaves no half file)."""
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{''.join(target.suffixes[-1:])}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save(result: Results, stem: str, out_dir: Path, formats: list[str]) -> None:
    document = result.to_json() if {"json", "rle"} & set(formats) else {}  # RLE encoded once
    writers: dict[str, Callable[[Path], Any]] = {
        "png": lambda p: result.save_overlay(p, overwrite=True),
        "json": lambda p: p.write_text(json.dumps(document)),
        "rle": lambda p: p.write_text(
            json.dumps(
                {
                    "image": document["image"],
                    "scores": [a["score"] for a in document["annotations"]],
                    "rle": [a["segmentation"] for a in document["annotations"]],
                }
            )
        ),
        "npz": lambda p: result.save_npz(p, overwrite=True),
    }
    for fmt in formats:
        _write_atomic(out_dir / f"{stem}{SUFFIXES[fmt]}", writers[fmt])


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm  # type: ignore[import-untyped]

    from fastsam_core.io.images import IMAGE_EXTENSIONS, expand_sources, load_image
    from fastsam_core.predictor import Predictor
    from fastsam_core.prompts import make_prompt_options, prompt
    from fastsam_core.prompts.apply import prepare_prompts

    formats = _parse_formats(args.format)
    prompts, prompt_options = prompt_kwargs(args)
    make_prompt_options(**prompt_options)  # bad flags fail before the model loads
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file; pass a directory (created if missing)")
    items: list[Any] = []
    failures = 0
    for source in args.sources:  # a missing file or an empty glob is one failure, not the end
        try:
            found = expand_sources(source)
        except (FileNotFoundError, ValueError) as err:
            print(f"fastsam segment: skipped {source}: {err}", file=sys.stderr)
            failures += 1
            continue
        if not found:  # a directory without image files
            print(
                f"fastsam segment: skipped {source}: no image files ({', '.join(IMAGE_EXTENSIONS)})",
                file=sys.stderr,
            )
            failures += 1
        items.extend(found)
    if not items:
        raise FileNotFoundError(f"no images found in {args.sources}")
    stems = _unique_stems(items)
    _check_outputs(
        items, [out_dir / f"{s}{SUFFIXES[f]}" for s in stems for f in formats], args.force
    )
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
        fast=args.fast,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    progress = tqdm(list(zip(items, stems)), desc="segment", unit="img", disable=len(items) == 1)
    for item, stem in progress:
        try:
            image = load_image(item)
            if prompts is not None:  # bad prompts fail before the network runs
                prepare_prompts([image.hw], **prompts, **prompt_options)
            result = predictor.predict_images([image])[0]
            if prompts is not None:
                result = prompt(result, **prompts, **prompt_options)
            result = result.to("cpu")
            _save(result, stem, out_dir, formats)
            done += 1
        except (ValueError, TypeError, OSError, RuntimeError, torch.cuda.OutOfMemoryError) as err:
            failures += 1
            tqdm.write(f"fastsam segment: failed {item}: {err}", file=sys.stderr)
    progress.close()
    print(
        f"segmented {done} image(s) into {out_dir}" + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0
