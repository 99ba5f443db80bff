"""`export/files.py`: the one atomic writer (temp file beside the target + publish) and
`writable`, torch-free; used by weights, the ONNX export and INT8 quantization."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fastsam_core.export.files import new_temp_file, publish, publish_new, writable


def test_temp_file_is_new_hidden_and_has_umask_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        first, second = new_temp_file(tmp_path, "m.onnx"), new_temp_file(tmp_path, "m.onnx")
    finally:
        os.umask(umask)
    assert first != second and first.parent == second.parent == tmp_path
    assert first.name.startswith(".m.onnx.") and first.name.endswith(".tmp")
    assert first.read_bytes() == b"" and stat.S_IMODE(first.stat().st_mode) == 0o644


def test_publish_new_never_replaces_and_publish_overwrite_does(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    tmp = new_temp_file(tmp_path, out.name)
    tmp.write_bytes(b"ours")
    out.write_bytes(b"theirs")  # appeared while writing
    with pytest.raises(FileExistsError, match="appeared while writing"):
        publish_new(tmp, out)
    assert out.read_bytes() == b"theirs"
    publish(tmp, out, overwrite=True)
    assert out.read_bytes() == b"ours" and not tmp.exists()
    fresh = new_temp_file(tmp_path, "n.onnx")
    fresh.write_bytes(b"new")
    publish(fresh, tmp_path / "n.onnx", overwrite=False)
    assert (tmp_path / "n.onnx").read_bytes() == b"new"


def test_writable_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    assert writable(target, overwrite=False) == target and target.parent.is_dir()
    target.write_text("{}")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        writable(target, overwrite=False)
    assert writable(target, overwrite=True) == target
