"""The run journal of `fastsam segment --format jsonl|coco` and `fastsam label`: one JSON line
per finished image.

Each line is `journal_line(...)`: `image_id`, `file_name`, the output `stem` (the manifest key of
a resumed run) and `Results.to_json()`, written with one `write` and flushed as the image (or,
for `fastsam label`, its batch) finishes, so the file always tells which images are done. A run
killed mid-line leaves a truncated last line: `read_journal` ignores it and
`open_journal(resume=True)` cuts it off before appending.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any


def read_journal(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """(complete lines as dicts, byte length of the complete part) of a journal; a missing
    file is an empty journal. Reading stops at the first line that is not complete JSON."""
    target = Path(path)
    if not target.exists():
        return [], 0
    lines: list[dict[str, Any]] = []
    good = 0
    with target.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                line = json.loads(raw)
            except ValueError:
                break
            if not isinstance(line, dict):
                break
            lines.append(line)
            good += len(raw)
    return lines, good


def open_journal(path: str | Path, resume: bool) -> IO[str]:
    """Open the journal for appending: a fresh file, or (resume) the complete lines kept."""
    target = Path(path)
    if resume and target.exists():
        _, good = read_journal(target)
        with target.open("r+b") as handle:
            handle.truncate(good)
        return target.open("a", encoding="utf-8")
    return target.open("w", encoding="utf-8")


def journal_line(
    image_id: int, file_name: str, stem: str, document: dict[str, Any], frame: int | None = None
) -> dict[str, Any]:
    """One journal line: the image's COCO id, source name, output stem and, for a video frame,
    its `frame` index, then `document` (`Results.to_json()`: image info, names, annotations)."""
    head: dict[str, Any] = {"image_id": image_id, "file_name": file_name, "stem": stem}
    if frame is not None:
        head["frame"] = frame
    return head | document


def append_line(handle: IO[str], line: dict[str, Any]) -> None:
    """Write one line in one call and flush it to the OS (it survives a killed process)."""
    append_lines(handle, [line])


def append_lines(handle: IO[str], lines: list[dict[str, Any]]) -> None:
    """Write lines (e.g. one batch's) in one call and flush them to the OS. A kill in the
    middle of the write may leave a truncated last line: `read_journal` drops it."""
    if not lines:
        return
    handle.write("".join(json.dumps(line) + "\n" for line in lines))
    handle.flush()
    os.fsync(handle.fileno())
