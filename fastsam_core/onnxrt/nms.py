"""Numpy twin of `fastsam_core.ops.nms` (spec §3.6): confidence filter + class-offset greedy NMS.

Same candidates, order, tie-breaking and float32 IoU arithmetic as the torch version, so both keep
the same anchors (tests/unit/test_onnxrt_ops.py runs them side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastsam_core.onnxrt.boxes import xywh_to_xyxy

MAX_WH = 7680  # class offset in pixels, larger than any input side (upstream max_wh)
_CHUNK = 256  # candidates resolved together by `greedy_nms`


@dataclass
class Detections:
    """Instances kept by NMS for one image, in descending score order (numpy arrays).

    Attributes:
        boxes: (N, 4) float32 xyxy in letterboxed input pixels.
        scores: (N,) float32 probability of the best class.
        class_ids: (N,) int64.
        coeffs: (N, K) float32 mask coefficients.
        anchor_indices: (N,) int64 index of each instance's anchor in the head output (0..A-1).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    coeffs: np.ndarray
    anchor_indices: np.ndarray

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def select(self, index: np.ndarray) -> Detections:
        """A new Detections with rows ``index`` (bool mask or int64 indices)."""
        return Detections(
            self.boxes[index],
            self.scores[index],
            self.class_ids[index],
            self.coeffs[index],
            self.anchor_indices[index],
        )


def non_max_suppression(
    boxes_xywh: np.ndarray,
    class_scores: np.ndarray,
    coeffs: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.7,
    max_det: int = 300,
    max_nms: int = 30000,
    agnostic: bool = False,
    classes: Sequence[int] | None = None,
) -> list[Detections]:
    """Per-image NMS, as `ops.nms.non_max_suppression`.

    Keep anchors whose best class score is strictly > ``conf_threshold``; stable descending sort,
    first ``max_nms``; offset boxes by ``class * 7680`` unless ``agnostic``; greedy NMS drops IoU
    strictly > ``iou_threshold`` and stops after ``max_det`` kept boxes.

    Args:
        boxes_xywh: (B, 4, A) float32 (cx, cy, w, h) in input pixels.
        class_scores: (B, nc, A) float32 probabilities (after sigmoid).
        coeffs: (B, K, A) float32 mask coefficients (K may be 0).
        conf_threshold, iou_threshold, max_det, max_nms, agnostic, classes: as above.

    Returns:
        B ``Detections``, each in descending score order.
    """
    if boxes_xywh.ndim != 3 or boxes_xywh.shape[1] != 4:
        raise ValueError(f"boxes_xywh must be (B, 4, A), got {tuple(boxes_xywh.shape)}")
    batch, _, num_anchors = boxes_xywh.shape
    if (
        class_scores.ndim != 3
        or class_scores.shape[0] != batch
        or class_scores.shape[2] != num_anchors
    ):
        raise ValueError(
            f"class_scores must be (B, nc, A) = ({batch}, nc, {num_anchors}), got "
            f"{tuple(class_scores.shape)}"
        )
    if coeffs.ndim != 3 or coeffs.shape[0] != batch or coeffs.shape[2] != num_anchors:
        raise ValueError(
            f"coeffs must be (B, K, A) = ({batch}, K, {num_anchors}), got {tuple(coeffs.shape)}"
        )
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    wanted = None if classes is None else np.asarray(list(classes), dtype=np.int64)
    results = []
    for b in range(batch):
        class_ids = class_scores[b].argmax(axis=0).astype(np.int64)  # (A,) first best class
        scores = np.take_along_axis(class_scores[b], class_ids[None], axis=0)[0]  # (A,)
        keep = scores > conf_threshold  # strict, as upstream
        if wanted is not None:
            keep &= np.isin(class_ids, wanted)
        index = np.flatnonzero(keep)  # (n,) anchor indices
        # stable descending sort: ties keep anchor order (negation is exact in float)
        order = np.argsort(-scores[index], kind="stable")[:max_nms]
        index = index[order]
        boxes = xywh_to_xyxy(boxes_xywh[b][:, index].T)  # (4, n) -> (n, 4)
        offset = (
            np.zeros((1, 1), boxes.dtype)
            if agnostic
            else class_ids[index, None].astype(boxes.dtype) * boxes.dtype.type(MAX_WH)
        )  # (n, 1)
        kept = greedy_nms(boxes + offset, iou_threshold, max_det)  # (N,) rows of `boxes`
        index = index[kept]
        results.append(
            Detections(
                boxes=boxes[kept],
                scores=scores[index],
                class_ids=class_ids[index],
                coeffs=np.ascontiguousarray(coeffs[b][:, index].T),  # (K, N) -> (N, K)
                anchor_indices=index.astype(np.int64),
            )
        )
    return results


def box_iou_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(M, N) IoU of xyxy boxes with ``torchvision.ops.nms``'s float arithmetic, op by op (as
    `ops.nms.box_iou_pairs`); 0 / 0 gives NaN (never > t)."""
    area_first = (first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])  # (M,)
    area_second = (second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1])  # (N,)
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])  # (M, N, 2)
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    wh = np.maximum(bottom_right - top_left, first.dtype.type(0))  # (M, N, 2)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_first[:, None] + area_second[None, :] - inter)


def greedy_nms(boxes: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """Greedy NMS of boxes sorted by descending score, stopping after ``max_keep`` kept boxes
    (as `ops.nms.greedy_nms`: chunks of ``_CHUNK`` candidates, IoUs compared in float64).

    Args:
        boxes: (n, 4) xyxy, rows in descending score order (ties already broken).
        iou_threshold: suppress IoU strictly above this.
        max_keep: stop after this many kept boxes.

    Returns:
        (N,) int64 row indices of the kept boxes, ascending (= score order), N <= max_keep.
    """
    kept: list[int] = []
    kept_boxes = boxes[:0]  # (k, 4)
    for start in range(0, len(boxes), _CHUNK):
        if len(kept) >= max_keep:
            break
        chunk = boxes[start : start + _CHUNK]  # (c, 4)
        alive: np.ndarray = np.ones(len(chunk), dtype=bool)  # (c,)
        if len(kept_boxes):
            iou = box_iou_pairs(kept_boxes, chunk).astype(np.float64)  # (k, c)
            alive = ~np.any(iou > iou_threshold, axis=0)  # (c,)
        if not alive.any():
            continue
        within = box_iou_pairs(chunk, chunk).astype(np.float64) > iou_threshold  # (c, c)
        new: list[int] = []
        for i in range(len(chunk)):
            if not alive[i]:
                continue
            new.append(i)
            if len(kept) + len(new) == max_keep:
                break
            alive[i + 1 :] &= ~within[i, i + 1 :]
        kept += [start + i for i in new]
        kept_boxes = np.concatenate((kept_boxes, chunk[new]))
    return np.asarray(kept, dtype=np.int64)
