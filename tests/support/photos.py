"""The bundled test photos: tests/fixtures/images (public domain / CC0, sources in its README).

Every test that needs a real photo takes it from here, so a fresh clone needs nothing beside it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PHOTOS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "images"


def photo_paths() -> list[Path]:
    """Every bundled photo, sorted by name: astronaut, chelsea, coffee, rocket (.jpg)."""
    paths = sorted(PHOTOS_DIR.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no bundled photos in {PHOTOS_DIR} (tests/fixtures/images)")
    return paths


def photo(name: str) -> Path:
    """The bundled photo `name` (e.g. "coffee.jpg"); a one-line error naming the folder if not."""
    path = PHOTOS_DIR / name
    if not path.is_file():
        names = [p.name for p in photo_paths()]
        raise FileNotFoundError(f"no bundled photo {name!r} in {PHOTOS_DIR} (have {names})")
    return path


@functools.lru_cache(maxsize=1)
def photos_digest() -> str:
    """8 hex digits of sha256 over the photos' names and bytes: a cache key for anything made
    from them (oracle checkpoints calibrated on the photos are rebuilt when the photos change)."""
    h = hashlib.sha256()
    for p in photo_paths():
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:8]
