"""Zero-shot edge detection from everything-mode masks (FastSAM paper §4.1, issue #16 part 1).

As SAM (appendix D.2) and FastSAM do: every mask's UNTHRESHOLDED probability map
sigmoid(coefficients . prototypes) at the original size -> Sobel magnitude, kept inside the mask's
box -> pixel-wise max over masks -> linear normalisation to [0, 1] (SAM) -> edge NMS along the
gradient direction (structured-forest `edgesNms`: radius 1, a pixel is suppressed when 1.01 x its
value is below either neighbour at +-1 px along the normal, read bilinearly) -> uint8 [0, 255].

Probability maps come from the reference's own pieces (`ops.masks.mask_logits`, then
`ops.masks.scale_masks_ultralytics` to remove the letterbox padding and resize to the original
size): no second mask assembler. The Sobel runs on the uncropped map, so box sides make no edges.
`SoftMaskPredictor` is the `Predictor` whose results also keep each row's coefficients and the
image's prototypes, taken where the predictor hands them to mask assembly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from fastsam_core.ops.masks import crop_masks, mask_logits, scale_masks_ultralytics
from fastsam_core.predictor import Predictor
from fastsam_core.results import Results, results_fields
from fastsam_core.row_index import normalize_index

_CHUNK_PIXELS = 8_000_000  # float32 elements per (n, H0, W0) chunk of probability maps
_NMS_MARGIN = 1.01  # edgesNms "m": suppress when value * m < a neighbour along the normal
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


@dataclass
class SoftMaskResults(Results):
    """`Results` plus what its masks are made of (for probability maps).

    Attributes (besides those of `Results`):
        coeffs: (N, K) float32 mask coefficients of each row.
        protos: (K, Hp, Wp) float32 prototypes of the image's own letterbox area.
    """

    coeffs: torch.Tensor | None = field(default=None, repr=False)
    protos: torch.Tensor | None = field(default=None, repr=False)

    def probabilities(self, rows: slice = slice(None)) -> torch.Tensor:
        """(n, H0, W0) float32 sigmoid(coeffs . protos) of `rows`, letterbox padding removed."""
        if self.coeffs is None or self.protos is None:
            raise ValueError("SoftMaskResults needs coeffs and protos (use SoftMaskPredictor)")
        logits = mask_logits(self.protos, self.coeffs[rows])  # (n, Hp, Wp)
        return scale_masks_ultralytics(logits.sigmoid(), self.orig_hw)  # (n, H0, W0)

    def __getitem__(self, index: Any) -> SoftMaskResults:
        """Subset of rows, keeping each row's coefficients."""
        base = super().__getitem__(index)
        idx = normalize_index(index, len(self), torch.device("cpu"))
        assert self.coeffs is not None  # set by SoftMaskPredictor
        return _with_soft(base, self.coeffs[idx.to(self.coeffs.device)], self.protos)


class SoftMaskPredictor(Predictor):
    """`Predictor` returning `SoftMaskResults` (same rows, plus coefficients and prototypes).

    Needs postprocess="official" (every detection keeps its row; "ultralytics" drops empty
    masks after assembly, so rows and coefficients would no longer line up).
    """

    def _postprocess(self, det: Any, protos: torch.Tensor, *args: Any, **kwargs: Any) -> Results:
        results = super()._postprocess(det, protos, *args, **kwargs)
        if len(results) != det.coeffs.shape[0]:
            raise ValueError(
                f"{len(results)} result rows for {det.coeffs.shape[0]} detections: soft masks "
                "need postprocess='official'"
            )
        return _with_soft(results, det.coeffs.float(), protos.float())


def _with_soft(
    results: Results, coeffs: torch.Tensor, protos: torch.Tensor | None
) -> SoftMaskResults:
    """`results` as `SoftMaskResults` with these coefficients (N, K) and prototypes (K, Hp, Wp)."""
    return SoftMaskResults(**results_fields(results), coeffs=coeffs, protos=protos)


def sobel(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel derivatives with replicated borders.

    Args:
        maps: (n, H, W) float.

    Returns:
        (gx, gy): (n, H, W) each; a unit step along x gives gx = 4.
    """
    kx = torch.tensor(_SOBEL_X, dtype=maps.dtype, device=maps.device)
    kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3)
    padded = F.pad(maps[:, None], (1, 1, 1, 1), mode="replicate")  # (n, 1, H+2, W+2)
    grads = F.conv2d(padded, kernels)  # (n, 2, H, W); conv2d is cross-correlation
    return grads[:, 0], grads[:, 1]


def edge_strength(
    results: SoftMaskResults,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Max over masks of the Sobel magnitude of each probability map inside its box.

    Returns:
        (magnitude, gx, gy): (H0, W0) float32 each; gx, gy belong to the mask that wins the max.
    """
    h0, w0 = results.orig_hw
    device = results.protos.device if results.protos is not None else torch.device("cpu")
    best = torch.zeros((h0, w0), device=device)
    best_gx, best_gy = torch.zeros_like(best), torch.zeros_like(best)
    step = max(1, _CHUNK_PIXELS // (h0 * w0))
    for start in range(0, len(results), step):
        rows = slice(start, start + step)
        gx, gy = sobel(results.probabilities(rows))  # (n, H0, W0) each
        magnitude = crop_masks(torch.hypot(gx, gy), results.boxes[rows])  # zero outside box
        chunk_best, winner = magnitude.max(0)  # (H0, W0)
        better = chunk_best > best
        pick = winner[None]  # (1, H0, W0)
        best = torch.where(better, chunk_best, best)
        best_gx = torch.where(better, gx.gather(0, pick)[0], best_gx)
        best_gy = torch.where(better, gy.gather(0, pick)[0], best_gy)
    return best, best_gx, best_gy


def edge_nms(edges: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Thin edges: keep a pixel unless 1.01 x its value is below a neighbour along the gradient.

    Args:
        edges: (H, W) float edge strength.
        gx, gy: (H, W) gradient giving the normal direction at each pixel.

    Returns:
        (H, W) float, suppressed pixels set to 0.
    """
    h, w = edges.shape
    norm = torch.hypot(gx, gy).clamp(min=1e-12)
    nx, ny = gx / norm, gy / norm  # (H, W) unit normal (0 where there is no gradient)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=edges.dtype, device=edges.device),
        torch.arange(w, dtype=edges.dtype, device=edges.device),
        indexing="ij",
    )  # (H, W) each
    keep = torch.ones_like(edges, dtype=torch.bool)
    for sign in (1.0, -1.0):
        x = (xs + sign * nx).clamp(0, w - 1)
        y = (ys + sign * ny).clamp(0, h - 1)
        grid = torch.stack([x / max(w - 1, 1) * 2 - 1, y / max(h - 1, 1) * 2 - 1], -1)  # (H, W, 2)
        neighbour = F.grid_sample(
            edges[None, None], grid[None], mode="bilinear", align_corners=True
        )[0, 0]  # (H, W) bilinear read at pixel coordinates
        keep &= edges * _NMS_MARGIN >= neighbour
    return torch.where(keep, edges, torch.zeros_like(edges))


def edge_map(results: SoftMaskResults) -> np.ndarray:
    """(H0, W0) uint8 edge map in [0, 255] of one image's everything-mode results."""
    strength, gx, gy = edge_strength(results)
    peak = float(strength.max()) if strength.numel() else 0.0
    if peak > 0:  # SAM: linearly normalise the max over masks to [0, 1]
        strength = strength / peak
    thin = edge_nms(strength, gx, gy)
    return (thin * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def detect_edges(predictor: SoftMaskPredictor, source: Any, **overrides: Any) -> list[np.ndarray]:
    """Edge maps of images (any `Predictor` source) with `predictor`'s everything mode.

    Args:
        predictor: a `SoftMaskPredictor`.
        source: image(s), directory or glob, as `Predictor.__call__`.
        **overrides: `PredictOptions` fields for this call (conf, iou, imgsz, ...).

    Returns:
        One (H0, W0) uint8 map per image, in source order.
    """
    if not isinstance(predictor, SoftMaskPredictor):
        raise TypeError(
            f"detect_edges needs a SoftMaskPredictor (probability maps), got "
            f"{type(predictor).__name__}; build SoftMaskPredictor(model, ...)"
        )
    return [edge_map(cast(SoftMaskResults, r)) for r in predictor(source, **overrides)]


def evaluate_edges(
    predictor: SoftMaskPredictor, data: str | Path, split: str = "val", **overrides: Any
) -> dict[str, float]:
    """BSDS ODS / OIS / AP / R50 of `predictor`'s edge maps on a data set.

    Args:
        predictor: a `SoftMaskPredictor`.
        data: see `eval.boundaries.boundary_dataset` (COCO/YOLO-seg file or BSDS-style folder).
        split: the YAML entry to read.
        **overrides: `PredictOptions` fields for every image.
    """
    from fastsam_core.eval.boundaries import boundary_dataset, image_counts, summarize

    counts = [
        image_counts(detect_edges(predictor, image, **overrides)[0], annotations)
        for image, annotations in boundary_dataset(data, split)
    ]
    return summarize(counts).as_dict()
