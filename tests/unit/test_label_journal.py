"""The journal lines `fastsam label` writes (export.jsonl): segment's format, a batch per write."""

from __future__ import annotations

from pathlib import Path

from fastsam_core.export.jsonl import append_lines, journal_line, open_journal, read_journal


def test_line_format_and_frame_key() -> None:
    document = {"image": {"path": "a.jpg", "height": 2, "width": 3}, "annotations": []}
    line = journal_line(7, "a.jpg", "a", document)
    assert list(line) == ["image_id", "file_name", "stem", "image", "annotations"]
    frame = journal_line(8, "clip.mp4#12", "clip_f000012", document, frame=12)
    assert list(frame)[:4] == ["image_id", "file_name", "stem", "frame"] and frame["frame"] == 12


def test_batch_lines_survive_and_a_cut_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    lines = [journal_line(i, f"{i}.jpg", str(i), {"annotations": []}) for i in range(4)]
    with open_journal(path, resume=False) as handle:
        append_lines(handle, lines[:2])
        append_lines(handle, [])  # a batch whose images all failed writes nothing
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"image_id": 2, "file_na')  # a kill in the middle of a write
    assert read_journal(path) == (lines[:2], len(whole))
    with open_journal(path, resume=True) as handle:  # cut, then appended after the last line
        append_lines(handle, lines[2:])
    assert read_journal(path)[0] == lines
