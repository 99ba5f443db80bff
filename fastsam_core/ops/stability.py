"""SAM's mask stability score, computed inside each detection box (issue 13).

SAM (`segment_anything/utils/amg.py`) defines the stability of a mask as the IoU between the
mask thresholded at `threshold + offset` and at `threshold - offset` of its logits; as the first
mask lies inside the second, the IoU is `|logits > t + o| / |logits > t - o|`. FastSAM masks are
`coeffs @ protos` logits (spec §3.8), so the score is computed on those logits at the prototype
resolution (input / 4), inside the detection box, where the mask logits are formed and cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def stability_score(
    logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0
) -> torch.Tensor:
    """(N, ...) mask logits -> (N,) float32 SAM stability score; 0.0 where no pixel is above
    `threshold - offset` (SAM would divide by zero)."""
    flat = logits.reshape(logits.shape[0], -1)
    inner = (flat > threshold + offset).sum(1, dtype=torch.int64)
    outer = (flat > threshold - offset).sum(1, dtype=torch.int64)
    return torch.where(outer > 0, inner / outer.clamp(min=1), 0.0).float()


def box_stability_scores(
    protos: torch.Tensor,
    coeffs: torch.Tensor,
    boxes: torch.Tensor,
    threshold: float = 0.0,
    offset: float = 1.0,
) -> torch.Tensor:
    """Stability of each instance's logits `coeffs @ protos` inside its box.

    Args:
        protos: (K, Hp, Wp) prototypes of one image (own letterbox area, stride 4).
        coeffs: (N, K) mask coefficients.
        boxes: (N, 4) xyxy in letterboxed input pixels; the prototype cells the box touches
            (floor / ceil of box / 4, clipped) are scored.
        threshold, offset: logit threshold and SAM's offset (1.0 in SAM's generator).
    Returns:
        (N,) float32 scores in [0, 1] (0.0 for a box covering no cell).
    """
    k, hp, wp = protos.shape
    if coeffs.shape[1:] != (k,) or boxes.shape[1:] != (4,) or coeffs.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"stability needs protos (K, Hp, Wp), coeffs (N, K), boxes (N, 4); got "
            f"{tuple(protos.shape)}, {tuple(coeffs.shape)}, {tuple(boxes.shape)}"
        )
    # One small matmul per box on its own cells: the work is the boxes' area, not N whole
    # frames. Channels-last prototypes make each window a strided (h, w, K) view (no copy);
    # counts stay on the device until the end (one host sync).
    cells_last = protos.float().permute(1, 2, 0).contiguous()  # (Hp, Wp, K)
    coeffs = coeffs.float().to(protos.device)
    counts = torch.zeros((boxes.shape[0], 2), dtype=torch.int64, device=protos.device)
    for i, (x0, y0, x1, y1) in enumerate((boxes.float() / 4).tolist()):
        c0, r0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
        c1, r1 = min(math.ceil(x1), wp), min(math.ceil(y1), hp)
        if c1 > c0 and r1 > r0:
            logits = cells_last[r0:r1, c0:c1] @ coeffs[i]  # (h, w)
            counts[i, 0] = (logits > threshold + offset).sum()
            counts[i, 1] = (logits > threshold - offset).sum()
    inner, outer = counts.cpu().unbind(1)
    return torch.where(outer > 0, inner / outer.clamp(min=1), 0.0).float()


@dataclass(frozen=True)
class PendingStability:
    """`box_stability_scores` not yet computed: the predictor stores its inputs, and exports
    (`export.records`) compute it on first use, so inference pays nothing unless the score is
    read (it costs ~0.4 s for 300 large boxes at 1024 on 2 CPU cores).

    Rows follow the Results they belong to: indexing and `to()` act on coeffs and boxes.
    """

    protos: torch.Tensor  # (K, Hp, Wp)
    coeffs: torch.Tensor  # (N, K)
    boxes: torch.Tensor  # (N, 4) letterbox px

    def __len__(self) -> int:
        return self.coeffs.shape[0]

    @property
    def device(self) -> torch.device:
        return self.coeffs.device

    def __getitem__(self, index: torch.Tensor) -> PendingStability:
        index = index.to(self.coeffs.device)
        return PendingStability(self.protos, self.coeffs[index], self.boxes[index])

    def to(self, device: torch.device | str) -> PendingStability:
        return PendingStability(
            self.protos.to(device), self.coeffs.to(device), self.boxes.to(device)
        )

    def compute(self) -> torch.Tensor:
        """(N,) float32 scores on the CPU."""
        return box_stability_scores(self.protos, self.coeffs, self.boxes)


def resolve_stability(value: torch.Tensor | PendingStability | None) -> torch.Tensor | None:
    """Scores from what `Results.stability_scores` holds (computing a pending one)."""
    return value.compute() if isinstance(value, PendingStability) else value
