"""The work behind `fastsam serve`: one shared Predictor, a per-image cache, prompts, exports.

HTTP-free, so tests and other front ends can drive it directly. Everything mode runs once per
image under `model_lock` (one model, many request threads); box and point prompts only read the
cached results and run without the lock; text prompts use CLIP, also under the lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from fastsam_core.prompts import Prompts, make_prompts, prompt
from fastsam_core.results import Results
from fastsam_core.serve.cache import CachedImage, ImageCache
from fastsam_core.serve.limits import RequestError, ServeLimits, decode_upload
from fastsam_core.serve.payload import parse_prompt_request

if TYPE_CHECKING:
    from fastsam_core.predictor import Predictor

ID_CHARS = 16  # hex digits of sha256(upload) used as the image id


def _png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG file bytes (compress_level 1, as export.overlay.save_png)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class SegmentService:
    """Uploads, prompts and exports for the images of one server.

    Args:
        predictor: the shared everything-mode Predictor (its `clip_scorer` serves texts).
        limits: request bounds (`ServeLimits`).
    """

    def __init__(self, predictor: Predictor, limits: ServeLimits | None = None) -> None:
        self.predictor = predictor
        self.limits = (limits or ServeLimits()).validated()
        self.cache = ImageCache(self.limits.cache_images)
        self.model_lock = threading.Lock()

    def warm_up(self) -> None:
        """One everything-mode pass on a blank image, so the first upload is not the slow one."""
        with self.model_lock:
            self.predictor(Image.new("RGB", (64, 64)))

    # ------------------------------------------------------------------ images
    def upload(self, data: bytes) -> dict[str, Any]:
        """Image file bytes -> everything-mode JSON (cached by content: a re-upload is free)."""
        image_id = hashlib.sha256(data).hexdigest()[:ID_CHARS]
        entry = self.cache.get(image_id)
        if entry is None:
            image = decode_upload(data, self.limits)
            start = time.perf_counter()
            with self.model_lock:
                (result,) = self.predictor(image)
            result = dataclasses.replace(result.to("cpu"), path=image_id)
            seconds = time.perf_counter() - start
            document = {
                "image_id": image_id,
                "width": result.orig_hw[1],
                "height": result.orig_hw[0],
                "masks": result.to_json()["annotations"],
                "seconds": seconds,
            }
            entry = CachedImage(image_id, result, document)
            self.cache.put(entry)
        return entry.document

    def entry(self, image_id: str) -> CachedImage:
        """The cached image `image_id`, or RequestError 404 (unknown or evicted: upload again)."""
        entry = self.cache.get(image_id)
        if entry is None:
            raise RequestError(
                404,
                f"unknown image id {image_id!r} (never uploaded, or evicted from the cache of "
                f"{self.cache.capacity} images): upload the image again",
            )
        return entry

    def image_png(self, image_id: str) -> bytes:
        """The decoded upload as PNG (what the masks' pixels refer to, EXIF rotation applied)."""
        image = self.entry(image_id).results.orig_image
        assert image is not None  # everything-mode results keep the image
        return _png_bytes(image.numpy())

    # ------------------------------------------------------------------ prompts
    def select(
        self, image_id: str, body: Any, need_prompt: bool = False
    ) -> tuple[Results, Prompts | None]:
        """(everything-mode results of `image_id`, None) for no body (unless `need_prompt`), else
        (the rows the prompt request selects, its checked `Prompts`)."""
        results = self.entry(image_id).results
        if (body is None or body == {}) and not need_prompt:
            return results, None
        keywords = parse_prompt_request(body or {}, self.limits)
        try:
            prompts = make_prompts(**keywords)
            assert prompts is not None  # parse_prompt_request demands one prompt
            prompts = prompts.fit(results.orig_hw)
            if not prompts.texts:
                return prompt(results, prompts=prompts), prompts
            with self.model_lock:  # CLIP is a model too
                scorer = self._clip_scorer()
                return prompt(results, prompts=prompts, clip_scorer=scorer), prompts
        except RequestError:
            raise
        except (ValueError, TypeError) as err:
            raise RequestError(400, f"bad prompt: {err}") from err

    def prompt_rows(self, image_id: str, body: Any) -> dict[str, Any]:
        """A prompt request's JSON answer: {"image_id", "rows", "seconds"}."""
        start = time.perf_counter()
        selected, _ = self.select(image_id, body, need_prompt=True)
        return {
            "image_id": image_id,
            "rows": selected.to_json()["annotations"],
            "seconds": time.perf_counter() - start,
        }

    def _clip_scorer(self) -> Any:
        """The predictor's CLIP scorer; RequestError 503 with the reason when it cannot load."""
        try:
            return self.predictor.clip_scorer
        except (ImportError, OSError, ValueError, RuntimeError) as err:
            raise RequestError(503, f"text prompts are unavailable: {err}") from err

    # ------------------------------------------------------------------ exports
    def overlay_png(self, image_id: str, body: Any = None) -> bytes:
        """PNG overlay (`Results.plot`) of the everything-mode masks, or of a prompt request's
        rows with its boxes and points drawn."""
        selected, prompts = self.select(image_id, body)
        return _png_bytes(selected.plot(prompts=prompts))

    def results_json(self, image_id: str, body: Any = None) -> dict[str, Any]:
        """`Results.to_json()` of the everything-mode masks, or of a prompt request's rows."""
        selected, _ = self.select(image_id, body)
        return selected.to_json()

    def info(self) -> dict[str, Any]:
        """Server facts for the page: model input size, device, limits."""
        options = self.predictor.options
        return {
            "imgsz": list(options.imgsz) if not isinstance(options.imgsz, int) else options.imgsz,
            "device": str(self.predictor.device),
            "torch": torch.__version__,
            "limits": dataclasses.asdict(self.limits),
        }
