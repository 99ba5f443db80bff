"""Image sources of the torch-free runtime -> (H0, W0, 3) uint8 RGB numpy arrays.

Stopgap until `fastsam_core.io.images` imports without torch (it imports torch at top level):
paths (Pillow, EXIF orientation applied, alpha dropped, 16-bit high byte), directories and globs
of image files, PIL images and numpy arrays (H, W), (H, W, 1|3|4) uint8 (`bgr=True` for OpenCV
arrays). Same conversions as `io.images` for these sources; torch tensors are not accepted.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class DecodedImage:
    """A decoded image: (H0, W0, 3) uint8 RGB `image`, output `name`, source `path` or None."""

    image: np.ndarray
    name: str
    path: Path | None = None

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


def expand_sources(source: Any) -> list[Any]:
    """Flatten lists, directories (sorted image files, hidden ones skipped) and globs."""
    if isinstance(source, (list, tuple)):
        return [item for s in source for item in expand_sources(s)]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.name[0] != "."
            )
        if not path.exists() and any(c in str(source) for c in "*?["):
            matches = sorted(glob.glob(str(source), recursive=True))
            files = [Path(m) for m in matches if Path(m).suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                raise FileNotFoundError(f"no image files match the pattern {str(source)!r}")
            return files
        return [path]
    return [source]


def load_image(source: Any, *, bgr: bool = False, index: int = 0) -> DecodedImage:
    """Decode one path, PIL image or numpy array (see the module docstring)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                return DecodedImage(_from_pil(image, str(path)), str(path), path)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from err
    name = f"image{index}"
    if isinstance(source, Image.Image):
        return DecodedImage(_from_pil(source, name), name)
    if isinstance(source, np.ndarray):
        return DecodedImage(_from_numpy(source, name, bgr), name)
    raise TypeError(
        f"unsupported image source type {type(source).__name__} for the ONNX runtime; expected a "
        "path, a directory or glob, a numpy (H, W, 3) uint8 array or a PIL image"
    )


def _from_pil(image: Any, name: str) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image {name} has zero size ({image.width}x{image.height})")
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit: keep the high byte
        gray = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return _from_numpy(gray, name, bgr=False)
    return np.array(image.convert("RGB"))  # (H, W, 3) uint8; alpha dropped


def _from_numpy(arr: np.ndarray, name: str, bgr: bool) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError(
            f"numpy image {name} must be uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) for "
            f"the ONNX runtime, got {arr.dtype} {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image {name} has zero size {arr.shape[:2]}")
    arr = arr[:, :, :3]
    return np.ascontiguousarray(arr[:, :, ::-1] if bgr else arr)


def load_images(source: Any, *, bgr: bool = False) -> list[DecodedImage]:
    """Decode every image of `source` (see `expand_sources`)."""
    items: Sequence[Any] = expand_sources(source)
    images = [load_image(item, bgr=bgr, index=i) for i, item in enumerate(items)]
    if not images:
        raise ValueError(f"no images found in {source!r}; expected image files {IMAGE_EXTENSIONS}")
    return images
