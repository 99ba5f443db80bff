"""What `fastsam serve` accepts: upload size, pixel count, prompt counts, and decoding uploads."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from fastsam_core.io.images import open_image

_READABLE = "choose a JPEG, PNG, WebP, BMP or TIFF file"


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status, the message is shown to users."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask of the server.

    Attributes:
        max_upload_bytes: largest image upload (bytes of the encoded file).
        max_pixels: largest decoded image (H0 * W0), checked from the header before decoding.
        max_json_bytes: largest JSON request body (prompts).
        max_prompts: most points, boxes or texts in one prompt request (each).
        max_text_chars: longest text prompt.
        cache_images: images whose everything-mode results stay cached (least recently used
            leave first).
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_json_bytes: int = 256 * 1024
    max_prompts: int = 64
    max_text_chars: int = 200
    cache_images: int = 8

    def validated(self) -> ServeLimits:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"serve limit {name} must be a positive integer, got {value!r}")
        return self


def decode_upload(data: bytes, limits: ServeLimits) -> Image.Image:
    """Uploaded file bytes -> a decoded PIL image (EXIF orientation applied, as for files).

    Raises RequestError 413 (too many bytes or pixels) or 415 (not a readable image). The pixel
    count is read from the header, so an oversized image is refused before it is decoded.
    """
    if len(data) > limits.max_upload_bytes:
        raise RequestError(
            413,
            f"upload is {len(data):,} bytes; the limit is {limits.max_upload_bytes:,} "
            "(fastsam serve --max-upload-mb)",
        )
    if not data:
        raise RequestError(415, "the upload is empty (0 bytes); choose an image file")
    try:
        with open_image(data, "upload") as opened:  # the decoder `fastsam segment` uses
            width, height = opened.size
            if width * height > limits.max_pixels:
                raise RequestError(
                    413,
                    f"image is {width}x{height} = {width * height:,} pixels; the limit is "
                    f"{limits.max_pixels:,} (fastsam serve --max-pixels)",
                )
            opened.load()  # decode now: truncated or corrupt data fails here
            return ImageOps.exif_transpose(opened)  # a copy, independent of the upload
    except RequestError:
        raise
    except ValueError as err:
        if isinstance(err.__cause__, UnidentifiedImageError):
            raise RequestError(415, f"the upload is not an image; {_READABLE}") from err
        cause = err.__cause__ or err
        raise RequestError(415, f"the image cannot be decoded ({cause}); {_READABLE}") from err
