"""fastsam_core.onnxrt masks / postprocess / stability vs the torch reference (issue 14 item 3).

Exactness: the numpy assembly uses the same bilinear taps (ATen's float32 index arithmetic) and
the same x-then-y order as F.interpolate, but its per-mask GEMV (and sigmoid) rounds differently
from torch's GEMM, and ultralytics' two retina resizes are folded into one band of taps. Values
therefore differ by a few float32 ulps, and only a pixel whose value lies within that of the
threshold can flip: every test checks that each differing pixel's float64 reference value is
within EPS of the threshold (as tests/kernels/test_mask_assembly.py does for the kernels). On the
tiny network's outputs the flips are pixels whose logit is exactly 0 (prototypes that are exactly
zero there): "sigmoid" values of exactly 0.5, which float32 bilinear weights summing to 1 +- 1 ulp
push to either side, in torch's own eager backend too (it agrees with numpy on every pixel here).
That test also bounds their count (<= 1e-4 of the pixels, mean mask IoU >= 0.9999).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from fastsam_core import predictor as predictor_module
from fastsam_core.mask_backends import assemble_masks_reference, get_mask_backend
from fastsam_core.onnxrt import stability as np_stability
from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.onnxrt.masks import assemble_masks, axis_taps
from fastsam_core.onnxrt.nms import Detections as NumpyDetections
from fastsam_core.onnxrt.postprocess import POSTPROCESS_NP
from fastsam_core.ops import stability as torch_stability
from fastsam_core.ops.boxes import full_box_step_official
from fastsam_core.postprocess import POSTPROCESS, Semantics
from fastsam_core.profiling import NO_CLOCK
from fastsam_kernels.mask_assembly.plan import axis_taps as torch_axis_taps
from tests.kernels.test_mask_assembly import PATHS, make_inputs, orig_boxes, reference_values
from tests.support.onnx_graphs import TINY_CHECKPOINT
from tests.support.photos import photo

EPS = 1e-4  # |value - threshold| that float32 rounding may cross (see module docstring)


def _dense(masks: NumpyCompactMasks) -> np.ndarray:
    return masks.to_dense()  # (N, H, W) bool


@pytest.mark.parametrize("frame", ["tall", "wide"])
@pytest.mark.parametrize("n", [0, 1, 40])
@pytest.mark.parametrize(("postprocess", "rule", "retina"), PATHS)
def test_assemble_masks_matches_torch_reference(frame, n, postprocess, rule, retina):
    geometry, protos, coeffs, boxes_input = make_inputs(frame, n)  # edge-case boxes in rows 1-6
    boxes_orig = orig_boxes(boxes_input, geometry, postprocess)
    options = dict(retina=retina, postprocess=postprocess, mask_rule=rule)
    want = assemble_masks_reference(protos, coeffs, boxes_input, boxes_orig, geometry, **options)
    got = assemble_masks(
        protos.numpy(), coeffs.numpy(), boxes_input.numpy(), boxes_orig.numpy(), geometry, **options
    )
    assert got.image_hw == want.image_hw and len(got) == n
    values, threshold = reference_values(
        protos, coeffs, boxes_input, boxes_orig, geometry, postprocess, rule, retina
    )
    ambiguous = ((values - threshold).abs() <= EPS) & (values != 0)  # crop zeros never excused
    differ = torch.from_numpy(_dense(got)) != want.to_dense()
    assert not (differ & ~ambiguous).any(), f"{int((differ & ~ambiguous).sum())} pixels differ"
    # only each mask's window is stored, inside the frame
    regions = got.regions
    assert got.data.size == int(
        ((regions[:, 3] - regions[:, 1]) * (regions[:, 2] - regions[:, 0])).sum()
    )
    assert (regions[:, 0::2] <= got.image_hw[1]).all() and (
        regions[:, 1::2] <= got.image_hw[0]
    ).all()


# ---------------------------------------------------------------- real network outputs
@functools.cache
def _captured(name: str, imgsz: int) -> tuple:
    """(det, protos, geometry) the torch Predictor hands to post-processing for one photo (the
    tiny 8.0.120 checkpoint, plain fp32 path): captured by wrapping `POSTPROCESS`."""
    seen = []

    def spy(run):
        def wrapped(det, protos, geometry, *args, **kwargs):
            seen.append((det, protos, geometry))
            return run(det, protos, geometry, *args, **kwargs)

        return wrapped

    patched = {k: Semantics(spy(v.run), v.fuse_formula) for k, v in POSTPROCESS.items()}
    original, predictor_module.POSTPROCESS = predictor_module.POSTPROCESS, patched
    try:
        predictor = predictor_module.Predictor(str(TINY_CHECKPOINT), device="cpu", fast=False)
        predictor(str(photo(name)), imgsz=imgsz, conf=0.1, iou=0.7)
    finally:
        predictor_module.POSTPROCESS = original
    ((det, protos, geometry),) = seen
    assert len(det) >= 10  # a real test: many instances, incl. near-full-image boxes
    return det, protos, geometry


def _to_numpy(det) -> NumpyDetections:
    fields = ("boxes", "scores", "class_ids", "coeffs", "anchor_indices")
    return NumpyDetections(*(getattr(det, f).numpy().copy() for f in fields))


REAL_CASES = [
    (name, imgsz, post, retina, rule, full_box)
    for name, imgsz in (("coffee.jpg", 320), ("astronaut.jpg", 256))
    for post in ("official", "ultralytics")
    for retina in (True, False)
    for rule in (("logit", "sigmoid") if post == "official" else ("logit",))
    for full_box in ((True, False) if post == "official" else (True,))
]


@pytest.mark.parametrize(("name", "imgsz", "post", "retina", "rule", "full_box"), REAL_CASES)
def test_postprocess_matches_torch_on_network_outputs(name, imgsz, post, retina, rule, full_box):
    det, protos, geometry = _captured(name, imgsz)
    want_masks, want_boxes, want_det = POSTPROCESS[post].run(
        det, protos, geometry, get_mask_backend("reference"),
        retina=retina, mask_rule=rule, full_box=full_box, timer=NO_CLOCK,
    )  # fmt: skip
    regions, data, offsets, image_hw, boxes, got_det = POSTPROCESS_NP[post](
        _to_numpy(det), protos.numpy(), geometry, retina=retina, mask_rule=rule, full_box=full_box
    )
    assert image_hw == want_masks.image_hw
    assert boxes.dtype == np.float32 and np.array_equal(boxes, want_boxes.numpy())
    for field in dataclasses.fields(got_det):
        assert np.array_equal(getattr(got_det, field.name), getattr(want_det, field.name).numpy())
    got = _dense(NumpyCompactMasks(regions, data, offsets, image_hw))  # (N, H, W)
    want = want_masks.to_dense().numpy()
    assert got.shape == want.shape
    differ = got != want
    assert np.count_nonzero(differ) <= 1e-4 * want.size
    if differ.any():  # each flip is a pixel whose value is within float32 rounding of threshold
        boxes_input = (
            _official_crop_boxes(det, geometry, full_box) if post == "official" else det.boxes
        )
        values, threshold = reference_values(
            protos, det.coeffs, boxes_input, want_boxes, geometry, post, rule, retina
        )
        near = (values.numpy() - threshold).__abs__() <= EPS
        assert not (differ & ~near).any()
    inter, union = (got & want).sum((1, 2)), (got | want).sum((1, 2))
    assert np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)) >= 0.9999


def _official_crop_boxes(det, geometry, full_box: bool) -> torch.Tensor:
    """(N, 4) letterbox boxes that crop the official masks (`postprocess_official`'s step)."""
    if not full_box:
        return det.boxes
    step = full_box_step_official(det.boxes, geometry.input_hw)
    boxes = step.boxes.clone()
    if step.ambiguous:
        boxes[step.matched] = boxes.new_tensor([0.0, 0.0, *geometry.input_hw[::-1]])
    return boxes


def test_postprocess_without_detections():
    det, protos, geometry = _captured("coffee.jpg", 320)
    empty = _to_numpy(det).select(np.zeros(len(det), dtype=bool))
    for post in POSTPROCESS_NP:
        for retina, frame in ((True, geometry.orig_hw), (False, geometry.input_hw)):
            regions, data, offsets, image_hw, boxes, kept = POSTPROCESS_NP[post](
                empty, protos.numpy(), geometry, retina=retina
            )
            assert image_hw == frame and regions.shape == (0, 4) and offsets.tolist() == [0]
            assert boxes.shape == (0, 4) and len(kept) == 0 and data.size == 0


def test_assemble_masks_errors():
    geometry, protos, coeffs, boxes = make_inputs("wide", 3)
    args = (protos.numpy(), coeffs.numpy(), boxes.numpy(), boxes.numpy(), geometry)
    with pytest.raises(ValueError, match="postprocess must be"):
        assemble_masks(*args, retina=True, postprocess="yolo")
    with pytest.raises(ValueError, match="mask_rule must be"):
        assemble_masks(*args, retina=True, postprocess="official", mask_rule="soft")
    with pytest.raises(ValueError, match=r"coeffs must be \(N, K\)"):
        assemble_masks(args[0], args[1][:, :5], *args[2:], retina=True, postprocess="official")


# ---------------------------------------------------------------- stability score
@pytest.mark.parametrize("source", ["synthetic", "network"])
def test_stability_matches_torch(source):
    if source == "network":
        det, protos, _ = _captured("coffee.jpg", 320)
        coeffs, boxes = det.coeffs, det.boxes
    else:
        geometry, protos, coeffs, boxes = make_inputs("tall", 40)
    want = torch_stability.box_stability_scores(protos, coeffs, boxes).numpy()
    got = np_stability.box_stability_scores(protos.numpy(), coeffs.numpy(), boxes.numpy())
    assert got.dtype == np.float32 and got.shape == want.shape
    # counts of logits above t +- 1: equal unless a cell's logit rounds across t +- 1 (GEMV
    # order); then the score moves by about 1 / (cells in the box)
    assert np.mean(got == want) >= 0.95
    assert np.abs(got - want).max() <= 0.02


# ---------------------------------------------------------------- bilinear taps
@pytest.mark.parametrize(
    ("kind", "proto", "frame", "crop_start", "crop_size", "factor"),
    [("resize", 40, 160, 0, 0, 1), ("resize", 17, 61, 0, 0, 1), ("resize", 64, 50, 0, 0, 1),
     ("crop_resize", 40, 181, 2, 36, 1), ("crop_resize", 24, 7, 0, 24, 1),
     ("ultralytics_native", 24, 70, 3, 45, 4), ("ultralytics_native", 40, 181, 1, 78, 2),
     ("ultralytics_native", 16, 64, 0, 0, 4), ("ultralytics_native", 32, 100, 0, 32, 1)],
)  # fmt: skip
def test_axis_taps_equal_the_kernels_taps(kind, proto, frame, crop_start, crop_size, factor):
    # the separable taps of the torch fast backends and of the numpy assembly, side by side
    args = (kind, proto, frame, crop_start, crop_size, factor)
    want, got = torch_axis_taps(*args, torch.device("cpu")), axis_taps(*args)
    assert np.array_equal(got.index, want.index.numpy())
    assert np.array_equal(got.weight, want.weight.numpy())
    assert np.array_equal(got.lo, want.lo.numpy()) and np.array_equal(got.hi, want.hi.numpy())
