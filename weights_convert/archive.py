"""The zip container of a torch.save file, read without torch.load (spec §2.1).

`TorchArchive(path)` lists the records with Python's zipfile and accepts exactly what
`torch.save` writes: one folder `<dir>/` holding `data.pkl`, storages `data/<n>`, and the small
bookkeeping records, every member stored uncompressed. It refuses, before anything is unpickled:

* TorchScript archives (`constants.pkl`, `code/`, ...): torch.load would hand them to
  torch.jit.load, which runs the code inside;
* any other unexpected record, duplicate names, absolute or parent-directory paths;
* compressed members (torch never writes them: a split zip bomb) and members whose sizes add up
  to more than the file holds;
* big-endian archives, and a `data.pkl` larger than `MAX_PICKLE_BYTES`.

Storages are then read one by one into fresh CPU buffers (`read_storage`), their sizes checked
against what the pickle claims. Since we read the archive ourselves, what is checked is exactly
what is loaded.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fastsam_core.weights import check_regular_file

if TYPE_CHECKING:
    from typing import Self  # Python >= 3.11; annotations are not evaluated at run time

__all__ = ["MAX_PICKLE_BYTES", "TorchArchive", "UnsafeCheckpointError"]

# torch.save's pre-1.6 format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
MAX_PICKLE_BYTES = 64 << 20  # FastSAM-x's data.pkl is ~0.2 MB; the pickle is only the structure
_BOOKKEEPING = {
    "version",
    ".data/version",
    "byteorder",
    ".data/serialization_id",
    ".format_version",
    ".storage_alignment",
}
_TORCHSCRIPT = ("constants.pkl", "code/", "extra/", ".data/ts_code/", "attributes.pkl")
_STORAGE = re.compile(r"data/(\d{1,12})")


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The checkpoint tried something a genuine one never does; it was refused, nothing ran."""


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


def _shown(names: list[str], limit: int = 3) -> str:
    return ", ".join(repr(n[:80]) for n in names[:limit]) + (", ..." if len(names) > limit else "")


class TorchArchive:
    """A validated torch.save zip; use as a context manager.

    Raises (from the constructor):
        FileNotFoundError: no such file.
        ValueError: not a torch.save zip (saying what it is instead), damaged zip.
        UnsafeCheckpointError: TorchScript, unexpected or forged records, compressed members,
            sizes beyond the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.size = check_regular_file(self.path)
        if self.size == 0:
            raise ValueError(f"{self.path} is empty (0 bytes); expected a PyTorch .pt checkpoint")
        if not zipfile.is_zipfile(self.path):
            raise ValueError(
                f"{self.path} is not a zip archive ({self.size} bytes) as torch.save "
                f"(torch >= 1.6) writes checkpoints: {_not_a_zip_reason(self.path, self.size)}"
            )
        try:
            self._zip = zipfile.ZipFile(self.path)
            members = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ValueError(
                f"{self.path} is a damaged zip archive ({err}); download it again"
            ) from None
        try:
            self._members = self._check_members(members)
            self.storage_bytes = sum(
                m.file_size for r, m in self._members.items() if _STORAGE.fullmatch(r)
            )
        except BaseException:
            self._zip.close()
            raise

    def _refuse(self, message: str) -> UnsafeCheckpointError:
        return UnsafeCheckpointError(f"{self.path}: {message}; refusing the file")

    def _check_members(self, members: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        names = [m.filename for m in members]
        forged = [
            n
            for n in names
            if n.startswith(("/", "\\"))
            or re.match(r"[A-Za-z]:[\\/]", n)
            or ".." in re.split(r"[\\/]", n)
            or "\\" in n
            or "\x00" in n
        ]
        if forged:
            raise self._refuse(
                f"zip members with absolute or parent-directory paths ({_shown(forged)}); "
                "torch.save never writes those (nothing was extracted)"
            )
        if len(set(names)) != len(names):
            raise self._refuse("duplicate zip member names (a forged archive)")
        folders = {n.split("/", 1)[0] for n in names if "/" in n}
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(folders) != 1 or any("/" not in n for n in names):
            if not pickles:
                raise ValueError(
                    f"{self.path} is a zip archive but not a PyTorch checkpoint: no "
                    f"'<dir>/data.pkl' member (members: {_shown(names, 5)}); expected a .pt "
                    "file written by torch.save"
                )
            raise self._refuse(
                f"members outside one top folder ({_shown(sorted(folders), 5)}); torch.save "
                "writes one folder"
            )
        prefix = folders.pop() + "/"
        records = {m.filename[len(prefix) :]: m for m in members}
        script = [r for r in records if r.startswith(_TORCHSCRIPT)]
        if script:
            raise self._refuse(
                f"it is a TorchScript archive (torch.jit.save: records {_shown(script)}), whose "
                "code torch.load would run; FastSAM checkpoints are plain torch.save files"
            )
        if "data.pkl" not in records:
            raise ValueError(
                f"{self.path} is a zip archive but not a PyTorch checkpoint: no "
                f"'<dir>/data.pkl' member (members: {_shown(names, 5)}); expected a .pt file "
                "written by torch.save"
            )
        odd = [r for r in records if r not in _BOOKKEEPING and r != "data.pkl"]
        odd = [r for r in odd if not _STORAGE.fullmatch(r)]
        if odd:
            raise self._refuse(f"unexpected records {_shown(odd)} that torch.save never writes")
        compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise self._refuse(
                f"compressed members ({_shown(compressed)}); torch.save stores members "
                "uncompressed, so this is a possible zip bomb"
            )
        if sum(m.file_size for m in members) > self.size:
            raise self._refuse(
                "member sizes add up to more than the file holds (overlapping members, a "
                "possible zip bomb)"
            )
        pkl = records["data.pkl"]
        if pkl.file_size > MAX_PICKLE_BYTES:
            raise self._refuse(
                f"data.pkl is {pkl.file_size} bytes, above the {MAX_PICKLE_BYTES} byte limit "
                "for a checkpoint's structure"
            )
        if "byteorder" in records:
            order = self._read(records["byteorder"], 16)
            if order != b"little":
                raise self._refuse(f"byte order {order[:16]!r}; only little-endian is supported")
        return records

    def _read(self, member: zipfile.ZipInfo, limit: int) -> bytes:
        if member.file_size > limit:
            raise self._refuse(f"record {member.filename!r} is larger than expected")
        try:
            return self._zip.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise ValueError(
                f"{self.path}: record {member.filename!r} cannot be read ({err}); the file is "
                "truncated or corrupt, download it again"
            ) from None

    def pickle_bytes(self) -> bytes:
        """The `data.pkl` record: the checkpoint's structure, storages referenced by key."""
        return self._read(self._members["data.pkl"], MAX_PICKLE_BYTES)

    def read_storage(self, key: str, nbytes: int) -> torch.UntypedStorage:
        """Storage record `data/<key>` as a fresh CPU buffer of exactly `nbytes` bytes."""
        member = self._members.get(f"data/{key}") if isinstance(key, str) else None
        if member is None:
            raise self._refuse(f"the pickle references storage {str(key)[:20]!r}, not in the zip")
        if member.file_size != nbytes:
            raise self._refuse(
                f"storage {key} holds {member.file_size} bytes but the pickle claims {nbytes}"
            )
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        try:
            with self._zip.open(member) as f:
                # ZipFile.open gives a ZipExtFile (has readinto); typeshed says IO[bytes]
                got = f.readinto(buffer.numpy().data)  # type: ignore[attr-defined]  # CRC at end
                if got != nbytes or f.read(1):
                    raise zipfile.BadZipFile(f"read {got} of {nbytes} bytes")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise ValueError(
                f"{self.path}: storage {key} cannot be read ({err}); the file is truncated or "
                "corrupt, download it again"
            ) from None
        return buffer.untyped_storage()

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
