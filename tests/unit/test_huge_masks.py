"""Huge photos (issue 15 item 4): the tight-box fast path against its reference, and the mask
memory budget of the region backends against what they store.

`CompactMasks.tight_boxes` on CPU reads each crop with numpy (`compact_layout.tight_box_crop`);
the reference is `compact_layout.tight_boxes_dense` on the dense masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastsam_core.compact_layout import tight_box_crop, tight_boxes_dense
from fastsam_core.compact_masks import CompactMasks
from fastsam_core.mask_backends import DEFAULT_MAX_MASK_BYTES, get_mask_backend, mask_bytes
from fastsam_core.ops.boxes import scale_boxes
from fastsam_core.ops.letterbox import letterbox_geometry


def loose_crops(
    n: int, height: int, width: int, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Regions much larger than their content (as the mask kernels store them): smooth blobs,
    single pixels, empty crops, content touching every crop edge, regions past the frame."""
    g = torch.Generator().manual_seed(seed)
    regions, crops = [], []
    for i in range(n):
        x0 = int(torch.randint(-3, width, (1,), generator=g))
        y0 = int(torch.randint(-3, height, (1,), generator=g))
        x1 = x0 + int(torch.randint(1, width + 4, (1,), generator=g))
        y1 = y0 + int(torch.randint(1, height + 4, (1,), generator=g))
        h, w = y1 - y0, x1 - x0
        kind = i % 4
        if kind == 0:  # smooth blob, like an upsampled logit map
            small = torch.randn((1, 1, 3, 4), generator=g)
            crop = F.interpolate(small, size=(h, w), mode="bilinear")[0, 0] > 0.5
        elif kind == 1:  # one pixel
            crop = torch.zeros((h, w), dtype=torch.bool)
            crop[int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,)))] = True
        elif kind == 2:  # empty
            crop = torch.zeros((h, w), dtype=torch.bool)
        else:  # noise reaching every edge of the crop
            crop = torch.rand((h, w), generator=g) < 0.3
            crop[0, 0] = crop[-1, -1] = True
        regions.append([x0, y0, x1, y1])
        crops.append(crop)
    return torch.tensor(regions, dtype=torch.int64).reshape(n, 4), crops


@pytest.mark.parametrize(
    ("n", "height", "width"), [(0, 4, 5), (1, 1, 1), (40, 23, 31), (60, 64, 17), (30, 9, 120)]
)
def test_tight_boxes_fast_path_matches_dense_reference(n: int, height: int, width: int) -> None:
    regions, crops = loose_crops(n, height, width, seed=n + height)
    masks = CompactMasks.from_crops(regions, crops, (height, width))
    assert masks.device.type == "cpu"  # the numpy path
    expected = tight_boxes_dense(masks.to_dense())  # (N, 4) reference
    assert torch.equal(masks.tight_boxes(), expected)
    assert masks.tight_boxes().dtype == torch.int64 and masks.tight_boxes().shape == (n, 4)


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0), (1, 1), (5, 7)])
def test_tight_box_crop_empty_and_full(shape: tuple[int, int]) -> None:
    assert tight_box_crop(np.zeros(shape, dtype=bool)) == (0, 0, 0, 0)
    if 0 not in shape:
        assert tight_box_crop(np.ones(shape, dtype=bool)) == (0, 0, shape[1], shape[0])


def test_tight_box_crop_rejects_non_bool() -> None:
    with pytest.raises(ValueError, match=r"crop must be a \(h, w\) bool array, got uint8"):
        tight_box_crop(np.zeros((2, 2), dtype=np.uint8))


@pytest.mark.parametrize("retina", [True, False])
def test_region_budget_covers_what_the_eager_backend_stores(retina: bool) -> None:
    geometry = letterbox_geometry((1200, 1800), 256)  # input 192x256, proto 48x64
    g = torch.Generator().manual_seed(3)
    protos = torch.randn((32, 48, 64), generator=g)
    coeffs = torch.randn((12, 32), generator=g)
    xy = torch.rand((12, 2), generator=g) * torch.tensor([200.0, 150.0])
    boxes_input = torch.cat([xy, xy + torch.tensor([50.0, 40.0])], 1)  # (12, 4) inside 256x192
    boxes_orig = scale_boxes(boxes_input, geometry, rule="official")
    masks = get_mask_backend("eager")(
        protos, coeffs, boxes_input, boxes_orig, geometry,
        retina=retina, postprocess="official", mask_rule="logit",
    )  # fmt: skip
    need = mask_bytes(boxes_input, boxes_orig, geometry, retina=retina, dense=False)
    boxes = boxes_orig if retina else boxes_input
    window_pixels = float(((boxes[:, 2:] - boxes[:, :2] + 2).prod(1)).sum())
    assert masks.data.numel() <= need  # the bool crops (1 byte per stored pixel) fit
    assert need <= (1.5 if retina else 2.5) * window_pixels  # not the old 5 bytes per pixel


def test_96mp_photo_with_300_masks_fits_the_default_budget() -> None:
    """300 boxes of 3 % of a 12000x8000 photo each (9x its area in all, as a dense FastSAM-s
    result in bench/huge_images.py): ~0.9 GB of crops; 5 bytes per pixel would ask ~4.3 GB."""
    geometry = letterbox_geometry((8000, 12000), 1024)
    side = torch.tensor([0.03**0.5 * 12000, 0.03**0.5 * 8000])  # (2,) box w, h
    corner = torch.rand((300, 2), generator=torch.Generator().manual_seed(0)) * (
        torch.tensor([12000.0, 8000.0]) - side
    )
    boxes_orig = torch.cat([corner, corner + side], 1)  # (300, 4) xyxy original px
    boxes_input = boxes_orig * geometry.gain
    need = mask_bytes(boxes_input, boxes_orig, geometry, retina=True, dense=False)
    assert 0.85e9 < need < 1.0e9 < DEFAULT_MAX_MASK_BYTES
