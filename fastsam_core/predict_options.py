"""`PredictOptions`: the per-call settings of `Predictor` and `OnnxPredictor` and their
validation (spec §3). Imports no torch (the torch-free runtime uses it too)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastsam_core.config import MAX_IMGSZ
from fastsam_core.ops.geometry import check_imgsz
from fastsam_core.ops.references import POSTPROCESS_NAMES, Postprocess

if TYPE_CHECKING:  # a type only: ops.masks imports torch
    from fastsam_core.ops.masks import MaskRule

FullBoxMode = Literal["every_image", "first_image"]


@dataclass(frozen=True)
class PredictOptions:
    """Per-call settings of `Predictor` (every field can be overridden in `Predictor.__call__`).

    Attributes:
        imgsz: letterbox target, an int (square) or (H, W); `validated()` makes it (H, W)
            multiples of 32.
        conf: keep candidates with score > conf (strict), in [0, 1].
        iou: NMS drops boxes with IoU > iou against a better one, in [0, 1].
        max_det: most detections per image.
        retina_masks: masks at the original resolution (True) or the letterbox input resolution.
        postprocess: "official" (FastSAM repo) or "ultralytics" (8.4.190), see `postprocess.py`.
        mask_rule: official only: "logit" (> 0) or "sigmoid" (> 0.5, upstream 8.0.120).
        full_box: official only: full-image box step on "every_image" or, as the reference, on the
            "first_image" of each batch only.
        mask_backend: name in `mask_backends.MASK_BACKENDS`; "auto" (default) picks the fastest
            exact kernel for the device (tests/kernels: identical masks to "reference").
        bgr: numpy array inputs are BGR (as from OpenCV) instead of RGB.
        batch_size: images per forward pass.
    """

    imgsz: int | tuple[int, int]
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina_masks: bool = True
    postprocess: Postprocess = "official"
    mask_rule: MaskRule = "logit"
    full_box: FullBoxMode = "every_image"
    mask_backend: str = "auto"
    bgr: bool = False
    batch_size: int = 1

    def validated(self, *, backends: bool = True) -> PredictOptions:
        """Check every field; returns self with imgsz rounded up to multiples of 32.

        `backends=False` leaves `mask_backend` unchecked (the ONNX runtime has no mask backends
        and refuses the field itself); checking it imports torch (`mask_backends`).
        """
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}; e.g. {name}=0.4")
        _check_int("max_det", self.max_det, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        choices = {
            "postprocess": POSTPROCESS_NAMES,
            "mask_rule": ("logit", "sigmoid"),
            "full_box": ("every_image", "first_image"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.postprocess == "ultralytics" and self.mask_rule != "logit":
            raise ValueError(
                "mask_rule='sigmoid' exists only for postprocess='official' (ultralytics 8.4 "
                "thresholds logits at 0); drop mask_rule or use postprocess='official'"
            )
        if backends:
            self._check_mask_backend()
        imgsz = check_imgsz(self.imgsz)
        if max(imgsz) > MAX_IMGSZ:
            raise ValueError(
                f"imgsz {imgsz} is above the limit {MAX_IMGSZ} (the network input side; large "
                "photos are letterboxed down to imgsz, masks stay at full resolution)"
            )
        return dataclasses.replace(self, imgsz=imgsz)

    def _check_mask_backend(self) -> None:
        from fastsam_core.mask_backends import MASK_BACKENDS

        if self.mask_backend not in MASK_BACKENDS:
            raise ValueError(
                f"unknown mask_backend {self.mask_backend!r}; expected one of "
                f"{sorted(MASK_BACKENDS)}"
            )


PREDICT_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PredictOptions))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
