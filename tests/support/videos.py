"""Small test videos made with PyAV from the bundled photos (tests/support/photos.py).

Frame i is photo i % 4 resized to 160x120 and rolled right by 8 * i pixels, so every frame differs
and a frame's index can be told from its pixels. MPEG-4 Part 2 (FFmpeg's own encoder, in every
PyAV build) with B-frames (`bf=2`) and a keyframe every 4 frames (`g=4`): decode order differs
from presentation order and seeking has keyframes to land on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.photos import photo_paths

FRAME_HW = (120, 160)
ENCODER_OPTIONS = {"bf": "2", "g": "4", "qscale": "2"}  # B-frames, keyframe every 4, fine quantizer


def source_frames(count: int = 12) -> list[np.ndarray]:
    """The frames a test video is made of: (120, 160, 3) uint8 RGB each."""
    photos = [
        np.asarray(Image.open(p).convert("RGB").resize(FRAME_HW[::-1], Image.BILINEAR))
        for p in photo_paths()
    ]
    return [np.roll(photos[i % len(photos)], 8 * i, axis=1) for i in range(count)]


def make_video(path: Path, count: int = 12) -> Path:
    """Encode `source_frames(count)` into `path` (container from the extension: .mp4, .mkv,
    .avi...) at 10 frames/s."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10, options=ENCODER_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = FRAME_HW[1], FRAME_HW[0], "yuv420p"
        for frame in source_frames(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed (B-frame) packets
            container.mux(packet)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame as PyAV decodes it directly, in order: the reference for frame reads."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
