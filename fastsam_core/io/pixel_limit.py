"""The largest image file decoded: PIL's decompression-bomb guard, made explicit.

PIL refuses images above twice `Image.MAX_IMAGE_PIXELS` (2 x 89,478,485 = 178,956,970 pixels:
`DecompressionBombError`) and warns above it. `set_max_pixels(n)` moves the refusal to n pixels
and silences the warning, process-wide, so every PIL decode (this package's, the ONNX runtime's,
a DataLoader worker's) applies one limit; `open_image` rewords the refusal into one line naming
the file, its pixel count and `--max-pixels` (the CLI flag, `cli/_source_args.py`).
"""

from __future__ import annotations

import re
import warnings

# PIL's default refusal point: 2 * Image.MAX_IMAGE_PIXELS.
DEFAULT_MAX_PIXELS = 2 * 89_478_485


def parse_max_pixels(value: int | str | None) -> int:
    """A pixel limit from an int or text ("250000000", "2.5e8", "none"); 0 means no limit."""
    if value is None:
        return 0
    if isinstance(value, str):
        text = value.strip().lower().replace("_", "")
        if text == "none":
            return 0
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        value = int(number) if number == int(number) else -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"max pixels must be an integer >= 0 (e.g. 250000000 or 2.5e8; 0 or 'none': no "
            f"limit), got {value!r}"
        )
    return value


def set_max_pixels(limit: int | str | None) -> None:
    """Refuse image files with more than `limit` pixels (width x height); 0, None or "none"
    lifts the limit. Process-wide: it sets PIL's `Image.MAX_IMAGE_PIXELS` (to limit / 2, as PIL
    refuses above twice that) and ignores PIL's DecompressionBombWarning from then on. DataLoader
    workers started by fork inherit it; spawned ones must call it again."""
    from PIL import Image  # here, so the CLI's argument parser imports no PIL

    pixels = parse_max_pixels(limit)
    # PIL refuses when pixels > 2 * MAX_IMAGE_PIXELS; limit / 2 is exact in float below 2**53.
    Image.MAX_IMAGE_PIXELS = pixels / 2 if pixels else None  # type: ignore[assignment]
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def max_pixels() -> int | None:
    """The largest image, in pixels, that PIL decodes now; None when there is no limit."""
    from PIL import Image

    half = Image.MAX_IMAGE_PIXELS
    return None if half is None else int(2 * half)


def too_many_pixels(name: str, error: Exception) -> str:
    """PIL's DecompressionBombError as one line: the file, its pixel count, the limit, the fix."""
    found = re.search(r"\((\d+) pixels\)", str(error))  # PIL: "Image size (N pixels) exceeds..."
    pixels = int(found.group(1)) if found else None
    size = "too many pixels" if pixels is None else f"{pixels:,} pixels ({pixels / 1e6:.1f} MP)"
    need = "" if pixels is None else f" {pixels}"
    return (
        f"cannot read image {name}: {size}, over the limit of {max_pixels() or 0:,} pixels (a "
        f"guard against decompression bombs); pass --max-pixels{need} or more (0: no limit) to "
        "read it, or call fastsam_core.io.images.set_max_pixels"
    )
