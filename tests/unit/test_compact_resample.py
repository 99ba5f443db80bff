"""resize_masks against F.interpolate on the dense window."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.compact_resample import resize_masks


def noisy_masks(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(n, H, W) bool: random noise inside random boxes (some on the borders), mask 1 empty."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros((n, height, width), dtype=torch.bool)
    for i in range(n):
        if i == 1:
            continue
        x0 = 0 if i % 4 == 2 else int(torch.randint(0, width - 1, (1,), generator=g))
        y0 = 0 if i % 4 == 2 else int(torch.randint(0, height - 1, (1,), generator=g))
        x1 = width if i % 3 == 0 else int(torch.randint(x0 + 1, width + 1, (1,), generator=g))
        y1 = int(torch.randint(y0 + 1, height + 1, (1,), generator=g))
        masks[i, y0:y1, x0:x1] = torch.rand((y1 - y0, x1 - x0), generator=g) < 0.7
    return masks


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("out_hw", [(100, 157), (20, 31), (37, 58), (1, 1)])
def test_resized_matches_interpolate_on_the_dense_window(mode: str, out_hw: tuple) -> None:
    dense = noisy_masks(9, 48, 64, seed=9)
    masks = CompactMasks.from_dense(dense)
    top, left, height, width = 5, 3, 37, 58
    window = dense[:, top : top + height, left : left + width].double()[:, None]  # (N, 1, h, w)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    value = F.interpolate(window, size=out_hw, mode=mode, **kwargs)[:, 0]  # (N, H0, W0)
    resized = resize_masks(masks, out_hw, window=(top, left, height, width), mode=mode)
    assert resized.image_hw == out_hw
    differs = resized.to_dense() != (value > 0.5)
    if mode == "nearest":
        assert not differs.any()
    else:
        # Only pixels whose exact value is 0.5 may differ: float32 rounding order decides them
        # and ATen's bilinear kernels differ among themselves there.
        assert bool(((value[differs] - 0.5).abs() < 1e-6).all())


def test_resized_validates_window_and_mode() -> None:
    masks = CompactMasks.from_dense(noisy_masks(2, 10, 10))
    with pytest.raises(ValueError, match=r"window .* must lie inside the \(10, 10\) frame"):
        resize_masks(masks, (20, 20), window=(0, 0, 11, 10))
    with pytest.raises(ValueError, match="mode must be 'nearest' or 'bilinear'"):
        resize_masks(masks, (20, 20), mode="bicubic")  # type: ignore[arg-type]


def test_whole_frame_identity_and_empty_output() -> None:
    dense = noisy_masks(5, 12, 17, seed=3)
    masks = CompactMasks.from_dense(dense)
    for mode in ("nearest", "bilinear"):
        same = resize_masks(masks, (12, 17), mode=mode)  # type: ignore[arg-type]
        assert torch.equal(same.to_dense(), dense)
    assert len(resize_masks(masks, (0, 9))) == 0
    assert resize_masks(CompactMasks.empty((12, 17)), (30, 40)).image_hw == (30, 40)
