"""Output files of `fastsam segment` and `fastsam label`: each image's output set (temporary
files renamed only when all are written), the run journal and the COCO dataset files (see
`cli.segment`, `cli.label`)."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastsam_core.results import Results

SUFFIXES = {
    "png": ".png",
    "json": ".json",
    "rle": ".rle.json",
    "npz": ".npz",
    "polygons": ".polygons.json",
}  # per-image formats; the others are dataset files:
JOURNAL, COCO_RESULTS, COCO_IMAGES = "results.jsonl", "coco_results.json", "coco_images.json"


def save_output_set(
    result: Results,
    stem: str,
    out_dir: Path,
    formats: list[str],
    document: dict[str, Any],
    plot: dict[str, Any],
) -> None:
    """Write one image's outputs as a set: every file goes to a new temporary file in `out_dir`
    (created exclusively: never an existing file or a planted symlink), and only when all were
    written are they renamed into place. A failure (disk full, Ctrl-C) leaves none of them."""
    writers: dict[str, Callable[[Path], Any]] = {
        "png": lambda p: result.save_overlay(p, overwrite=True, **plot),
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
        "polygons": lambda p: p.write_text(json.dumps(_polygons_document(result))),
    }
    staged: list[tuple[Path, Path]] = []
    try:
        for fmt in (f for f in formats if f in SUFFIXES):
            target = out_dir / f"{stem}{SUFFIXES[fmt]}"
            staged.append((_exclusive_temp(out_dir, target), target))
            writers[fmt](staged[-1][0])
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _polygons_document(result: Results) -> dict[str, Any]:
    """Per mask: "outer" rings and "holes" rings, each [x1, y1, x2, y2, ...] pixel centres."""
    from fastsam_core.export.polygons import to_coco_segmentation

    return {
        "image": {"path": result.path, "height": result.orig_hw[0], "width": result.orig_hw[1]},
        "polygons": [
            {"id": i, "outer": to_coco_segmentation(outer), "holes": to_coco_segmentation(holes)}
            for i, (outer, holes) in enumerate(result.to_polygon_rings())
        ],
    }


def _exclusive_temp(out_dir: Path, target: Path) -> Path:
    """A new empty file beside `target` (mkstemp: O_CREAT|O_EXCL, no symlink followed) with the
    permissions a normal new file gets (mkstemp's 0600 would stay after the rename)."""
    fd, name = tempfile.mkstemp(dir=out_dir, prefix=f".{target.stem}.", suffix=target.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def done_stems(out_dir: Path, stems: list[str], formats: list[str], journal: set[str]) -> set[str]:
    """Stems whose complete output set exists (per-image files, and a journal line)."""
    per_image = [SUFFIXES[f] for f in formats if f in SUFFIXES]
    dataset = bool({"jsonl", "coco"} & set(formats))
    return {
        stem
        for stem in stems
        if all((out_dir / f"{stem}{suffix}").is_file() for suffix in per_image)
        and (not dataset or stem in journal)
    }


def image_ids(items: list[Any], gt: str | None) -> list[int]:
    """COCO image id per item: from --coco-gt by file name, else 1, 2, ... in source order."""
    if gt is None:
        return list(range(1, len(items) + 1))
    from fastsam_core.export.coco import image_ids_from_gt

    by_name = image_ids_from_gt(gt)
    missing = [str(item) for item in items if Path(item).name not in by_name]
    if missing:
        raise ValueError(f"--coco-gt {gt} lists no image named {Path(missing[0]).name}")
    return [by_name[Path(item).name] for item in items]


def write_atomic(out_dir: Path, name: str, text: str) -> None:
    """Replace `out_dir/name` with `text` at once (a temporary file renamed into place)."""
    target = out_dir / name
    tmp = _exclusive_temp(out_dir, target)
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_coco(out_dir: Path, stems: list[str], names: tuple[str, ...]) -> None:
    """coco_results.json and coco_images.json from the journal, in source order, atomically."""
    from fastsam_core.export.coco import coco_images, coco_results
    from fastsam_core.export.jsonl import read_journal

    lines, _ = read_journal(out_dir / JOURNAL)
    by_stem = {line["stem"]: line for line in lines}
    ordered = [by_stem[s] for s in stems if s in by_stem]
    write_atomic(out_dir, COCO_RESULTS, json.dumps(coco_results(ordered)))
    write_atomic(out_dir, COCO_IMAGES, json.dumps(coco_images(ordered, names)))


def remove_stale_temps(
    out_dir: Path, stems: list[str], formats: list[str], extra: tuple[str, ...] = ()
) -> int:
    """Delete temporary files a killed run left for this run's outputs (`--skip-existing`,
    `fastsam label`): only names `_exclusive_temp` makes for them (`.<name>.<random><suffix>`),
    for per-image outputs, the dataset files and the `extra` file names."""
    targets = [out_dir / f"{stem}{SUFFIXES[f]}" for stem in stems for f in formats if f in SUFFIXES]
    targets += [out_dir / name for name in (COCO_RESULTS, COCO_IMAGES, JOURNAL, *extra)]
    removed = 0
    for target in targets:
        for tmp in out_dir.glob(f".{glob.escape(target.stem)}.*{target.suffix}"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed += 1
    return removed
