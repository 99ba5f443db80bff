"""Decode ahead: images of a long source list decoded in a background thread into a small
bounded queue, so memory holds only `depth` decoded images besides the one being segmented
(`fastsam_core.stream`). Torch is imported only to make tensors (not with `array=True`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from fastsam_core.io.images import ImageSource, LoadedImage, load_image
from fastsam_core.io.video import VideoFrame

_END = object()


def _name(item: ImageSource, index: int) -> str:
    """What `load_image` names the item: its file (a video frame: the video), else image<i>."""
    if isinstance(item, VideoFrame):
        return str(item.path)
    return str(item) if isinstance(item, (str, Path)) else f"image{index}"


def prefetch_images(
    items: Sequence[ImageSource], *, bgr: bool = False, depth: int = 2, array: bool = False
) -> Iterator[tuple[str, LoadedImage | Exception]]:
    """Yield (name, decoded image or the exception that decoding raised) for every item, in
    order, decoding at most `depth` items ahead (numpy images with `array=True`, as
    `load_image`). Closing the generator stops the thread."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        for i, item in enumerate(items):
            try:
                entry: object = (_name(item, i), load_image(item, bgr=bgr, index=i, array=array))
            except Exception as err:  # noqa: BLE001  any failure is reported for its file
                entry = (_name(item, i), err)
            if not put(entry):
                return
        put(_END)

    thread = threading.Thread(target=work, name="fastsam-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            entry = slots.get()
            if entry is _END:
                return
            yield entry  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
