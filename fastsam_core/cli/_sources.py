"""Sources and output names shared by the dataset commands (`fastsam segment`, `fastsam label`):
expanding what the user listed into image files and video frames, one unique output stem per
item, and the --out check. Torch-free (`io.images` decodes nothing here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from fastsam_core.io.video import VideoFrame


def expand_items(
    sources: list[str], vid_stride: int = 1, command: str = "segment"
) -> tuple[list[Any], int]:
    """(image files and kept video frames of every source, number of sources that gave none,
    each reported). Torch-free (`io.images`): the ONNX runtime's sources too."""
    from fastsam_core.io.images import IMAGE_EXTENSIONS, expand_sources

    items: list[Any] = []
    failures = 0
    for source in sources:  # a missing file or an empty glob is one failure, not the end
        try:
            found = expand_sources(source, vid_stride)
        except (FileNotFoundError, ValueError) as err:
            print(f"fastsam {command}: skipped {source}: {err}", file=sys.stderr)
            failures += 1
            continue
        if not found:  # a directory without image files
            print(
                f"fastsam {command}: skipped {source}: no image files "
                f"({', '.join(IMAGE_EXTENSIONS)})",
                file=sys.stderr,
            )
            failures += 1
        for item in found:
            if isinstance(item, Path) and not item.exists():  # reported now, not after loading
                print(f"fastsam {command}: skipped {item}: no such file", file=sys.stderr)
                failures += 1
            else:
                items.append(item)
    if not items:
        raise FileNotFoundError(f"no images found in {sources}")
    return items, failures


def unique_stems(items: list[Any]) -> list[str]:
    """Output stems per item: the file stem, with _2, _3... when it is already taken.

    Taken is case-insensitive (`A.jpg` and `a.png` would share files on macOS and Windows) and
    counts generated names too (`a.jpg`, `a.png`, `a_2.jpg` -> a, a_2, a_2_2).
    """
    stems: list[str] = []
    taken: set[str] = set()
    for i, item in enumerate(items):
        base = Path(item).stem if isinstance(item, (str, Path)) else f"image{i}"
        base = item.stem if isinstance(item, VideoFrame) else base  # clip_f000012
        stem, count = base, 1
        while stem.casefold() in taken:
            count += 1
            stem = f"{base}_{count}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def check_out_dir(out_dir: Path) -> None:
    """--out must be a directory (created later) inside a writable folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file; pass a directory (created if missing)")
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"--out {out_dir}: cannot write into {existing}; choose another --out"
        )
