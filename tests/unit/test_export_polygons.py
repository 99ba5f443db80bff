"""Polygon export: traced outer contours re-rasterised by pycocotools match the masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.export.polygons import (
    compact_mask_polygons,
    compact_mask_rings,
    crop_polygons,
    crop_rings,
    mask_polygons,
    to_coco_segmentation,
)

mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools rasterises the polygons")


def rasterise(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    rles = mask_api.frPyObjects(to_coco_segmentation(polygons), height, width)
    return mask_api.decode(mask_api.merge(rles)).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def shapes() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:90, :120]
    disc = (yy - 45) ** 2 + (xx - 60) ** 2 < 30**2
    ellipse = ((yy - 40) / 25.0) ** 2 + ((xx - 50) / 45.0) ** 2 < 1
    rect = np.zeros((90, 120), dtype=bool)
    rect[10:60, 20:100] = True
    l_shape = rect.copy()
    l_shape[10:45, 50:100] = False
    star = (np.abs(yy - 45) + np.abs(xx - 60) < 35) | (
        (np.abs(yy - 45) < 6) & (np.abs(xx - 60) < 55)
    )
    touching = np.zeros((90, 120), dtype=bool)
    touching[:, :30] = True  # touches three borders
    return {
        "disc": disc,
        "ellipse": ellipse,
        "rect": rect,
        "l_shape": l_shape,
        "star": star,
        "touching_borders": touching,
    }


@pytest.mark.parametrize("name", list(shapes()))
def test_reasonable_shapes_rasterise_back_with_high_iou(name: str) -> None:
    mask = shapes()[name]
    polygons = mask_polygons(torch.from_numpy(mask))
    assert len(polygons) == 1
    assert iou(rasterise(polygons, *mask.shape), mask) > 0.9


def test_components_are_separate_and_ordered_top_left_first() -> None:
    mask = np.zeros((60, 80), dtype=bool)
    mask[40:55, 5:30] = True  # third (lowest)
    mask[5:20, 50:75] = True  # second (same top row, further right)
    mask[5:15, 10:20] = True  # first
    mask[30, 70] = True  # single pixel between
    polygons = mask_polygons(mask)
    assert len(polygons) == 4
    tops = [(p[:, 1].min(), p[p[:, 1] == p[:, 1].min(), 0].min()) for p in polygons]
    assert tops == [(5, 10), (5, 50), (30, 70), (40, 5)]
    assert np.array_equal(polygons[2], [[70.0, 30.0]])


def test_diagonal_neighbours_are_one_component() -> None:
    """8-connectivity, as OpenCV's findContours: a diagonal staircase is one object."""
    mask = np.eye(12, dtype=bool)
    mask[:, 1:] |= mask[:, :-1].copy()
    assert len(mask_polygons(mask)) == 1


def test_vertices_are_clockwise_border_pixels() -> None:
    mask = shapes()["l_shape"]
    (polygon,) = mask_polygons(mask, simplify=False)
    xs, ys = polygon[:, 0].astype(int), polygon[:, 1].astype(int)
    assert mask[ys, xs].all()
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    assert not interior[ys, xs].any()  # every traced pixel is on the boundary
    # For a hole-free shape, the trace visits exactly the pixels with a background 4-neighbour.
    visited = np.zeros_like(mask)
    visited[ys, xs] = True
    assert np.array_equal(visited, mask & ~interior)
    # Shoelace sum is positive for clockwise order on screen (y pointing down).
    x, y = polygon[:, 0], polygon[:, 1]
    assert (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0
    # Simplification keeps only corners: the L has 7 (its inner corner is cut diagonally,
    # since the 8-connected trace steps from (49, 44) to (50, 45), as OpenCV does).
    assert len(mask_polygons(mask)[0]) == 7


def test_hole_is_not_traced() -> None:
    yy, xx = np.mgrid[:50, :50]
    ring = ((yy - 25) ** 2 + (xx - 25) ** 2 < 20**2) & ((yy - 25) ** 2 + (xx - 25) ** 2 >= 8**2)
    polygons = mask_polygons(ring)
    assert len(polygons) == 1
    filled = (yy - 25) ** 2 + (xx - 25) ** 2 < 20**2
    assert iou(rasterise(polygons, 50, 50), filled) > 0.9


@pytest.mark.parametrize(
    "name,mask,count",
    [
        ("empty", np.zeros((5, 5), dtype=bool), 0),
        ("single_pixel", np.pad(np.ones((1, 1), dtype=bool), 2), 1),
        ("one_by_one", np.ones((1, 1), dtype=bool), 1),
        ("horizontal_line", np.pad(np.ones((1, 9), dtype=bool), 1), 1),
        ("vertical_line", np.ones((9, 1), dtype=bool), 1),
        ("diagonal_line", np.eye(7, dtype=bool), 1),
        ("anti_diagonal", np.eye(7, dtype=bool)[::-1].copy(), 1),
        ("checkerboard", (np.indices((6, 6)).sum(0) % 2 == 0), 1),
        ("zero_size", np.zeros((0, 4), dtype=bool), 0),
    ],
)
def test_degenerate_masks_do_not_crash(name: str, mask: np.ndarray, count: int) -> None:
    polygons = mask_polygons(mask)
    assert len(polygons) == count
    for polygon in polygons:
        assert polygon.ndim == 2 and polygon.shape[1] == 2 and polygon.shape[0] >= 1
        xs, ys = polygon[:, 0].astype(int), polygon[:, 1].astype(int)
        assert mask[ys, xs].all()
    if polygons:
        rasterise(polygons, *mask.shape)  # valid COCO input (>= 3 vertices after padding)


def test_compact_masks_polygons_equal_dense_polygons() -> None:
    dense = np.stack([shapes()["disc"], shapes()["l_shape"], np.zeros((90, 120), dtype=bool)])
    masks = CompactMasks.from_dense(torch.from_numpy(dense))
    per_mask = compact_mask_polygons(masks)
    assert len(per_mask) == 3 and per_mask[2] == []
    for polygons, mask in zip(per_mask[:2], dense[:2]):
        expected = mask_polygons(mask)
        assert len(polygons) == len(expected)
        assert all(np.array_equal(a, b) for a, b in zip(polygons, expected))


def test_offset_and_shape_errors() -> None:
    crop = np.ones((2, 3), dtype=bool)
    (polygon,) = crop_polygons(crop, offset=(10, 20))
    assert polygon[:, 0].min() == 10 and polygon[:, 1].min() == 20
    with pytest.raises(ValueError, match=r"mask must have shape \(H, W\), got \(2, 2, 2\)"):
        mask_polygons(np.ones((2, 2, 2), dtype=bool))


def _enclosed_background(mask: np.ndarray) -> int:
    """Reference hole count: 4-connected background components not touching the border (BFS)."""
    h, w = mask.shape
    seen = mask.copy()
    holes = 0
    for y0, x0 in zip(*np.nonzero(~mask)):
        if seen[y0, x0]:
            continue
        stack, border = [(y0, x0)], False
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            border |= y in (0, h - 1) or x in (0, w - 1)
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        holes += not border
    return holes


def test_holes_are_separate_rings_that_rasterise_to_the_holes() -> None:
    yy, xx = np.mgrid[:50, :50]
    ring = ((yy - 25) ** 2 + (xx - 25) ** 2 < 24**2) & ((yy - 25) ** 2 + (xx - 25) ** 2 >= 15**2)
    outer, holes = crop_rings(ring, (100, 200))
    assert len(outer) == 1 and len(holes) == 1
    assert np.array_equal(outer[0], crop_polygons(ring, (100, 200))[0])  # outer rings unchanged
    disc = (yy - 25) ** 2 + (xx - 25) ** 2 < 15**2  # the hole's own pixels
    hole = holes[0] - np.array([100.0, 200.0])
    assert iou(rasterise([hole], 50, 50), disc) > 0.9
    assert all(disc[int(y), int(x)] for x, y in hole)  # vertices are hole pixels
    # 4-connected holes: two diagonal gaps are two holes; a notch open to the edge is none
    square = np.ones((7, 7), dtype=bool)
    square[2, 2] = square[3, 3] = False
    square[0, 3] = False
    assert len(crop_rings(square)[1]) == 2
    assert len(crop_rings(np.zeros((4, 4), dtype=bool))[0]) == 0


@pytest.mark.parametrize("seed", range(6))
def test_hole_count_matches_a_flood_fill_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((24, 31)) < 0.7
    outer, holes = crop_rings(mask)
    assert len(outer) == len(mask_polygons(mask))
    assert len(holes) == _enclosed_background(np.pad(mask, 1))  # padded: crop edge is outside
    masks = CompactMasks.from_dense(torch.from_numpy(mask)[None])
    (rings,) = compact_mask_rings(masks)
    region = masks.regions[0, :2].tolist()
    shifted = [r - np.asarray(region, dtype=np.float64) for r in rings[1]]
    tight = mask[region[1] :, region[0] :]
    assert [h.tolist() for h in shifted] == [h.tolist() for h in crop_rings(tight)[1]]
