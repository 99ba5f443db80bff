"""The two post-processing references as two functions, chosen once by `POSTPROCESS` (spec §3.7-8).

Each function turns one image's NMS output into (masks, boxes in original pixels, detections):

* "official" (`postprocess_official`): the FastSAM repository (ultralytics 8.0.120 with logit > 0
  thresholds). Its full-image box step runs in letterbox space before the masks are built, so the
  snapped box crops its mask. Two deliberate differences from the reference:
  - the reference applies the step to **image 0 of each batch only**; we apply it to every image
    (`full_box="every_image"`); `full_box="first_image"` restores the reference behaviour;
  - with two or more near-full-image boxes the reference crashes and returns None; we replace
    every such box by the full box and log a warning once.
* "ultralytics" (`postprocess_ultralytics`): ultralytics 8.4.190's FastSAMPredictor (masks, then
  empty masks dropped, then the full-image box step on the returned boxes only).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.mask_backends import MaskBackend
from fastsam_core.model.fuse import FuseFormula
from fastsam_core.ops.boxes import full_box_step_official, full_box_step_ultralytics, scale_boxes
from fastsam_core.ops.letterbox import LetterboxGeometry
from fastsam_core.ops.masks import MaskRule
from fastsam_core.ops.nms import Detections
from fastsam_core.ops.references import Postprocess
from fastsam_core.profiling import NullClock

logger = logging.getLogger(__name__)
_warned: set[str] = set()

# (masks, boxes_orig (N, 4) xyxy original px, the detections those rows keep)
Instances = tuple[CompactMasks, torch.Tensor, Detections]


def postprocess_official(
    det: Detections,
    protos: torch.Tensor,
    geometry: LetterboxGeometry,
    assemble: MaskBackend,
    *,
    retina: bool,
    mask_rule: MaskRule,
    full_box: bool,
    timer: NullClock,
) -> Instances:
    """FastSAM repository: full-image box step (letterbox px), masks, then boxes scaled.

    Args:
        det: NMS output of one image (N >= 1 rows), boxes (N, 4) xyxy letterbox px.
        protos: (K, Hp, Wp) prototypes of this image's own letterbox area.
        geometry: this image's letterbox geometry.
        assemble: the mask backend (`mask_backends.get_mask_backend`).
        retina: masks at the original resolution.
        mask_rule: "logit" or "sigmoid" thresholds.
        full_box: run the full-image box step on this image.
        timer: stage hooks (`profiling`).
    """
    boxes_input = det.boxes.clone()  # (N, 4) letterbox px
    if full_box:
        step = full_box_step_official(boxes_input, geometry.input_hw)
        boxes_input = step.boxes  # snapped: these boxes crop the masks (spec §3.7)
        if step.matched.numel():  # the full-box row keeps score and coefficients, class 0
            class_ids = det.class_ids.clone()
            class_ids[step.matched] = 0
            det = dataclasses.replace(det, class_ids=class_ids)
        if step.ambiguous:
            height, width = geometry.input_hw
            boxes_input[step.matched] = boxes_input.new_tensor([0.0, 0.0, width, height])
            if "multi_full_box" not in _warned:
                _warned.add("multi_full_box")
                logger.warning(
                    "%d boxes cover the whole image (IoU > 0.9); all were replaced by the full "
                    "box (the official reference fails on this case and returns None)",
                    step.matched.numel(),
                )
    boxes_orig = scale_boxes(boxes_input, geometry, rule="official")
    with timer.stage("masks"):
        masks = assemble(
            protos, det.coeffs, boxes_input, boxes_orig, geometry,
            retina=retina, postprocess="official", mask_rule=mask_rule,
        )  # fmt: skip
    return masks, boxes_orig, det


def postprocess_ultralytics(
    det: Detections,
    protos: torch.Tensor,
    geometry: LetterboxGeometry,
    assemble: MaskBackend,
    *,
    retina: bool,
    mask_rule: MaskRule,
    full_box: bool,
    timer: NullClock,
) -> Instances:
    """ultralytics 8.4.190: masks (logit > 0), empty ones dropped, then the full-image box step
    on the returned boxes only (`mask_rule` is always "logit", `full_box` always on)."""
    boxes_input = det.boxes.clone()  # (N, 4) letterbox px
    boxes_orig = scale_boxes(boxes_input, geometry, rule="ultralytics")
    with timer.stage("masks"):
        masks = assemble(
            protos, det.coeffs, boxes_input, boxes_orig, geometry,
            retina=retina, postprocess="ultralytics", mask_rule="logit",
        )  # fmt: skip
    keep = masks.areas() > 0  # 8.4.190 drops detections whose mask is empty (spec §3.8)
    if not bool(keep.all()):
        masks, boxes_orig = masks[keep], boxes_orig[keep]
        det = det.select(keep)
    boxes_orig = full_box_step_ultralytics(boxes_orig, geometry.orig_hw).boxes
    return masks, boxes_orig, det


@dataclass(frozen=True)
class Semantics:
    """What one reference does differently: its post-processing and its Conv+BN fuse formula."""

    run: Callable[..., Instances]
    fuse_formula: FuseFormula  # spec §1.10: 8.0.120's formula for the official path


POSTPROCESS: dict[Postprocess, Semantics] = {
    "official": Semantics(postprocess_official, fuse_formula="v8.0"),
    "ultralytics": Semantics(postprocess_ultralytics, fuse_formula="current"),
}
