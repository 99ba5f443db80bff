"""SAM's mask stability score inside each detection box, in numpy: the torch-free twin of
`fastsam_core.ops.stability.box_stability_scores` (same cells, thresholds and division)."""

from __future__ import annotations

import math

import numpy as np


def box_stability_scores(
    protos: np.ndarray,
    coeffs: np.ndarray,
    boxes: np.ndarray,
    threshold: float = 0.0,
    offset: float = 1.0,
) -> np.ndarray:
    """Stability ``|logits > t + o| / |logits > t - o|`` of each instance's logits
    ``coeffs @ protos`` on the prototype cells its box touches (floor / ceil of box / 4, clipped).

    Args:
        protos: (K, Hp, Wp) float32 prototypes of one image (own letterbox area, stride 4).
        coeffs: (N, K) float32 mask coefficients.
        boxes: (N, 4) xyxy in letterboxed input pixels.
        threshold, offset: logit threshold and SAM's offset (1.0 in SAM's generator).

    Returns:
        (N,) float32 scores in [0, 1] (0.0 for a box covering no cell or no pixel above t - o).
    """
    k, hp, wp = protos.shape
    if coeffs.shape[1:] != (k,) or boxes.shape[1:] != (4,) or coeffs.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"stability needs protos (K, Hp, Wp), coeffs (N, K), boxes (N, 4); got "
            f"{tuple(protos.shape)}, {tuple(coeffs.shape)}, {tuple(boxes.shape)}"
        )
    cells_last = np.ascontiguousarray(protos.astype(np.float32).transpose(1, 2, 0))  # (Hp, Wp, K)
    coeffs = coeffs.astype(np.float32)
    counts = np.zeros((boxes.shape[0], 2), dtype=np.int64)
    for i, (x0, y0, x1, y1) in enumerate((boxes.astype(np.float32) / np.float32(4)).tolist()):
        c0, r0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
        c1, r1 = min(math.ceil(x1), wp), min(math.ceil(y1), hp)
        if c1 > c0 and r1 > r0:
            logits = cells_last[r0:r1, c0:c1] @ coeffs[i]  # (h, w, K) @ (K,) -> (h, w)
            counts[i, 0] = np.count_nonzero(logits > threshold + offset)
            counts[i, 1] = np.count_nonzero(logits > threshold - offset)
    inner, outer = counts[:, 0], counts[:, 1]
    return np.where(outer > 0, inner / np.maximum(outer, 1), 0.0).astype(np.float32)
