"""COCO RLE: byte equality with pycocotools (test-only dependency), round trips, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.export import rle

mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools is the RLE reference")


def coco_encode(mask: np.ndarray) -> dict:
    ref = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(ref["size"]), "counts": ref["counts"].decode("ascii")}


def edge_masks() -> dict[str, np.ndarray]:
    full = np.ones((6, 5), dtype=bool)
    border = np.zeros((6, 5), dtype=bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    column = np.zeros((7, 4), dtype=bool)
    column[:, 2] = True  # full-height column: runs cross column boundaries
    two_columns = np.zeros((7, 4), dtype=bool)
    two_columns[:, 1:3] = True
    corner = np.zeros((5, 5), dtype=bool)
    corner[4, 4] = True
    first = np.zeros((5, 5), dtype=bool)
    first[0, 0] = True
    return {
        "empty": np.zeros((6, 5), dtype=bool),
        "full": full,
        "1x1_on": np.ones((1, 1), dtype=bool),
        "1x1_off": np.zeros((1, 1), dtype=bool),
        "border": border,
        "full_height_column": column,
        "full_height_two_columns": two_columns,
        "last_pixel": corner,
        "first_pixel": first,
        "flipped_view": np.eye(5, dtype=bool)[:, ::-1],
        "row_vector": np.array([[1, 0, 1, 1, 0, 1]], dtype=bool),
        "column_vector": np.array([[1], [1], [0], [1]], dtype=bool),
    }


@pytest.mark.parametrize("name", list(edge_masks()))
def test_edge_cases_equal_pycocotools(name: str) -> None:
    mask = edge_masks()[name]
    got = rle.encode_dense(mask)
    assert got == coco_encode(mask)
    assert np.array_equal(rle.decode(got), mask)
    assert rle.area(got) == int(
        mask_api.area(mask_api.encode(np.asfortranarray(mask.astype(np.uint8))))
    )


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_equal_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        height, width = rng.integers(1, 50, size=2)
        mask = rng.random((height, width)) < rng.random()
        got = rle.encode_dense(mask)
        assert got == coco_encode(mask), (height, width)
        assert np.array_equal(rle.decode(got), mask)


def test_large_counts_and_negative_deltas_round_trip() -> None:
    """Counts above 2**16 and deltas below zero exercise multi-group and sign handling."""
    mask = np.zeros((900, 1300), dtype=bool)
    mask[100:800, 200:1200] = True  # long runs
    mask[0:3, 0] = True  # short runs early, so later deltas are large and positive
    mask[899, 1299] = True
    mask[450, 250:260] = False
    expected = coco_encode(mask)
    assert rle.encode_dense(mask) == expected
    counts = rle.string_to_counts(expected["counts"])
    assert counts.sum() == mask.size and counts.max() > 2**16
    assert np.array_equal(rle.decode(expected), mask)


def test_compact_crops_encode_without_the_dense_image() -> None:
    """Each CompactMasks crop encodes to exactly pycocotools' RLE of the dense mask."""
    rng = np.random.default_rng(7)
    height, width = 37, 29
    dense = np.zeros((8, height, width), dtype=bool)
    boxes = [(0, 0, 29, 37), (0, 0, 5, 37), (24, 0, 29, 37), (3, 30, 10, 37), (28, 36, 29, 37)]
    boxes += [(0, 10, 29, 11), (5, 5, 20, 25), (0, 0, 1, 1)]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        dense[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
    dense[4, 36, 28] = True  # touches the last pixel
    masks = CompactMasks.from_dense(torch.from_numpy(dense))
    encoded = rle.encode_masks(masks)
    for i in range(len(masks)):
        assert encoded[i] == coco_encode(dense[i])
    # A crop covering the full image height triggers the cross-column run merge.
    region = (2, 0, 6, height)
    crop = torch.ones((height, 4), dtype=torch.bool)
    expected = np.zeros((height, width), dtype=bool)
    expected[:, 2:6] = True
    assert rle.encode_crop(crop, region, (height, width)) == coco_encode(expected)


def test_decode_accepts_pycocotools_output_and_uncompressed_counts() -> None:
    mask = np.random.default_rng(3).random((11, 13)) < 0.4
    ref = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert np.array_equal(rle.decode(ref), mask)  # bytes counts
    counts = rle.string_to_counts(ref["counts"])
    assert np.array_equal(rle.decode({"size": [11, 13], "counts": counts.tolist()}), mask)
    assert rle.counts_to_string(counts) == ref["counts"].decode("ascii")


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"counts sum to 5, expected H\*W = 6"):
        rle.decode({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(ValueError, match=r"region must lie inside the 4x4 image"):
        rle.encode_crop(torch.ones((2, 2), dtype=torch.bool), (3, 3, 5, 5), (4, 4))
    with pytest.raises(ValueError, match=r"crop must have shape .* \(2, 2\), got \(2, 3\)"):
        rle.encode_crop(torch.ones((2, 3), dtype=torch.bool), (0, 0, 2, 2), (4, 4))
    with pytest.raises(ValueError, match="truncated RLE string"):
        rle.string_to_counts("0" + chr(48 + 0x20))
