"""Box and point prompts on runtime results: the numpy twin of `fastsam_core.prompts.apply`
(with `box.py` and `point.py`): the same rules, both box rules ("official", "ultralytics"), both
point modes ("instances", "union"), both output layouts ("per_prompt", "subset") and both
no-match rows; `tests/unit/test_onnxrt_prompts.py` checks equal rows against the torch `prompt`
on the same masks. Text prompts need the PyTorch install (CLIP is not exported).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.onnxrt.prompt_inputs import NumpyPrompts, make_prompts
from fastsam_core.onnxrt.results import NumpyPromptResults, NumpyResults


def prompt(
    results: NumpyResults,
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    *,
    prompts: NumpyPrompts | None = None,
    bboxes: Any = None,
    **options: Any,
) -> NumpyResults:
    """Select masks of one image's everything-mode result with box and/or point prompts
    (arguments and outputs as `fastsam_core.prompts.prompt`); `results` itself without prompts."""
    if prompts is None:
        prompts = make_prompts(boxes, points, labels, texts, bboxes=bboxes, **options)
        if prompts is None:
            return results
    elif any(v is not None for v in (boxes, points, labels, texts, bboxes)) or options:
        raise TypeError("pass either prompts=NumpyPrompts(...) or prompt keywords, not both")
    prompts = prompts.fit(results.orig_hw)
    opts, hw = prompts.options, results.orig_hw
    if len(results) == 0:  # nothing to select; each box still gets its (empty) row
        if prompts.boxes is None or opts.output == "subset":
            return NumpyPromptResults.wrap(results)
        return _empty_box_rows(results, np.arange(prompts.boxes.shape[0]))
    pieces: list[NumpyPromptResults] = []
    subset = np.zeros(len(results), dtype=bool)  # "subset" output: OR of the selections
    if prompts.boxes is not None:
        official = opts.box_rule == "official"
        masks = results.masks if official else results.masks_original("bilinear")
        indices, iou, best = select_boxes(masks, prompts.boxes, hw, opts.box_rule)
        subset[best[best >= 0]] = True  # ultralytics marks the argmax even at IoU 0
        pieces.append(_box_rows(results, indices, iou, best, opts.box_no_match))
    if prompts.points is not None and prompts.labels is not None:
        coords, point_labels = prompts.points, prompts.labels
        if opts.point_mode == "union":
            frame_points = point_pixels(coords, hw, results.masks.image_hw)
            pieces.append(
                _union_row(results, *union_mask(results.masks, frame_points, point_labels))
            )
        else:
            selected = select_instances(
                results.masks_original("bilinear"), np.trunc(coords).astype(np.int64), point_labels
            )
            subset |= selected
            src = np.flatnonzero(selected)
            pieces.append(_rows(results, "point", src, results.scores[src], np.full_like(src, -1)))
    if opts.output == "subset":
        return NumpyPromptResults.wrap(results, source_ids=np.arange(len(results)))[subset]
    return _concat(results, [p for p in pieces if len(p)])


# ---------------------------------------------------------------------- box rule (box.py)
def box_pixels_official(
    boxes: np.ndarray, orig_hw: Sequence[int], frame_hw: Sequence[int]
) -> np.ndarray:
    """Official rule: (M, 4) float xyxy original px -> (M, 4) int64 bounds in the mask frame."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    orig_h, orig_w = int(orig_hw[0]), int(orig_hw[1])
    boxes = boxes.astype(np.float64)
    if (height, width) != (orig_h, orig_w):
        scale = np.array([width, height, width, height], np.float64)
        boxes = np.trunc(boxes * scale / np.array([orig_w, orig_h, orig_w, orig_h], np.float64))
    boxes = np.round(boxes)  # half to even, as python round() and torch.round
    x1, y1 = boxes[:, 0].clip(min=0), boxes[:, 1].clip(min=0)
    x2, y2 = boxes[:, 2].clip(max=width), boxes[:, 3].clip(max=height)
    return np.stack([x1, y1, x2, y2], 1).astype(np.int64)  # (M, 4)


def box_pixels_ultralytics(boxes: np.ndarray, orig_hw: Sequence[int]) -> np.ndarray:
    """Ultralytics rule: (M, 4) float xyxy -> int truncation, clipped to the image."""
    height, width = int(orig_hw[0]), int(orig_hw[1])
    pixels = np.trunc(boxes.astype(np.float64)).astype(np.int64)
    return np.minimum(np.maximum(pixels, 0), np.array([width, height, width, height]))


def select_boxes(
    masks: NumpyCompactMasks, boxes: np.ndarray, orig_hw: Sequence[int], rule: str = "official"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best mask per box (first maximum of inter / (box_area + mask_area - inter), float32).

    Returns:
        indices (M,) int64 (-1: no overlap), iou (M,) float32 (0 there), best (M,) int64 the
        references' argmax even at IoU 0 (-1 without masks): `prompts.box.BoxMatch`'s fields.
    """
    if rule == "official":
        pixels = box_pixels_official(boxes, orig_hw, masks.image_hw)
    elif rule == "ultralytics":
        if tuple(masks.image_hw) != tuple(int(v) for v in orig_hw):
            raise ValueError(
                f"the ultralytics box rule needs masks in the original {tuple(orig_hw)} frame, "
                f"got {masks.image_hw}; pass masks_original('bilinear')"
            )
        pixels = box_pixels_ultralytics(boxes, orig_hw)
    else:
        raise ValueError(f"box rule must be 'official' or 'ultralytics', got {rule!r}")
    num_boxes = pixels.shape[0]
    if len(masks) == 0:
        empty = np.full(num_boxes, -1, dtype=np.int64)
        return empty, np.zeros(num_boxes, np.float32), empty.copy()
    inter = masks.box_overlap(pixels)  # (N, M) int64
    box_areas = np.maximum(pixels[:, 2] - pixels[:, 0], 0) * np.maximum(
        pixels[:, 3] - pixels[:, 1], 0
    )  # (M,)
    union = box_areas[None, :] + masks.areas()[:, None] - inter  # (N, M)
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = inter.astype(np.float32) / union.astype(np.float32)  # NaN: empty box, empty mask
    best = raw.argmax(axis=0)  # first maximum, NaN counts as maximum (as torch.argmax)
    iou = np.nan_to_num(raw, nan=0.0)
    best_iou, best_ours = iou.max(axis=0), iou.argmax(axis=0)
    matched = best_iou > 0
    indices = np.where(matched, best_ours, -1).astype(np.int64)
    return indices, np.where(matched, best_iou, 0).astype(np.float32), best.astype(np.int64)


# ---------------------------------------------------------------------- point rules (point.py)
def point_pixels(points: np.ndarray, orig_hw: Sequence[int], frame_hw: Sequence[int]) -> np.ndarray:
    """(P, 2) float xy original px -> (P, 2) int64 pixel in the masks' frame (official scaling)."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    orig_h, orig_w = int(orig_hw[0]), int(orig_hw[1])
    points = points.astype(np.float64)
    if (height, width) != (orig_h, orig_w):
        points = points * np.array([width, height], np.float64) / np.array([orig_w, orig_h])
    return np.trunc(points).astype(np.int64)


def select_instances(
    masks: NumpyCompactMasks, points: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Ultralytics: (N,) bool, masks under a positive point (all if none) minus those under a
    negative point."""
    hits = masks.contains_points(points)  # (N, P)
    positive, negative = labels == 1, labels == 0
    selected = np.any(hits[:, positive], 1) if positive.any() else np.ones(len(masks), bool)
    return selected & ~np.any(hits[:, negative], 1)


def union_mask(
    masks: NumpyCompactMasks, points: np.ndarray, labels: np.ndarray
) -> tuple[NumpyCompactMasks, np.ndarray]:
    """Official pixel union: (0 or 1 mask, (K,) int64 indices of the masks that set pixels)."""
    hits = masks.contains_points(points)  # (N, P)
    hit_any = np.any(hits, 1)  # (N,)
    if not hit_any.any():
        return NumpyCompactMasks.empty(masks.image_hw), np.zeros(0, dtype=np.int64)
    # Within one mask all operations touch the same pixels: the last point on it decides.
    last_hit = np.where(hits, np.arange(points.shape[0]), -1).max(1)  # (N,)
    sets = hit_any & (labels[last_hit.clip(min=0)] == 1)  # (N,)
    order = np.argsort(-masks.areas(), kind="stable")  # largest first, stable
    order = order[hit_any[order]]
    regions = masks.regions[order]  # (K, 4)
    x0, y0 = int(regions[:, 0].min()), int(regions[:, 1].min())
    x1, y1 = int(regions[:, 2].max()), int(regions[:, 3].max())
    canvas = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
    for i in order.tolist():  # one bounding canvas, not N dense frames
        rx0, ry0, rx1, ry1 = masks.regions[i].tolist()
        if rx1 <= rx0 or ry1 <= ry0:
            continue
        window = canvas[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0]  # a view into the canvas
        if sets[i]:
            window |= masks.crop(i)
        else:
            window &= ~masks.crop(i)
    setters = order[sets[order]]
    if not canvas.any():
        return NumpyCompactMasks.empty(masks.image_hw), setters
    rows, cols = np.flatnonzero(canvas.any(1)), np.flatnonzero(canvas.any(0))
    ty0, ty1, tx0, tx1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    region = np.array([[x0 + tx0, y0 + ty0, x0 + tx1, y0 + ty1]], dtype=np.int64)
    return NumpyCompactMasks.from_crops(region, [canvas[ty0:ty1, tx0:tx1]], masks.image_hw), setters


# ---------------------------------------------------------------------- rows (apply.py)
def _rows(
    results: NumpyResults, kind: str, src: np.ndarray, scores: np.ndarray, ids: np.ndarray
) -> NumpyPromptResults:
    """Rows `src` of the everything result, tagged with their prompt."""
    rows = NumpyPromptResults.wrap(results)[src]
    return NumpyPromptResults.wrap(
        rows, scores.astype(np.float32), ids.astype(np.int64), src, (kind,) * len(src)
    )


def _box_rows(
    results: NumpyResults, indices: np.ndarray, iou: np.ndarray, best: np.ndarray, no_match: str
) -> NumpyPromptResults:
    """Exactly one row per box, in box order; boxes without a mask to show get an empty row."""
    src = best if no_match == "reference" else indices  # (M,), -1 = no mask
    box_ids = np.arange(src.shape[0])
    hit = src >= 0
    found = _rows(results, "box", src[hit], iou[hit], box_ids[hit])
    if hit.all():
        return found
    empty = _empty_box_rows(results, box_ids[~hit])
    order = np.argsort(np.concatenate([box_ids[hit], box_ids[~hit]]), kind="stable")
    return _concat(results, [found, empty])[order]


def _empty_box_rows(results: NumpyResults, box_ids: np.ndarray) -> NumpyPromptResults:
    """Rows for boxes that matched no mask: empty masks, box (0, 0, 0, 0), score 0, source -1."""
    num = box_ids.shape[0]
    masks = NumpyCompactMasks(
        np.zeros((num, 4), np.int64), np.zeros(0, bool), np.zeros(num + 1, np.int64),
        results.masks.image_hw,
    )  # fmt: skip
    return NumpyPromptResults(
        masks=masks,
        boxes=np.zeros((num, 4), np.float32),
        scores=np.zeros(num, np.float32),
        class_ids=np.zeros(num, np.int64),
        orig_hw=results.orig_hw,
        names=results.names,
        path=results.path,
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=np.zeros(num, np.float32),
        prompt_ids=box_ids,
        source_ids=np.full(num, -1),
        prompt_kinds=("box",) * num,
    )


def _concat(results: NumpyResults, pieces: list[NumpyPromptResults]) -> NumpyPromptResults:
    """Concatenate prompt rows (all in the masks' frame of `results`)."""
    if not pieces:
        return NumpyPromptResults.wrap(results)[[]]
    if len(pieces) == 1:
        return pieces[0]

    def column(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in pieces])

    return NumpyPromptResults(
        masks=NumpyCompactMasks.cat([p.masks for p in pieces]),
        boxes=column("boxes"),
        scores=column("scores"),
        class_ids=column("class_ids"),
        orig_hw=results.orig_hw,
        names=results.names,
        path=results.path,
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=column("prompt_scores"),
        prompt_ids=column("prompt_ids"),
        source_ids=column("source_ids"),
        prompt_kinds=sum((p.prompt_kinds for p in pieces), ()),
    )


def _union_row(
    results: NumpyResults, mask: NumpyCompactMasks, setters: np.ndarray
) -> NumpyPromptResults:
    """One row for the official point union: tight box in original px, best setter's score."""
    if len(mask) == 0:
        return NumpyPromptResults.wrap(results)[[]]
    box = mask.regions[:1].astype(np.float32)  # (1, 4) tight box in the masks' frame
    if results.mask_window is not None:  # letterbox frame -> original px, float32 as torch
        top, left, win_h, win_w = results.mask_window
        orig_h, orig_w = results.orig_hw
        shift = np.array([left, top, left, top], np.float32)
        gain = np.array(
            [orig_w / win_w, orig_h / win_h, orig_w / win_w, orig_h / win_h], np.float32
        )
        box = np.maximum((box - shift) * gain, np.float32(0))
        box = np.minimum(box, np.array([orig_w, orig_h, orig_w, orig_h], np.float32))
    best = int(setters[results.scores[setters].argmax()])
    return NumpyPromptResults(
        masks=mask,
        boxes=box,
        scores=results.scores[best : best + 1],
        class_ids=results.class_ids[best : best + 1],
        orig_hw=results.orig_hw,
        names=results.names,
        path=results.path,
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=results.scores[best : best + 1],
        prompt_ids=np.array([-1]),
        source_ids=np.array([-1]),
        prompt_kinds=("point",),
    )
