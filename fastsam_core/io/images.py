"""Image input: paths, arrays, PIL images and tensors -> (H0, W0, 3) uint8 RGB images (spec §3.2).

Every accepted source becomes one `LoadedImage` holding a `(H0, W0, 3)` uint8 **RGB** torch tensor
(or, with `array=True`, a numpy array: the torch-free runtime `fastsam_core.onnxrt`) and a name
used for output files. This module imports torch only when a tensor is made or was passed in.
Conversions (all documented, none rejected):

* files are decoded with Pillow (JPEG, PNG, WebP, BMP, TIFF...) and EXIF orientation is applied;
* grayscale, palette, CMYK, YCbCr... are converted to RGB; an alpha channel is **dropped** (not
  composited), which is what the reference's `cv2.imread(IMREAD_COLOR)` and PIL `.convert('RGB')`
  do;
* 16-bit images keep their high byte (`v >> 8`), as `cv2.imread(IMREAD_COLOR)` does;
* numpy arrays are RGB unless `bgr=True` (the reference assumes BGR for arrays: pass `bgr=True`
  for arrays from OpenCV); they are channels-last `(H, W)` or `(H, W, 1|3|4)`;
* torch tensors are `(3, H, W)` or `(H, W, 3)`. A tensor whose first and last dims are both 3 is
  read as `(3, H, W)`. A 4-D tensor is a batch of `(3, H, W)` images;
* pixel values: uint8 as is, uint16 keeps its high byte, bool is 0/255, floating point must lie
  in [0, 1] (multiplied by 255 and rounded; values up to 1/255 outside are rounding noise and
  clamped, anything further, NaN or infinity is rejected: 0-255 data in a float array is the
  usual cause). Other dtypes are rejected, never reinterpreted.

Directory listings skip hidden files (names starting with "."), as glob patterns do: macOS
writes `._name.jpg` companions that are not images.

Video files (`io.video.VIDEO_EXTENSIONS`, passed by name or matched by a glob; directory
listings take images only) expand to one `VideoFrame` per kept frame, decoded by `load_image`.

Image files above `max_pixels()` pixels are refused before decoding (PIL's decompression-bomb
guard, 178,956,970 pixels unless `set_max_pixels` moved it: `io.pixel_limit`).
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastsam_core.io.pixel_limit import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from fastsam_core.io.pixel_limit import max_pixels as max_pixels
from fastsam_core.io.pixel_limit import set_max_pixels as set_max_pixels
from fastsam_core.io.pixel_limit import too_many_pixels
from fastsam_core.io.video import (
    VideoFrame,
    check_vid_stride,
    frame_stem,
    is_video_path,
    read_frame,
    video_frames,
)

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# Float pixels this far outside [0, 1] are rounding noise (e.g. from resampling) and are clamped;
# beyond it the data is not a [0, 1] image (usually 0-255 values in a float array).
_FLOAT_SLACK = 1 / 255

_EXIF_ORIENTATION = 0x0112  # EXIF tag 274, what ImageOps.exif_transpose reads

if TYPE_CHECKING:
    import torch

# One image or a sequence of them; a directory or glob string expands to its image files, a
# video file to its frames.
ImageSource = Union[str, Path, np.ndarray, Image.Image, "torch.Tensor", VideoFrame]  # noqa: UP007


def _is_tensor(value: object) -> bool:
    """`value` is a torch tensor (torch was imported by whoever made it; never imported here)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


@dataclass
class LoadedImage:
    """A decoded image.

    Attributes:
        image: (H0, W0, 3) uint8 RGB tensor on the CPU (a numpy array when loaded with
            `array=True`).
        name: source name for output files (file path, or "image<i>" for in-memory sources).
        path: the file it came from, or None for in-memory sources.
        frame: the frame index when `path` is a video, else None.
    """

    image: Any  # torch.Tensor, or np.ndarray with array=True
    name: str
    path: Path | None = None
    frame: int | None = None

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


def _has_glob_chars(text: str) -> bool:
    return any(c in text for c in "*?[")


def list_image_files(directory: str | Path) -> list[Path]:
    """Image files directly inside `directory` (by extension, case-insensitive; hidden files
    skipped), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image directory not found: {directory}")
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def expand_sources(
    source: ImageSource | Sequence[ImageSource], vid_stride: int = 1
) -> list[ImageSource]:
    """Flatten a source into single-image items without decoding anything.

    A directory becomes its sorted image files, a glob pattern (e.g. "photos/*.jpg") its sorted
    image and video matches, a list/tuple its expanded items, a 4-D tensor its images, a video
    file one `VideoFrame` per `vid_stride`-th frame (0, N, 2N...; counted, not decoded). Missing
    paths stay in the list; `load_image` reports them.

    Raises:
        ValueError: a video that cannot be read or has no frames; vid_stride < 1.
        ImportError: a video without PyAV installed.
    """
    check_vid_stride(vid_stride)
    if isinstance(source, (list, tuple)):
        return [item for s in source for item in expand_sources(s, vid_stride)]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return list(list_image_files(path))
        if not path.exists() and _has_glob_chars(str(source)):
            matches = [Path(m) for m in sorted(glob.glob(str(source), recursive=True))]
            files = [m for m in matches if m.suffix.lower() in IMAGE_EXTENSIONS or is_video_path(m)]
            if not files:
                raise FileNotFoundError(
                    f"no image files match the pattern {str(source)!r} (nor video files)"
                )
            return [item for m in files for item in _file_items(m, vid_stride)]
        return _file_items(path, vid_stride)
    if _is_tensor(source) and source.ndim == 4:  # type: ignore[union-attr]
        return list(source.unbind(0))  # type: ignore[union-attr]
    return [source]  # type: ignore[list-item]  # ndarray is also a Sequence to mypy


def _file_items(path: Path, vid_stride: int) -> list[ImageSource]:
    """A video file's kept frames, or the path itself (an image, or a missing file)."""
    if is_video_path(path) and path.is_file():
        return list(video_frames(path, vid_stride))
    return [path]


def iter_images(
    source: ImageSource | Sequence[ImageSource],
    *,
    bgr: bool = False,
    vid_stride: int = 1,
    array: bool = False,
) -> Iterator[LoadedImage]:
    """Lazily decode every image of `source` (see `expand_sources`); errors raise on bad items."""
    for i, item in enumerate(expand_sources(source, vid_stride)):
        yield load_image(item, bgr=bgr, index=i, array=array)


def load_images(
    source: ImageSource | Sequence[ImageSource],
    *,
    bgr: bool = False,
    vid_stride: int = 1,
    array: bool = False,
) -> list[LoadedImage]:
    """Decode every image of `source` (see `expand_sources`) into a list."""
    items = list(iter_images(source, bgr=bgr, vid_stride=vid_stride, array=array))
    if not items:
        raise ValueError(f"no images found in {source!r}; expected image files {IMAGE_EXTENSIONS}")
    return items


def load_image(
    source: ImageSource, *, bgr: bool = False, index: int = 0, array: bool = False
) -> LoadedImage:
    """Decode one image source into a (H0, W0, 3) uint8 RGB tensor (numpy array if `array`).

    Args:
        source: a file path, a numpy array (H, W), (H, W, 1|3|4) uint8/uint16/bool/float in
            [0, 1], a PIL image, a torch tensor (3, H, W) / (H, W, 3) uint8/bool/float in
            [0, 1], or a `VideoFrame` (from `expand_sources` of a video).
        bgr: numpy arrays only: the channels are in BGR order (as from OpenCV).
        index: position in a batch, used to name in-memory sources ("image<index>").
        array: keep the image a numpy array (never imports torch).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: unreadable/corrupt file or video frame, more pixels than `max_pixels()`,
            zero-size image, wrong shape, float values outside [0, 1], NaN.
        TypeError: unsupported source type or dtype.
    """
    loaded = _decode(source, bgr, index)
    if not array:
        import torch

        loaded.image = torch.from_numpy(loaded.image)
    return loaded


def _decode(source: ImageSource, bgr: bool, index: int) -> LoadedImage:
    """`load_image` with the image as a numpy array."""
    if isinstance(source, VideoFrame):
        path = Path(source.path)
        return LoadedImage(read_frame(source), str(path), path, source.index)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if is_video_path(path) and not path.exists():
            raise FileNotFoundError(f"video file not found: {path}")
        if is_video_path(path) and path.is_file():
            raise ValueError(
                f"{path} is a video: pass it through expand_sources (or to Predictor / "
                "Predictor.stream), which yields one VideoFrame per frame"
            )
        return LoadedImage(_read_file(path), str(path), path)
    name = f"image{index}"
    if isinstance(source, Image.Image):
        try:
            return LoadedImage(_from_pil(source, name), name)
        except (OSError, SyntaxError) as err:  # a lazily opened, truncated or corrupt file
            raise ValueError(f"cannot decode PIL image {name}: {err}") from err
    if isinstance(source, np.ndarray):
        return LoadedImage(_from_numpy(source, bgr=bgr, name=name), name)
    if _is_tensor(source):
        return LoadedImage(_from_tensor(source, name), name)
    raise TypeError(
        f"unsupported image source type {type(source).__name__}; expected a path, numpy array, "
        "PIL image, torch tensor, or a list/directory of them"
    )


def image_hw(path: str | Path) -> tuple[int, int]:
    """(H0, W0) of an image file as `load_image` would return it (EXIF orientation applied),
    read from the header without decoding the pixels."""
    path = Path(path)
    with _open_file(path) as opened:
        width, height = opened.size
        # Orientations 5-8 are rotated by 90 degrees: exif_transpose swaps width and height.
        if opened.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
    return height, width


def _read_file(path: Path) -> np.ndarray:
    with _open_file(path) as opened:
        frames = getattr(opened, "n_frames", 1)
        if frames > 1 and str(path) not in _warned_frames:  # animated GIF/PNG/WebP, TIFF pages
            _warned_frames.add(str(path))
            logger.warning("%s has %d frames; segmenting the first only", path, frames)
        opened.load()  # decode now so truncated/corrupt data fails here, naming the file
        # in place: exif_transpose would otherwise copy the whole image even when upright
        ImageOps.exif_transpose(opened, in_place=True)
        return _from_pil(opened, str(path))


_warned_frames: set[str] = set()


@contextlib.contextmanager
def open_image(source: Path | bytes, name: str = "upload") -> Iterator[Image.Image]:
    """Open an image file (or the bytes of one, e.g. an upload) with Pillow, lazily: the pixels
    are decoded by `.load()`. Every failure becomes one ValueError naming the file (`name` for
    bytes); its `__cause__` is Pillow's error (UnidentifiedImageError: not an image at all)."""
    if isinstance(source, bytes):
        if not source:
            raise ValueError(f"cannot read image {name}: the data is empty (0 bytes)")
        stream: Path | io.BytesIO = io.BytesIO(source)
    else:
        path, name = source, str(source)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {path}")
        if path.is_dir():
            raise ValueError(f"{path} is a directory; pass it as a source to expand its images")
        if path.stat().st_size == 0:
            raise ValueError(f"cannot read image {path}: the file is empty (0 bytes)")
        stream = path
    try:
        with Image.open(stream) as opened:
            yield opened
    except Image.DecompressionBombError as err:  # over max_pixels() (`io.pixel_limit`)
        raise ValueError(too_many_pixels(name, err)) from err
    except UnidentifiedImageError as err:
        raise ValueError(f"cannot read image {name}: {err}") from err
    except ImportError as err:
        # Other libraries (ultralytics, pillow plugins) patch `Image.open` with fallbacks that
        # raise it for undecodable files; it still means "not an image we can read".
        raise ValueError(f"cannot read image {name}: {err}") from UnidentifiedImageError(str(err))
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {name}: {err}") from err


_open_file = open_image  # files only, by path (kept for the callers in this module)


def _from_pil(img: Image.Image, name: str) -> np.ndarray:
    if img.width == 0 or img.height == 0:
        raise ValueError(f"image {name} has zero size ({img.width}x{img.height})")
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale (mode "I" holds it in 32-bit ints): keep the high byte, as
        # cv2.imread(IMREAD_COLOR) does; values above 16 bits saturate.
        arr = np.asarray(img).astype(np.int64)
        gray = np.clip(arr >> 8, 0, 255)
        return _from_numpy(gray.astype(np.uint8), bgr=False, name=name)
    if mode == "F":
        arr = np.clip(np.rint(np.asarray(img, dtype=np.float32)), 0, 255).astype(np.uint8)
        return _from_numpy(arr, bgr=False, name=name)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")  # palette transparency becomes alpha, then alpha is dropped
    if img.mode != "RGB":
        img = img.convert("RGB")  # RGBA -> RGB drops alpha
    return _rgb_array(img)


_STRIP_BYTES = 16 << 20  # rows copied at a time: peak memory = the image + one strip


def _rgb_array(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 copy of an RGB image, made in strips of rows: `np.asarray(img)` would hold
    a bytes copy and the array at once (2x the image; 550 MB extra for 96 MP)."""
    width, height = img.size
    if 3 * width * height <= 4 * _STRIP_BYTES:  # small: one copy is faster than strips
        return np.array(img)
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _STRIP_BYTES // (3 * width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = np.asarray(img.crop((0, top, width, bottom)))
    return out


def _from_numpy(arr: np.ndarray, *, bgr: bool, name: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    elif arr.ndim != 3 or arr.shape[2] not in (3, 4):
        hint = (
            "; numpy images are channels-last: use arr.transpose(1, 2, 0)"
            if arr.ndim == 3 and arr.shape[0] in (1, 3, 4)
            else ""
        )
        raise ValueError(
            f"numpy image {name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {arr.shape}{hint}"
        )
    arr = arr[:, :, :3]  # drop alpha
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image {name} has zero size {arr.shape[:2]}")
    arr = _to_uint8(arr, name)
    if bgr:
        arr = arr[:, :, ::-1]
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. np.frombuffer / cv2 views: torch needs writable memory
        arr = arr.copy()
    return arr


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"image {name} contains NaN or infinite values")
        low, high = float(arr.min()), float(arr.max())
        if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
            raise ValueError(
                f"float image {name} must have values in [0, 1], got [{low:.4g}, {high:.4g}]; "
                "divide 0-255 data by 255 (or pass uint8), or clip to [0, 1] first"
            )
        return np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    raise TypeError(
        f"image {name} has dtype {arr.dtype}; expected uint8, uint16, bool or float in [0, 1] "
        "(for 0-255 integers use .astype(np.uint8))"
    )


def _from_tensor(t: torch.Tensor, name: str) -> np.ndarray:
    import torch

    if t.device.type == "meta" or t.layout != torch.strided:
        raise ValueError(
            f"tensor image {name} must be a dense tensor with data, got layout {t.layout} on "
            f"{t.device}"
        )
    t = t.detach().cpu()
    if t.ndim == 3 and t.shape[0] == 3:
        t = t.permute(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    elif not (t.ndim == 3 and t.shape[2] == 3):
        raise ValueError(
            f"tensor image {name} must have shape (3, H, W) or (H, W, 3), got {tuple(t.shape)}"
        )
    if t.dtype in (torch.uint8, torch.bool):
        arr = t.numpy()
    elif t.dtype.is_floating_point:
        arr = t.float().numpy()  # float in [0, 1]
    else:
        raise TypeError(
            f"tensor image {name} has dtype {t.dtype}; expected uint8 in [0, 255], bool or float "
            "in [0, 1] (for 0-255 integers use .to(torch.uint8))"
        )
    return _from_numpy(np.ascontiguousarray(arr), bgr=False, name=name)


def source_stem(loaded: LoadedImage) -> str:
    """File-name stem for outputs: the file's stem ("clip_f000012" for frame 12 of clip.mp4),
    or the in-memory name."""
    if loaded.path is not None and loaded.frame is not None:
        return frame_stem(loaded.path, loaded.frame)
    return loaded.path.stem if loaded.path is not None else loaded.name
