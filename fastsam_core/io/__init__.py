"""Input/output at the product boundary: image and video-frame decoding.

The names below load on first use (PEP 562), so `fastsam_core.io.pixel_limit` and
`fastsam_core.io.video` can be imported (e.g. by the CLI's argument parsers) without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "IMAGE_EXTENSIONS": "fastsam_core.io.images",
    "ImageSource": "fastsam_core.io.images",
    "LoadedImage": "fastsam_core.io.images",
    "expand_sources": "fastsam_core.io.images",
    "image_hw": "fastsam_core.io.images",
    "iter_images": "fastsam_core.io.images",
    "list_image_files": "fastsam_core.io.images",
    "load_image": "fastsam_core.io.images",
    "load_images": "fastsam_core.io.images",
    "max_pixels": "fastsam_core.io.pixel_limit",
    "set_max_pixels": "fastsam_core.io.pixel_limit",
    "VIDEO_EXTENSIONS": "fastsam_core.io.video",
    "VideoFrame": "fastsam_core.io.video",
}

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ImageSource",
    "LoadedImage",
    "VideoFrame",
    "expand_sources",
    "image_hw",
    "iter_images",
    "list_image_files",
    "load_image",
    "load_images",
    "max_pixels",
    "set_max_pixels",
]


def __getattr__(name: str) -> Any:
    """Import the module defining public `name` on first access, then cache it as a global."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static checkers see the names eagerly
    from fastsam_core.io.images import (
        IMAGE_EXTENSIONS,
        ImageSource,
        LoadedImage,
        expand_sources,
        image_hw,
        iter_images,
        list_image_files,
        load_image,
        load_images,
    )
    from fastsam_core.io.pixel_limit import max_pixels, set_max_pixels
    from fastsam_core.io.video import VIDEO_EXTENSIONS, VideoFrame
