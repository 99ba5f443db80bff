"""Weights by name: cache directory, download with checksum, one-time conversion to safetensors.

`resolve_weights("fastsam-s")` returns a local safetensors file, downloading the official
checkpoint (ultralytics assets GitHub release, spec §2.1) into the cache the first time and
converting it once. Environment:

* `FASTSAM_HOME`: cache directory (default `$XDG_CACHE_HOME/fastsam`, else `~/.cache/fastsam`).
* `FASTSAM_WEIGHTS_URL`: base URL the file name is appended to (mirrors, tests).
* `FASTSAM_OFFLINE=1`: never download; a missing file raises an error saying where to put it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0"
_CHUNK_SIZE = 1 << 16


@dataclass(frozen=True)
class WeightsFile:
    """An official checkpoint: its file name, sha256 (None when not pinned by the spec) and the
    architecture its content must have (checked after the safe conversion)."""

    filename: str
    sha256: str | None
    scale: str
    reg_max: int


# spec §2.1: FastSAM.pt == FastSAM-x.pt (sha256 measured on the HF mirror). FastSAM-s's hash is not
# known: the first download records it next to the file and later uses verify against it. Either
# way the content is only ever read by the allow-list loader (no code can run) and must convert to
# the expected architecture (`_check_architecture`), so a mirror cannot substitute another model.
WEIGHTS: dict[str, WeightsFile] = {
    "fastsam-s": WeightsFile("FastSAM-s.pt", None, "s", 16),
    "fastsam-x": WeightsFile(
        "FastSAM-x.pt", "c0be4e7ddbe4c15333d15a859c676d053c486d0a746a3be6a7a9790d52a9b6d7", "x", 26
    ),
}
ALIASES = {"fastsam.pt": "fastsam-x", "fastsam-s.pt": "fastsam-s", "fastsam-x.pt": "fastsam-x"}


def cache_dir() -> Path:
    """The weights cache: $FASTSAM_HOME, else $XDG_CACHE_HOME/fastsam, else ~/.cache/fastsam."""
    if os.environ.get("FASTSAM_HOME"):
        return Path(os.environ["FASTSAM_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fastsam"
    return Path.home() / ".cache" / "fastsam"


def weights_url(filename: str) -> str:
    """Download URL of an official file (base overridable with $FASTSAM_WEIGHTS_URL)."""
    base = os.environ.get("FASTSAM_WEIGHTS_URL") or DEFAULT_WEIGHTS_URL
    return f"{base.rstrip('/')}/{filename}"


def canonical_name(name: str) -> str | None:
    """'fastsam-s' / 'FastSAM-s.pt' / 'FastSAM.pt' -> registry key, or None if not a known name."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in WEIGHTS else None


def download_file(
    url: str, dest: Path, *, sha256: str | None = None, progress: bool = True, timeout: float = 60
) -> str:
    """Download `url` to `dest` atomically and return the file's sha256.

    The bytes go to a temporary file in `dest`'s directory which is renamed onto `dest` only after
    the whole body arrived (Content-Length checked) and the checksum matched, so an interrupted or
    failed transfer never leaves a partial file at `dest`.

    Raises:
        ConnectionError: network failure, HTTP error status, truncated transfer.
        ValueError: checksum mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as err:
                raise ConnectionError(
                    f"download of {url} failed: HTTP {err.code} {err.reason}"
                ) from err
            except (urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                raise ConnectionError(f"download of {url} failed: {reason}") from err
            with response:
                length_header = response.headers.get("Content-Length")
                expected = int(length_header) if length_header else None
                with tqdm(
                    total=expected,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                ) as bar:
                    while True:
                        try:
                            chunk = response.read(_CHUNK_SIZE)
                        except OSError as err:  # includes http.client.IncompleteRead
                            raise ConnectionError(
                                f"download of {url} interrupted after {received} bytes: {err}"
                            ) from err
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if expected is not None and received != expected:
                raise ConnectionError(
                    f"download of {url} truncated: got {received} of {expected} bytes; retry"
                )
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; the file "
                "was discarded (corrupt download or a different file on the server)"
            )
        os.replace(tmp, dest)  # atomic on the same filesystem
        return actual
    finally:
        if tmp.exists():
            tmp.unlink()


def _record_or_check_unpinned(path: Path, info: WeightsFile) -> None:
    """Trust on first use for files without a spec checksum: record the hash, then verify it."""
    from fastsam_core.weights import sha256_file

    record = path.with_name(path.name + ".sha256")
    actual = sha256_file(path)
    if record.exists():
        expected = record.read_text().split()[0]
        if expected != actual:
            raise ValueError(
                f"{path} has sha256 {actual} but {record} recorded {expected}; delete both files "
                "to download again"
            )
        return
    record.write_text(f"{actual}  {info.filename}\n")
    logger.warning(
        "no published sha256 is known for %s; recorded %s in %s (later uses verify against it)",
        info.filename,
        actual,
        record,
    )


def checkpoint_path(name: str, *, download: bool = True, progress: bool = True) -> Path:
    """The cached official `.pt` for a weights name, downloading it if absent.

    Raises:
        ValueError: unknown name, or checksum mismatch.
        FileNotFoundError: the file is absent and cannot be downloaded; the message says which file
            to place where.
    """
    key = canonical_name(name)
    if key is None:
        raise ValueError(
            f"unknown weights name {name!r}; expected one of {sorted(WEIGHTS)} or a path"
        )
    info = WEIGHTS[key]
    path = cache_dir() / info.filename
    if path.exists():
        if info.sha256 is None:
            _record_or_check_unpinned(path, info)
        return path
    url = weights_url(info.filename)
    offline = os.environ.get("FASTSAM_OFFLINE", "") not in ("", "0")
    manual = (
        f"download {url} yourself and place it at {path} "
        f"(or set FASTSAM_HOME to the directory holding {info.filename})"
    )
    if not download or offline:
        raise FileNotFoundError(
            f"weights {info.filename} are not cached and downloads are off: {manual}"
        )
    logger.info("downloading %s to %s", url, path)
    try:
        download_file(url, path, sha256=info.sha256, progress=progress)
    except ConnectionError as err:
        raise FileNotFoundError(f"{err}. Offline? {manual}") from err
    if info.sha256 is None:
        _record_or_check_unpinned(path, info)
    return path


def resolve_weights(
    name_or_path: str | Path, *, download: bool = True, progress: bool = True
) -> Path:
    """A loadable weights file: an existing path as given, or a name's cached safetensors file.

    Names (`fastsam-s`, `fastsam-x`, `FastSAM.pt` = x) download the official checkpoint into
    `cache_dir()` if needed and convert it to `<stem>.safetensors` once; later calls reuse it.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    key = canonical_name(str(name_or_path))
    if key is None:
        raise FileNotFoundError(
            f"weights file not found: {name_or_path}; pass an existing .pt/.safetensors path or "
            f"one of the names {sorted(WEIGHTS)}"
        )
    converted = cache_dir() / (Path(WEIGHTS[key].filename).stem + ".safetensors")
    if converted.exists():
        return converted
    checkpoint = checkpoint_path(key, download=download, progress=progress)
    convert_to_safetensors(checkpoint, converted)
    _check_architecture(converted, WEIGHTS[key])
    return converted


def _check_architecture(converted: Path, info: WeightsFile) -> None:
    """The converted file must be the official model's architecture (scale, reg_max, 1 class)."""
    from fastsam_core.weights import load_config

    cfg = load_config(converted)
    if (cfg.scale, cfg.reg_max, cfg.num_classes) != (info.scale, info.reg_max, 1):
        converted.unlink(missing_ok=True)
        raise ValueError(
            f"{info.filename} from {cache_dir()} converts to scale {cfg.scale}, reg_max "
            f"{cfg.reg_max}, {cfg.num_classes} classes, but the official file is scale "
            f"{info.scale}, reg_max {info.reg_max}, 1 class; the download is not the official "
            "checkpoint (delete it and its .sha256 record to download again)"
        )


def convert_to_safetensors(checkpoint: Path, dest: Path) -> Path:
    """Convert an official `.pt` to our safetensors format, atomically (no pickled code is run)."""
    from fastsam_weights_convert import convert_file

    convert_file(checkpoint, dest, force=True)
    logger.info("converted %s -> %s", checkpoint, dest)
    return dest
