"""Zip-level checks of a torch.save file before anything is unpickled (spec §2.1).

A checkpoint is a zip holding `<dir>/data.pkl` and `<dir>/data/<k>` storages, stored
uncompressed. Anything else gets a message saying what the file is instead: legacy torch
format, raw pickle, truncated zip, a safetensors file, forged member names, a zip bomb.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

# torch.save's pre-1.6 format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_MAX_EXPANSION = 64  # torch.save stores members uncompressed; a far larger ratio is a zip bomb


def _not_a_zip_reason(path: Path, size: int) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return (
            "it is in the legacy (torch < 1.6, non-zip) torch.save format, which this loader "
            "does not read; re-save it with a current torch.save in an environment you trust"
        )
    if head[:1] == b"\x80":
        return "it is a raw pickle (pickle.dump), not a torch.save archive"
    if head.startswith(b"PK\x03\x04"):
        return (
            f"it starts like a zip archive but its end is missing ({size} bytes): the file is "
            "truncated (an interrupted download?); download it again"
        )
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return (
            "it looks like a safetensors file: give it the .safetensors suffix and load it with "
            "fastsam_core.load_model"
        )
    return "the file is truncated, corrupt, or not a checkpoint; download it again"


def check_archive(path: Path) -> None:
    """A torch.save file is a zip holding `<dir>/data.pkl`; say clearly when it is not."""
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes); expected a PyTorch .pt checkpoint")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a zip archive ({size} bytes) as torch.save (torch >= 1.6) writes "
            f"checkpoints: {_not_a_zip_reason(path, size)}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"{path} is a damaged zip archive ({err}); download it again") from None
    names = [m.filename for m in members]
    odd = [  # torch never reads files by these names, but say clearly the file is forged
        n
        for n in names
        if n.startswith(("/", "\\"))
        or re.match(r"[A-Za-z]:[\\/]", n)
        or ".." in re.split(r"[\\/]", n)
    ]
    if odd:
        raise ValueError(
            f"{path} has zip members with absolute or parent-directory paths ({odd[:3]}); "
            "torch.save never writes those, refusing the file (nothing was extracted)"
        )
    bombs = [
        m.filename
        for m in members
        if m.file_size > (1 << 26) and m.file_size > _MAX_EXPANSION * max(m.compress_size, 1)
    ]
    if bombs:
        raise ValueError(
            f"{path} has zip members that expand more than {_MAX_EXPANSION}x ({bombs[:3]}); "
            "torch.save stores members uncompressed, refusing a possible zip bomb"
        )
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(
            f"{path} is a zip archive but not a PyTorch checkpoint: no '<dir>/data.pkl' member "
            f"(members: {shown}); expected a .pt file written by torch.save"
        )
