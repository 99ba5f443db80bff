"""Video input: a video file is a sequence of frames, each decoded on demand (issue #15 part 5).

`expand_sources` turns a video path into one `VideoFrame(path, index)` per kept frame (every
`vid_stride`-th, counted without decoding); `read_frame` decodes one of them to a (H0, W0, 3)
uint8 RGB array with PyAV, an optional extra (`pip install 'fastsam-core[video]'`).

Frame `index` is the frame's position in presentation order, counted from 0: what
`enumerate(av.open(path).decode(video=0))` gives. Reading frames in increasing order decodes
forward from where the last read stopped: each thread of each process (DataLoader workers too)
keeps its last video open with its decode position (`_reader`), and seeks only when a keyframe
lies between that position and the frame asked for (or the frame lies behind it).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts", ".wmv",
    ".flv", ".3gp", ".ogv",
)  # fmt: skip

# Forward gaps up to this many frames are decoded through without looking for a keyframe to
# seek to: decoding a few frames costs less than scanning the file's packets for keyframes.
_SEEK_MIN_GAP = 16

_INSTALL = "pip install 'fastsam-core[video]'"


@dataclass(frozen=True)
class VideoFrame:
    """One frame of a video file, not decoded yet (what `expand_sources` yields for a video).

    Attributes:
        path: the video file.
        index: the frame's position in presentation order, from 0.
    """

    path: Path
    index: int

    @property
    def stem(self) -> str:
        """File-name stem for this frame's outputs, e.g. "clip_f000012"."""
        return frame_stem(self.path, self.index)

    def __str__(self) -> str:
        return f"{self.path}#{self.index}"


def frame_stem(path: Path, index: int) -> str:
    """Output stem of frame `index` of the video `path`: "<stem>_f<index, 6 digits>"."""
    return f"{path.stem}_f{index:06d}"


def is_video_path(path: Path) -> bool:
    """True when the file's extension (case-insensitive) is a video container's."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _import_av() -> Any:
    try:
        import av
    except ImportError as err:
        raise ImportError(f"reading video needs PyAV: {_INSTALL}") from err
    return av


def _open(path: Path) -> Any:
    """An open PyAV input container with a video stream; one-line errors naming the file."""
    av = _import_av()
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ValueError(f"cannot read video {path}: {reason}") from err
    if not container.streams.video:
        container.close()
        raise ValueError(f"cannot read video {path}: the file has no video stream")
    return container


def count_frames(path: str | Path) -> int:
    """Number of frames of the video's first video stream: the container header's count, or,
    when the header has none (Matroska, WebM, MPEG-TS...), its packets counted by demuxing (no
    decoding)."""
    path = Path(path)
    container = _open(path)
    try:
        header_count = int(container.streams.video[0].frames)
    finally:
        container.close()
    return header_count if header_count > 0 else len(_PacketTable.scan(path).pts)


def video_frames(path: str | Path, vid_stride: int = 1) -> list[VideoFrame]:
    """Every `vid_stride`-th frame of a video (frames 0, N, 2N...), counted without decoding."""
    check_vid_stride(vid_stride)
    path = Path(path)
    total = count_frames(path)
    if total == 0:
        raise ValueError(f"video {path} has no frames")
    return [VideoFrame(path, i) for i in range(0, total, vid_stride)]


def check_vid_stride(vid_stride: int) -> None:
    """Raise ValueError unless `vid_stride` is an int >= 1."""
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, int) or vid_stride < 1:
        raise ValueError(f"vid_stride must be an integer >= 1, got {vid_stride!r}")


def read_frame(frame: VideoFrame) -> np.ndarray:
    """Decode one frame: (H0, W0, 3) uint8 RGB.

    Raises:
        FileNotFoundError: the video does not exist.
        ValueError: not a video, the frame cannot be decoded, or the video ends before it.
    """
    av = _import_av()
    reader = _reader(Path(frame.path))
    try:
        return reader.read(frame.index)
    except av.FFmpegError as err:  # corrupt data: the decode position is unknown now
        _close_reader()
        reason = getattr(err, "strerror", None) or str(err)
        raise ValueError(f"cannot decode frame {frame.index} of {frame.path}: {reason}") from err
    except ValueError:
        _close_reader()
        raise


@dataclass(frozen=True)
class _PacketTable:
    """Presentation timestamps of a video stream's frames, sorted, and which are keyframes."""

    pts: list[int]  # (F,) presentation timestamps in stream time_base, ascending
    keyframes: list[int]  # frame indices of the keyframes, ascending

    @classmethod
    def scan(cls, path: Path) -> _PacketTable:
        """Demux (not decode) every packet of the first video stream of `path`."""
        container = _open(path)
        try:
            stream = container.streams.video[0]
            packets = [
                (packet.pts, bool(packet.is_keyframe))
                for packet in container.demux(stream)
                if packet.size > 0 and not packet.is_discard  # no flush packet, no hidden frame
            ]
        finally:
            container.close()
        if any(pts is None for pts, _ in packets):  # no timestamps: counted, never seeked
            return cls(list(range(len(packets))), [0])
        packets.sort()
        return cls([p for p, _ in packets], [i for i, (_, key) in enumerate(packets) if key])

    @property
    def seekable(self) -> bool:
        return len(self.keyframes) > 1 or (bool(self.keyframes) and self.keyframes[0] != 0)

    def index_of(self, pts: int | None) -> int | None:
        """Frame index of a decoded frame's timestamp; None when it is not one of the table's."""
        if pts is None:
            return None
        i = bisect.bisect_left(self.pts, pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def keyframe_before(self, index: int) -> int:
        """The last keyframe at or before frame `index` (0 when none is known)."""
        i = bisect.bisect_right(self.keyframes, index)
        return self.keyframes[i - 1] if i else 0


class _Reader:
    """An open video and its decode position: `read(i)` decodes forward from the last frame read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self.container = _open(path)
        self.stream = self.container.streams.video[0]
        self.frames: Iterator[Any] = self.container.decode(self.stream)
        self.next_index = 0  # index of the frame `frames` yields next
        self.table: _PacketTable | None = None  # scanned on the first seek
        self.decoded = 0  # frames decoded so far (tests and logs read these two counters)
        self.seeks = 0
        self.can_seek = True  # False once a seek landed past its target (the demuxer's rules)

    def read(self, index: int) -> np.ndarray:
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index} for {self.path}")
        if index < self.next_index or index - self.next_index > _SEEK_MIN_GAP:
            self._seek_towards(index)
        for frame in self.frames:
            self.decoded += 1
            current = self.next_index
            self.next_index += 1
            if current == index:
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))  # (H0, W0, 3)
        raise ValueError(
            f"frame {index} of {self.path} not found: the video ends after {self.next_index} "
            "decodable frames"
        )

    def _seek_towards(self, index: int) -> None:
        """Move the decode position to the latest point from which `index` can be decoded."""
        if self.table is None:
            self.table = _PacketTable.scan(self.path)
        key = self.table.keyframe_before(index)
        if self.next_index <= index and key <= self.next_index:
            return  # decoding forward from here is no more work than from the keyframe
        if key == 0 or not self.table.seekable or not self.can_seek:
            if index < self.next_index:
                self._restart()
            return
        self.seeks += 1
        self.container.seek(self.table.pts[key], stream=self.stream, backward=True)
        self.frames = self.container.decode(self.stream)
        # Demuxers seek by their own rules (AVI by packet order, WebM to an earlier cue): the
        # first decoded frame's timestamp says where decoding really resumed.
        first = next(self.frames, None)
        landed = self.table.index_of(None if first is None else first.pts)
        if first is None or landed is None or landed > index:
            self.can_seek = False  # decode from the start, now and for every later backward step
            self._restart()
            return
        self.frames = _chain(first, self.frames)
        self.next_index = landed

    def _restart(self) -> None:
        self.container.close()
        self.container = _open(self.path)
        self.stream = self.container.streams.video[0]
        self.frames = self.container.decode(self.stream)
        self.next_index = 0

    def close(self) -> None:
        self.container.close()


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


_local = threading.local()  # .reader: this thread's last _Reader

# Readers inherited through fork (DataLoader workers), kept alive and never touched: closing one
# would free a decoder whose threads did not survive the fork (a deadlock), and its file offset
# is shared with the parent's.
_inherited: list[_Reader] = []


def _reader(path: Path) -> _Reader:
    """This thread's open reader of `path` (a new one for another file or after a fork)."""
    reader: _Reader | None = getattr(_local, "reader", None)
    if reader is not None and reader.pid != os.getpid():
        _inherited.append(reader)
        reader = None
    if reader is not None and reader.path == path:
        return reader
    if reader is not None:
        reader.close()
    _local.reader = None
    _local.reader = _Reader(path)
    return _local.reader


def _close_reader() -> None:
    reader: _Reader | None = getattr(_local, "reader", None)
    if reader is not None and reader.pid == os.getpid():
        reader.close()
    elif reader is not None:
        _inherited.append(reader)
    _local.reader = None
