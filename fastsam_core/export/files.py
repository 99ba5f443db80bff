"""Output files, torch-free: paths that never replace a file silently, and the one atomic writer
(a temporary file beside the target, published by rename) used by the weights, ONNX and INT8
writers."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def writable(path: str | Path, overwrite: bool) -> Path:
    """Resolve an output path, creating its folder; refuse to replace a file unless overwrite."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True (CLI: --force) to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def new_temp_file(directory: Path, name: str) -> Path:
    """An empty hidden file `.<name>.<pid>.<random>.tmp` in `directory` (O_EXCL: never an
    existing file or a planted symlink), with the umask's permissions (mkstemp's are 0600, which
    the renamed output would keep)."""
    for _ in range(100):
        tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file in {directory}")


def publish_new(tmp: Path, out_path: Path) -> None:
    """Move `tmp` to `out_path` only if nothing is there, even if a file appeared meanwhile."""
    try:
        os.link(tmp, out_path)  # atomic create-if-absent
    except FileExistsError:
        raise FileExistsError(
            f"{out_path} appeared while writing; pass --force (--overwrite) to overwrite it"
        ) from None
    except OSError:  # no hard links on this filesystem: check, then rename
        if out_path.exists():
            raise FileExistsError(f"{out_path} already exists; pass --force to overwrite") from None
        os.replace(tmp, out_path)


def publish(tmp: Path, out_path: Path, overwrite: bool) -> None:
    """Move the finished `tmp` to `out_path`: replacing it atomically when `overwrite` (readers
    see the old file or the new one), else only if nothing is there (`publish_new`). The caller
    unlinks `tmp` afterwards in a `finally` (a no-op once published)."""
    if overwrite:
        os.replace(tmp, out_path)
    else:
        publish_new(tmp, out_path)
