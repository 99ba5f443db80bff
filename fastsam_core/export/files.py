"""Output paths of the `Results` writers (torch and runtime): never replace a file silently."""

from __future__ import annotations

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
