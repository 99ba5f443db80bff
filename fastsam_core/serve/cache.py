"""Per-image cache of everything-mode results: bounded, least recently used first out."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fastsam_core.results import Results


@dataclass
class CachedImage:
    """One uploaded image's everything-mode answer.

    Attributes:
        image_id: the id clients use (hex digest of the uploaded bytes).
        results: everything-mode Results on the CPU, with `orig_image` (needed for overlays and
            text prompts).
        document: the JSON answer of the upload (`payload.everything_document`), built once.
    """

    image_id: str
    results: Results
    document: dict[str, Any] = field(repr=False)


class ImageCache:
    """Thread-safe LRU map image id -> CachedImage holding at most `capacity` images."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, CachedImage] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image_id: str) -> CachedImage | None:
        """The entry (now most recently used) or None."""
        with self._lock:
            entry = self._items.get(image_id)
            if entry is not None:
                self._items.move_to_end(image_id)
            return entry

    def put(self, entry: CachedImage) -> None:
        """Insert or refresh `entry`, evicting the least recently used beyond capacity."""
        with self._lock:
            self._items[entry.image_id] = entry
            self._items.move_to_end(entry.image_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, image_id: object) -> bool:
        with self._lock:
            return image_id in self._items
