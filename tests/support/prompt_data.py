"""Synthetic everything-mode results for prompt tests: random ellipses and boxes on a frame."""

from __future__ import annotations

import torch

from fastsam_core.results import Results, results_from_dense


def random_dense_masks(
    n: int, hw: tuple[int, int], seed: int = 0, with_empty: bool = True
) -> torch.Tensor:
    """(n, H, W) bool: random ellipses (some nested, some overlapping), one duplicate, one empty."""
    gen = torch.Generator().manual_seed(seed)
    height, width = hw
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    masks = torch.zeros((n, height, width), dtype=torch.bool)
    for i in range(n):
        cx, cy = (
            float(torch.rand(1, generator=gen)) * width,
            float(torch.rand(1, generator=gen)) * height,
        )
        rx = 2 + float(torch.rand(1, generator=gen)) * width / 3
        ry = 2 + float(torch.rand(1, generator=gen)) * height / 3
        masks[i] = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    if n >= 3:
        masks[2] = masks[1]  # an exact duplicate: ties go to the first
    if with_empty and n >= 5:
        masks[4] = False  # an empty mask (the official path keeps them)
    return masks


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) float xyxy tight boxes (zeros for empty masks)."""
    boxes = torch.zeros((masks.shape[0], 4))
    for i, m in enumerate(masks):
        if m.any():
            ys, xs = m.nonzero(as_tuple=True)
            boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return boxes


def synthetic_results(
    n: int = 12, hw: tuple[int, int] = (60, 80), seed: int = 0, image: bool = True
) -> tuple[Results, torch.Tensor]:
    """Results (conf-descending scores, random RGB image) and their dense (N, H, W) masks."""
    masks = random_dense_masks(n, hw, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    scores = torch.sort(torch.rand(n, generator=gen), descending=True).values
    picture = torch.randint(0, 256, (*hw, 3), dtype=torch.uint8, generator=gen) if image else None
    res = results_from_dense(masks, tight_boxes(masks), scores, hw, orig_image=picture)
    return res, masks
