"""Input/output at the product boundary: image decoding."""

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

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "LoadedImage",
    "expand_sources",
    "image_hw",
    "iter_images",
    "list_image_files",
    "load_image",
    "load_images",
]
