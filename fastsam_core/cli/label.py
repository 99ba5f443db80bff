"""`fastsam label`: label a whole dataset into one JSONL (+ COCO), resumable, sharded over
torchrun ranks (issue 15 items 1-3).

Images are decoded in DataLoader worker processes ahead of the network (`label.dataset`), run
through the network `--batch` at a time, and each batch's lines are appended to
`OUT/results.jsonl` as it finishes, in the line format of `fastsam segment --format jsonl`
(`export.jsonl.journal_line`); `coco_results.json` and `coco_images.json` are assembled from it
at the end. The journal is the manifest: rerunning the same command skips finished images; a
run stopped by Ctrl-C (exit 130) or killed loses at most the batch in flight. Batches are fixed
by the source order and --batch, so a resumed or sharded run writes the same bytes as one
uninterrupted process (lines in source order). A rerun with other settings or another source
list is refused (`label_run.json` records them); --force starts over.

Under torchrun (WORLD_SIZE > 1) rank r labels batches b % WORLD_SIZE == r into
`OUT/results.rank{r}.jsonl`; rank 0 waits for every rank (gloo on CPU, NCCL on CUDA, one GPU
per rank), then merges all parts into `results.jsonl` in source order and writes the COCO
files (`label.shard`). --out must be one folder every rank can write (a shared filesystem
across nodes):

  torchrun --standalone --nproc-per-node 4 -m fastsam_core.cli label photos/ --out labels/
  torchrun --nnodes 2 --node-rank R --nproc-per-node 8 --rdzv-backend c10d \\
      --rdzv-endpoint HOST:29500 --rdzv-id job1 -m fastsam_core.cli label photos/ --out labels/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastsam_core.cli._prompt_args import add_prompt_arguments, clip_settings, parse_prompt_flags
from fastsam_core.cli._segment_outputs import (
    COCO_IMAGES,
    COCO_RESULTS,
    image_ids,
    remove_stale_temps,
    write_atomic,
    write_coco,
)
from fastsam_core.cli._source_args import add_source_arguments, source_options
from fastsam_core.cli._sources import check_out_dir, expand_items, unique_stems
from fastsam_core.ops.references import POSTPROCESS_NAMES  # typing only: no torch

FORMATS = ("jsonl", "coco")
RUN_FILE = "label_run.json"  # the settings of the run that wrote --out (checked on resume)
_PROMPTS_HELP = (
    'per-image prompts, one JSON line per image: {"image": "photos/dog.jpg", "boxes": '
    '[[x1,y1,x2,y2], ...], "points": [[x,y], ...], "labels": [1, 0, ...], "texts": ["a dog"]} '
    "(original-image pixels; every key but image optional; image is the path as listed or a "
    "unique file name). The prompt options below apply to every line; images without a line "
    "get --box/--point/--text if given, else everything mode"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label",
        help="label a dataset: resumable JSONL + COCO, DataLoader decoding, torchrun shards",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="image files, directories or quoted globs"
    )
    parser.add_argument(
        "--model", default="fastsam-x", help="fastsam-s, fastsam-x or a .pt/.safetensors path"
    )
    parser.add_argument("--out", required=True, help="output directory (shared by all ranks)")
    parser.add_argument(
        "--format",
        default="jsonl,coco",
        help="jsonl (always written: it is the manifest) and/or coco (default jsonl,coco)",
    )
    parser.add_argument("--batch", type=int, default=4, help="images per forward (default 4)")
    parser.add_argument(
        "--workers", type=int, default=2, help="decoding processes (default 2; 0: none)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per process (default torch's)"
    )
    parser.add_argument("--imgsz", type=int, default=None, help="letterbox size (checkpoint's)")
    parser.add_argument("--conf", type=float, default=0.4, help="score threshold (default 0.4)")
    parser.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default 0.9)")
    parser.add_argument(
        "--retina",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="masks at the original resolution (default) or the network's",
    )
    parser.add_argument("--max-det", type=int, default=300, help="most masks per image")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (torchrun: cuda:LOCAL_RANK)"
    )
    parser.add_argument("--postprocess", choices=POSTPROCESS_NAMES, default="official")
    parser.add_argument("--mask-backend", default="auto", help="mask assembly backend")
    parser.add_argument("--fast", default="default", help="network fast path preset (or off)")
    parser.add_argument(
        "--coco-gt", default=None, metavar="JSON", help="number images as in this COCO file"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="start over: discard the journal in --out instead of continuing it",
    )
    parser.add_argument("--prompts", default=None, metavar="JSONL", help=_PROMPTS_HELP)
    add_source_arguments(parser)
    add_prompt_arguments(parser)
    parser.set_defaults(func=run)


def _parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not formats or set(formats) - set(FORMATS):
        raise ValueError(f"--format takes jsonl and/or coco (e.g. jsonl,coco), got {text!r}")
    return formats


def _settings(args: argparse.Namespace, items: list[Any]) -> dict[str, Any]:
    """What decides the lines of a run: a resumed run must use the same (else --force). The
    expanded source list is part of it: it fixes image ids and batches."""
    keys = ("model", "imgsz", "conf", "iou", "retina", "max_det", "postprocess", "batch",
            "coco_gt", "prompts", "box", "box_format", "box_rule", "box_no_match", "point",
            "point_mode", "text", "text_rule", "text_top_k", "text_threshold", "clip_model",
            "clip_weights", "prompt_output")  # fmt: skip
    settings = {k: getattr(args, k) for k in keys}
    settings["sources"] = list(args.sources)
    import hashlib

    listed = "\n".join(str(item) for item in items).encode()
    settings["images"] = f"{len(items)} images, sha256 {hashlib.sha256(listed).hexdigest()}"
    if args.prompts is not None:  # its content, not only its name
        settings["prompts_sha256"] = hashlib.sha256(Path(args.prompts).read_bytes()).hexdigest()
    return settings


def _check_resume(out_dir: Path, settings: dict[str, Any], force: bool) -> None:
    """Refuse to continue a journal written with other settings (unless --force)."""
    path = out_dir / RUN_FILE
    if force or not path.is_file():
        return
    try:
        before = json.loads(path.read_text())
    except ValueError:
        return  # unreadable: the run file is rewritten below
    changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
    if changed:
        raise ValueError(
            f"{out_dir} holds a run with other settings ({', '.join(changed)}); rerun the same "
            "command to continue it, pass --force to start over, or choose another --out"
        )


def _prompt_sets(args: argparse.Namespace, items: list[Any]) -> list[Any]:
    """Per item its Prompts or None: --prompts lines, else the prompt flags (checked now)."""
    flags = parse_prompt_flags(args)
    if args.prompts is None:
        return [flags] * len(items)
    import dataclasses

    from fastsam_core.label.prompts_file import read_prompts_file
    from fastsam_core.prompts import make_prompt_options

    # The options of the flags (--box-format, ...): a throwaway text prompt carries them.
    probe = parse_prompt_flags(argparse.Namespace(**{**vars(args), "text": ["-"]}))
    options = dataclasses.asdict(probe.options if probe else make_prompt_options())
    return read_prompts_file(args.prompts, items, flags, options)


def run(args: argparse.Namespace) -> int:
    # Everything the user typed is checked before the model loads.
    formats = _parse_formats(args.format)
    for flag, value, low in (("--batch", args.batch, 1), ("--workers", args.workers, 0),
                             ("--threads", args.threads or 1, 1)):  # fmt: skip
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    out_dir = Path(args.out)
    check_out_dir(out_dir)
    stride = source_options(args)["vid_stride"]  # also applies --max-pixels
    items, failures = expand_items(args.sources, stride, command="label")  # frames 0, N, 2N...
    stems = unique_stems(items)
    ids = image_ids(items, args.coco_gt)
    prompt_sets = _prompt_sets(args, items)
    settings = _settings(args, items)
    _check_resume(out_dir, settings, args.force)

    import torch

    from fastsam_core.label.run import LabelJob, label_shard
    from fastsam_core.label.shard import (
        JOURNAL,
        Rank,
        close_distributed,
        global_batches,
        init_distributed,
        journal_paths,
        journalled,
        merged_lines,
        rank_from_env,
        remove_parts,
        shard_batches,
        sum_over_ranks,
    )
    from fastsam_core.predictor import Predictor

    rank = rank_from_env()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    if rank.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{rank.local_rank}"  # one GPU per rank
    predictor = Predictor(
        args.model,
        device=device,
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
    device_type = predictor.device.type
    if device_type == "cuda":
        torch.cuda.set_device(predictor.device)
    init_distributed(rank, device_type)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.force:  # every rank truncates its own journal; rank 0 drops the rest
            ours = {Rank(r, rank.world).journal for r in range(rank.world)}
            if rank.rank == 0:
                for path in journal_paths(out_dir):
                    if path.name not in ours:
                        path.unlink(missing_ok=True)
            done: frozenset[str] = frozenset()
        else:
            done = frozenset(journalled(out_dir))
        if rank.rank == 0:  # what a run killed while renaming a file into place left
            remove_stale_temps(out_dir, [], [], extra=(RUN_FILE,))
            write_atomic(out_dir, RUN_FILE, json.dumps(settings, indent=1))
        job = LabelJob(
            items=items,
            stems=stems,
            image_ids=ids,
            prompts=prompt_sets,
            batches=shard_batches(global_batches(len(items), args.batch), rank),
            done=done,
        )
        mine = {job.stems[i] for b in job.batches for i in b}
        counts = label_shard(
            predictor,
            job,
            out_dir / rank.journal,
            workers=args.workers,
            fresh=args.force,
            progress=rank.rank == 0,
            desc="label" if rank.world == 1 else f"label rank 0/{rank.world}",
        )
        labelled, failed, skipped = sum_over_ranks(
            [counts.labelled, counts.failed, len(mine & done)], rank, device_type
        )  # every rank finished: the parts are complete
        if rank.rank != 0:
            return 1 if failures or counts.failed else 0
        lines = merged_lines(out_dir, stems)
        write_atomic(out_dir, JOURNAL, "".join(json.dumps(line) + "\n" for line in lines))
        remove_parts(out_dir)
        if "coco" in formats:
            write_coco(out_dir, stems, predictor.names)
    finally:
        close_distributed()
    failures += failed
    print(
        f"labelled {labelled} image(s) into {out_dir}"
        + (f"; {skipped} already done" if skipped else "")
        + (f"; {failures} failed" if failures else "")
        + ("" if "coco" not in formats else f"; COCO: {COCO_RESULTS}, {COCO_IMAGES}"),
        file=sys.stdout,
    )
    return 1 if failures else 0
