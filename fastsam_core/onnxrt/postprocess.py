"""The two post-processing references in numpy, chosen by `POSTPROCESS_NP` (spec §3.7-8): the
torch-free twin of `fastsam_core.postprocess` (same steps, same order, same deliberate
differences from the references; see that module's docstring).

Each function turns one image's NMS output into
``(regions, data, offsets, image_hw, boxes_orig, det)``: the masks in `CompactMasks`' layout
(regions (N, 4) int64 [x0, y0, x1, y1), data (M,) bool, offsets (N + 1,) int64, image_hw (H, W)),
the boxes (N, 4) float32 xyxy in original pixels and the detections those rows keep.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from fastsam_core.onnxrt.boxes import (
    full_box_step_official,
    full_box_step_ultralytics,
    scale_boxes,
)
from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.onnxrt.masks import assemble_masks
from fastsam_core.onnxrt.nms import Detections
from fastsam_core.ops.geometry import LetterboxGeometry

logger = logging.getLogger(__name__)
_warned: set[str] = set()

Instances = tuple[
    np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.ndarray, Detections
]  # regions, data, offsets, image_hw, boxes_orig, det


def _instances(masks: NumpyCompactMasks, boxes_orig: np.ndarray, det: Detections) -> Instances:
    return masks.regions, masks.data, masks.offsets, masks.image_hw, boxes_orig, det


def _empty(det: Detections, geometry: LetterboxGeometry, retina: bool) -> Instances:
    """No detections: no masks in the frame the predictor reports (as `Predictor._postprocess`)."""
    frame = geometry.orig_hw if retina else geometry.input_hw
    return _instances(NumpyCompactMasks.empty(frame), np.zeros((0, 4), np.float32), det)


def postprocess_official(
    det: Detections,
    protos: np.ndarray,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    mask_rule: str = "logit",
    full_box: bool = True,
) -> Instances:
    """FastSAM repository: full-image box step (letterbox px), masks, then boxes scaled.

    Args:
        det: NMS output of one image, boxes (N, 4) xyxy letterbox px.
        protos: (K, Hp, Wp) float32 prototypes of this image's own letterbox area.
        geometry: this image's letterbox geometry.
        retina: masks at the original resolution.
        mask_rule: "logit" or "sigmoid" thresholds.
        full_box: run the full-image box step on this image.
    """
    if len(det) == 0:
        return _empty(det, geometry, retina)
    boxes_input = det.boxes.astype(np.float32)  # (N, 4) letterbox px, a copy
    if full_box:
        step = full_box_step_official(boxes_input, geometry.input_hw)
        boxes_input = step.boxes  # snapped: these boxes crop the masks (spec §3.7)
        if step.matched.size:  # the full-box row keeps score and coefficients, class 0
            class_ids = det.class_ids.copy()
            class_ids[step.matched] = 0
            det = dataclasses.replace(det, class_ids=class_ids)
        if step.ambiguous:
            height, width = geometry.input_hw
            boxes_input[step.matched] = np.array([0.0, 0.0, width, height], np.float32)
            if "multi_full_box" not in _warned:
                _warned.add("multi_full_box")
                logger.warning(
                    "%d boxes cover the whole image (IoU > 0.9); all were replaced by the full "
                    "box (the official reference fails on this case and returns None)",
                    step.matched.size,
                )
    boxes_orig = scale_boxes(boxes_input, geometry, rule="official")
    masks = assemble_masks(
        protos, det.coeffs, boxes_input, boxes_orig, geometry,
        retina=retina, postprocess="official", mask_rule=mask_rule,
    )  # fmt: skip
    return _instances(masks, boxes_orig, det)


def postprocess_ultralytics(
    det: Detections,
    protos: np.ndarray,
    geometry: LetterboxGeometry,
    *,
    retina: bool,
    mask_rule: str = "logit",
    full_box: bool = True,
) -> Instances:
    """ultralytics 8.4.190: masks (logit > 0), empty ones dropped, then the full-image box step
    on the returned boxes only (`mask_rule` is always "logit", `full_box` always on)."""
    if len(det) == 0:
        return _empty(det, geometry, retina)
    boxes_input = det.boxes.astype(np.float32)  # (N, 4) letterbox px
    boxes_orig = scale_boxes(boxes_input, geometry, rule="ultralytics")
    masks = assemble_masks(
        protos, det.coeffs, boxes_input, boxes_orig, geometry,
        retina=retina, postprocess="ultralytics", mask_rule="logit",
    )  # fmt: skip
    keep = masks.areas() > 0  # 8.4.190 drops detections whose mask is empty (spec §3.8)
    if not keep.all():
        masks, boxes_orig = masks[keep], boxes_orig[keep]
        det = det.select(keep)
    boxes_orig = full_box_step_ultralytics(boxes_orig, geometry.orig_hw).boxes
    return _instances(masks, boxes_orig, det)


POSTPROCESS_NP: dict[str, Callable[..., Instances]] = {
    "official": postprocess_official,
    "ultralytics": postprocess_ultralytics,
}
