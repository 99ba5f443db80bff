"""Source flags shared by `fastsam segment` and `fastsam label`: --vid-stride, --max-pixels
(issue #15 parts 4-5). Imports neither torch nor PIL: `--help` stays instant."""

from __future__ import annotations

import argparse
from typing import Any

from fastsam_core.io.pixel_limit import DEFAULT_MAX_PIXELS, parse_max_pixels
from fastsam_core.io.video import VIDEO_EXTENSIONS


def _vid_stride(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _max_pixels(text: str) -> int:
    try:
        return parse_max_pixels(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --vid-stride and --max-pixels (read back by `source_options`)."""
    group = parser.add_argument_group("video and large images")
    group.add_argument(
        "--vid-stride",
        type=_vid_stride,
        default=1,
        metavar="N",
        help=f"video sources ({' '.join(VIDEO_EXTENSIONS[:6])} ...): keep every Nth frame, "
        "frames 0, N, 2N, ... (default 1: every frame); outputs are named <video>_f<frame>, "
        "e.g. clip_f000012. Needs PyAV: pip install 'fastsam-core[video]'",
    )
    group.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse image files with more than N pixels (default {DEFAULT_MAX_PIXELS}, PIL's "
        "decompression-bomb limit, about 179 MP); raise it for huge photos, e.g. 4e8 for a "
        "400 MP scan; 0 or none: no limit. Decoding needs 3 bytes per pixel of memory",
    )


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Apply --max-pixels (process-wide, `io.pixel_limit.set_max_pixels`) and return the
    keywords of `expand_sources` / `Predictor.stream`: {"vid_stride": N}."""
    from fastsam_core.io.pixel_limit import set_max_pixels

    set_max_pixels(args.max_pixels)
    return {"vid_stride": args.vid_stride}
