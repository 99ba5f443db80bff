"""One-to-one matching of boundary pixels within a distance tolerance (BSDS `correspondPixels`).

BSDS solves a sparse min-cost assignment in which leaving a pixel unmatched costs 100 x the
tolerance, more than any match within tolerance costs, so its assignment has maximum cardinality;
the benchmark uses only the counts. We compute a maximum-cardinality bipartite matching on the
exact graph of (predicted, ground-truth) pixel pairs at distance <= tolerance: Kuhn's augmenting
paths (iterative DFS, neighbours nearest first). Which pixels end up matched may differ from
BSDS's choice when several maximum matchings exist; the matched count never does.

Thresholds are swept from high to low, so predicted pixels only get added. A maximum matching
stays valid when left nodes are added, and a left node without an augmenting path never gets one
later (new left nodes join unmatched, and augmenting does not create paths from a dead node: the
lemma behind Kuhn's algorithm), so each threshold only searches from its new pixels.
"""

from __future__ import annotations

import numpy as np


def _offsets(radius: float) -> np.ndarray:
    """(O, 2) int (dy, dx) with dy^2 + dx^2 <= radius^2, nearest first (ties in raster order)."""
    r = int(np.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]  # (2r+1, 2r+1) each
    d2 = dy**2 + dx**2
    keep = d2 <= radius**2 + 1e-9
    order = np.lexsort((dx[keep], dy[keep], d2[keep]))
    return np.stack([dy[keep][order], dx[keep][order]], 1)  # (O, 2)


def _adjacency(
    py: np.ndarray, px: np.ndarray, gt: np.ndarray, radius: float
) -> tuple[list[int], list[int]]:
    """CSR graph: predicted pixel i -> ground-truth pixel ids within `radius`, nearest first.

    Returns:
        (indptr (P + 1,), indices (E,)) as Python lists (the DFS reads them element by element).
    """
    h, w = gt.shape
    gy, gx = np.nonzero(gt)
    gt_index = np.full((h, w), -1, dtype=np.int64)
    gt_index[gy, gx] = np.arange(gy.size)
    lefts, rights = [], []
    for dy, dx in _offsets(radius).tolist():
        y, x = py + dy, px + dx
        inside = np.nonzero((y >= 0) & (y < h) & (x >= 0) & (x < w))[0]
        right = gt_index[y[inside], x[inside]]
        hit = right >= 0
        lefts.append(inside[hit])
        rights.append(right[hit])
    left = np.concatenate(lefts) if lefts else np.zeros(0, dtype=np.int64)  # (E,)
    right = np.concatenate(rights) if rights else np.zeros(0, dtype=np.int64)
    order = np.argsort(left, kind="stable")  # group by left, keeping nearest-first order
    indptr = np.zeros(py.size + 1, dtype=np.int64)
    np.add.at(indptr, left + 1, 1)
    return np.cumsum(indptr).tolist(), right[order].tolist()


def _augment(
    indptr: list[int], indices: list[int], match_l: list[int], match_r: list[int], roots: list[int]
) -> None:
    """Match as many `roots` as augmenting paths allow (in place), until a pass finds none."""
    while roots:
        visited = bytearray(len(match_r))
        still_free, progressed = [], False
        for root in roots:
            stack, cursor, path = [root], [indptr[root]], []  # path[k]: right below stack[k]
            found = False
            while stack and not found:
                it, end = cursor[-1], indptr[stack[-1] + 1]
                descended = False
                while it < end:
                    right = indices[it]
                    it += 1
                    if visited[right]:
                        continue
                    visited[right] = 1
                    path.append(right)
                    mate = match_r[right]
                    if mate < 0:  # free right node: flip the alternating path
                        for left_node, right_node in zip(stack, path):
                            match_l[left_node], match_r[right_node] = right_node, left_node
                        found = True
                    else:
                        cursor[-1] = it
                        stack.append(mate)
                        cursor.append(indptr[mate])
                        descended = True
                    break
                if not found and not descended:
                    stack.pop()
                    cursor.pop()
                    if path:
                        path.pop()
            progressed |= found
            if not found:
                still_free.append(root)
        # a pass without augmentation searched an unchanged matching exhaustively: maximum
        roots = still_free if progressed else []


def match_sweep(
    values: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum matchings of `values >= t` against `gt` for every threshold t.

    Args:
        values: (H, W) float edge strength.
        gt: (H, W) bool ground-truth boundary pixels.
        thresholds: (T,) thresholds, any order.
        radius: tolerance in pixels (pairs at distance <= radius can match).

    Returns:
        (pred_matched (T, H, W) bool, gt_count (T,) int64 matched ground-truth pixels).
    """
    if values.shape != gt.shape or values.ndim != 2:
        raise ValueError(
            f"edge map and ground truth must be (H, W) of one shape, got {values.shape} and "
            f"{gt.shape}"
        )
    ts = np.asarray(thresholds, dtype=np.float64)
    h, w = values.shape
    pred_matched = np.zeros((ts.size, h, w), dtype=bool)
    gt_count = np.zeros(ts.size, dtype=np.int64)
    if ts.size == 0:
        return pred_matched, gt_count
    py, px = np.nonzero(values >= ts.min())
    strength = values[py, px]  # (P,)
    order = np.argsort(-strength, kind="stable")  # strongest first: pixels join in this order
    py, px, strength = py[order], px[order], strength[order]
    indptr, indices = _adjacency(py, px, gt, radius)
    match_l, match_r = [-1] * py.size, [-1] * int(gt.sum())
    active = 0
    for k in np.argsort(-ts, kind="stable").tolist():  # high thresholds first
        start, active = active, int(np.searchsorted(-strength, -ts[k], side="right"))
        new = [i for i in range(start, active) if indptr[i + 1] > indptr[i]]
        _augment(indptr, indices, match_l, match_r, new)
        matched = np.asarray(match_l[:active], dtype=np.int64) >= 0
        pred_matched[k, py[:active][matched], px[:active][matched]] = True
        gt_count[k] = int(matched.sum())
    return pred_matched, gt_count


def match_boundaries(
    pred: np.ndarray, gt: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum one-to-one matching of two boundary maps.

    Args:
        pred: (H, W) bool predicted boundary pixels.
        gt: (H, W) bool ground-truth boundary pixels.
        radius: tolerance in pixels (BSDS: 0.0075 x the image diagonal).

    Returns:
        (pred_matched, gt_matched): (H, W) bool each, with equal counts.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred and gt must be (H, W) of one shape, got {pred.shape}, {gt.shape}")
    py, px = np.nonzero(pred)
    indptr, indices = _adjacency(py, px, gt, radius)
    match_l, match_r = [-1] * py.size, [-1] * int(gt.sum())
    _augment(indptr, indices, match_l, match_r, list(range(py.size)))
    gy, gx = np.nonzero(gt)
    left, right = np.asarray(match_l, dtype=np.int64), np.asarray(match_r, dtype=np.int64)
    pred_matched = np.zeros(pred.shape, dtype=bool)
    gt_matched = np.zeros(gt.shape, dtype=bool)
    pred_matched[py[left >= 0], px[left >= 0]] = True
    gt_matched[gy[right >= 0], gx[right >= 0]] = True
    return pred_matched, gt_matched
