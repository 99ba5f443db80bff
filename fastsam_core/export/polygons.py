"""Outer contours of binary masks as polygons, in pure numpy (issue #3 part 4; no OpenCV).

Each 8-connected component of a mask yields one polygon: its outer boundary pixels traced
clockwise (on screen, y down) by Moore-neighbour tracing with Jacob's stopping rule, as pixel
centres in integer image coordinates (the convention of OpenCV's `findContours`, which most
COCO polygon annotations follow). Components are ordered by their
top-most, then left-most pixel. With `simplify=True` only the corners of straight runs are
kept (like CHAIN_APPROX_SIMPLE).

Holes (`crop_rings`, `--format polygons`): each hole is a 4-connected background component not
touching the crop border (the dual of 8-connected objects); its ring is the outer contour of the
hole's own pixels, traced like an object (pixel centres just inside the hole). Outer rings and
hole rings are returned as two separate lists, as COCO polygons cannot express holes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fastsam_core.export.arrays import as_numpy

if TYPE_CHECKING:
    from fastsam_core.compact_masks import CompactMasks
    from fastsam_core.onnxrt.compact import NumpyCompactMasks

    AnyCompactMasks = CompactMasks | NumpyCompactMasks

# Clockwise neighbour ring on screen (row, col), starting west: W, NW, N, NE, E, SE, S, SW.
_RING = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))
# After moving from p in ring direction d to q, the search at q restarts at the ring cell
# before d (background, as seen from p), expressed as a direction from q.
_BACKTRACK = tuple(
    _RING.index((_RING[(d + 7) % 8][0] - _RING[d][0], _RING[(d + 7) % 8][1] - _RING[d][1]))
    for d in range(8)
)


def _row_runs(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of ones in raster order: (rows, starts, ends), ends exclusive."""
    h, w = crop.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = crop
    step = np.diff(padded, axis=1)  # (h, w + 1): +1 where a run starts, -1 after it ends
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def _run_roots(
    crop: np.ndarray, diagonal: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Runs of `crop` (see `_row_runs`) and the component root (its raster-first run) of each,
    with 8-connectivity (`diagonal`) or 4-connectivity."""
    rows, starts, ends = _row_runs(crop)
    n = rows.size
    width = crop.shape[1] + 2
    start_keys = rows * width + starts  # sorted: runs are in raster order
    end_keys = rows * width + ends  # also sorted (runs in a row are disjoint)
    # Runs b in the next row touch run a (8-connectivity) iff b.start <= a.end and
    # b.end >= a.start, with a.end exclusive (4-connectivity: strict): a contiguous range.
    upper = np.searchsorted(
        start_keys, (rows + 1) * width + ends, side="right" if diagonal else "left"
    )
    lower = np.searchsorted(
        end_keys, (rows + 1) * width + starts, side="left" if diagonal else "right"
    )
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(n):
        for b in range(int(lower[a]), int(upper[a])):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the root is the raster-first run
    return rows, starts, ends, [find(i) for i in range(n)]


def _component_starts(crop: np.ndarray) -> list[tuple[int, int]]:
    """(row, col) of the top-most, left-most pixel of each 8-connected component, in order."""
    rows, starts, _, roots = _run_roots(crop)
    return [(int(rows[r]), int(starts[r])) for r in sorted(set(roots))]


def _hole_masks(crop: np.ndarray) -> list[np.ndarray]:
    """(h, w) bool mask of each hole: 4-connected background components off the border."""
    h, w = crop.shape
    rows, starts, ends, roots = _run_roots(~crop, diagonal=False)
    on_border = {
        r
        for r, row, a, b in zip(roots, rows.tolist(), starts.tolist(), ends.tolist())
        if row in (0, h - 1) or a == 0 or b == w
    }
    holes: dict[int, np.ndarray] = {}
    for r, row, a, b in zip(roots, rows.tolist(), starts.tolist(), ends.tolist()):
        if r not in on_border:
            holes.setdefault(r, np.zeros((h, w), dtype=bool))[row, a:b] = True
    return [holes[r] for r in sorted(holes)]


def _trace(flat: list[int], width: int, start: int) -> list[int]:
    """Moore-neighbour tracing on a zero-padded flat mask; returns flat indices of the border."""
    offsets = [dy * width + dx for dy, dx in _RING]
    # The start is the component's raster-first pixel, so its west neighbour is background.
    found = None
    for k in range(1, 9):
        d = k % 8
        if flat[start + offsets[d]]:
            found = d
            break
    if found is None:  # isolated pixel
        return [start]
    first_dir = found
    border = [start]
    p, d = start, found
    while True:
        p = p + offsets[d]
        back = _BACKTRACK[d]
        for k in range(1, 9):
            nd = (back + k) % 8
            if flat[p + offsets[nd]]:
                d = nd
                break
        if p == start and d == first_dir:  # Jacob's rule: same pixel, same way out
            return border
        border.append(p)


def _simplify(points: np.ndarray) -> np.ndarray:
    """Drop points in the middle of straight runs (closed polygon)."""
    if points.shape[0] < 3:
        return points
    step_in = points - np.roll(points, 1, axis=0)  # (K, 2)
    step_out = np.roll(points, -1, axis=0) - points
    keep = np.any(step_in != step_out, axis=1)
    return points[keep] if keep.any() else points[:1]


def crop_polygons(
    crop: Any, offset: Sequence[int] = (0, 0), simplify: bool = True
) -> list[np.ndarray]:
    """Outer contour polygons of a bool crop whose top-left pixel sits at image (x0, y0).

    Args:
        crop: (h, w) bool mask.
        offset: (x0, y0) added to every vertex.
        simplify: keep only corners of straight runs.
    Returns:
        One (K, 2) float64 array of xy pixel centres per 8-connected component (K >= 1).
    """
    arr = as_numpy(crop)
    if arr.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {arr.shape}")
    arr = arr.astype(bool)
    h, w = arr.shape
    if h == 0 or w == 0 or not arr.any():
        return []
    width = w + 2
    padded = np.zeros((h + 2, width), dtype=np.uint8)
    padded[1:-1, 1:-1] = arr
    flat = padded.ravel().tolist()
    polygons = []
    for row, col in _component_starts(arr):
        border = np.asarray(_trace(flat, width, (row + 1) * width + (col + 1)), dtype=np.int64)
        points = np.stack([border % width - 1, border // width - 1], axis=1)  # (K, 2) xy in crop
        if simplify:
            points = _simplify(points)
        polygons.append(points.astype(np.float64) + np.asarray(offset[:2], dtype=np.float64))
    return polygons


def crop_rings(
    crop: Any, offset: Sequence[int] = (0, 0), simplify: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(outer rings, hole rings) of a bool crop: `crop_polygons` plus one ring per hole (see
    the module docstring), both as (K, 2) float64 xy arrays offset by (x0, y0)."""
    arr = as_numpy(crop)
    outer = crop_polygons(arr, offset, simplify)
    if not outer:
        return [], []
    arr = arr.astype(bool)
    holes = [ring for hole in _hole_masks(arr) for ring in crop_polygons(hole, offset, simplify)]
    return outer, holes


def compact_mask_rings(
    masks: AnyCompactMasks, simplify: bool = True
) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """(outer rings, hole rings) of every mask of a CompactMasks (see `crop_rings`)."""
    masks = masks.to("cpu")
    regions = masks.regions.tolist()
    return [crop_rings(masks.crop(i), regions[i][:2], simplify) for i in range(len(masks))]


def mask_polygons(mask: Any, simplify: bool = True) -> list[np.ndarray]:
    """Outer contour polygons of a dense (H, W) mask (see `crop_polygons`)."""
    return crop_polygons(mask, (0, 0), simplify)


def compact_mask_polygons(masks: AnyCompactMasks, simplify: bool = True) -> list[list[np.ndarray]]:
    """Polygons of every mask of a CompactMasks (torch or numpy), each traced on its crop only."""
    masks = masks.to("cpu")
    regions = masks.regions.tolist()
    return [crop_polygons(masks.crop(i), regions[i][:2], simplify) for i in range(len(masks))]


def to_coco_segmentation(polygons: list[np.ndarray]) -> list[list[float]]:
    """Flatten polygons to COCO's [[x1, y1, x2, y2, ...], ...].

    COCO needs at least 3 vertices; shorter polygons (single pixels, 2-point lines) are
    repeated to 3 vertices so they stay valid (they rasterise to a degenerate area).
    """
    out = []
    for poly in polygons:
        if poly.shape[0] < 3:
            poly = np.concatenate([poly, poly[-1:].repeat(3 - poly.shape[0], axis=0)])
        out.append(poly.reshape(-1).tolist())
    return out
