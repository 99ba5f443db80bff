"""CompactMasks against dense (N, H, W) reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.compact_resample import resize_masks


def random_dense(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(n, H, W) bool: noisy blobs inside random boxes, some touching the borders, one empty."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros((n, height, width), dtype=torch.bool)
    for i in range(n):
        if i == 1:
            continue  # keep an empty mask
        x0 = int(torch.randint(0, width, (1,), generator=g))
        y0 = int(torch.randint(0, height, (1,), generator=g))
        x1 = width if i % 3 == 0 else int(torch.randint(x0 + 1, width + 1, (1,), generator=g))
        y1 = int(torch.randint(y0 + 1, height + 1, (1,), generator=g))
        if i % 4 == 2:
            x0, y0 = 0, 0
        noise = torch.rand((y1 - y0, x1 - x0), generator=g) < 0.7
        masks[i, y0:y1, x0:x1] = noise
    return masks


@pytest.mark.parametrize("n,height,width", [(0, 5, 7), (1, 1, 1), (7, 23, 31), (12, 40, 17)])
def test_from_dense_round_trip_and_tight_regions(n: int, height: int, width: int) -> None:
    dense = random_dense(n, height, width, seed=n)
    masks = CompactMasks.from_dense(dense)
    assert len(masks) == n and masks.image_hw == (height, width)
    assert torch.equal(masks.to_dense(), dense)
    assert torch.equal(masks.areas(), dense.sum(dim=(1, 2)))
    for i in range(n):
        ys, xs = np.nonzero(dense[i].numpy())
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0]
        assert masks.regions[i].tolist() == expected
        assert masks.tight_boxes()[i].tolist() == expected
    # Only the tight boxes are stored.
    heights = masks.regions[:, 3] - masks.regions[:, 1]
    widths = masks.regions[:, 2] - masks.regions[:, 0]
    assert masks.data.numel() == int((heights * widths).sum())


def test_from_crops_clips_regions_past_the_frame() -> None:
    height, width = 10, 12
    regions = torch.tensor([[-3, -2, 4, 5], [9, 8, 15, 13], [20, 20, 25, 22], [2, 2, 2, 6]])
    g = torch.Generator().manual_seed(1)
    crops = [torch.rand((int(r[3] - r[1]), int(r[2] - r[0])), generator=g) < 0.5 for r in regions]
    crops[3] = torch.zeros((4, 0), dtype=torch.bool)
    masks = CompactMasks.from_crops(regions, crops, (height, width))
    # Reference: paste every crop into a padded canvas, then cut the frame out.
    pad = 30
    canvas = torch.zeros((4, height + 2 * pad, width + 2 * pad), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        canvas[i, y0 + pad : y1 + pad, x0 + pad : x1 + pad] = crops[i]
    expected = canvas[:, pad : pad + height, pad : pad + width]
    assert torch.equal(masks.to_dense(), expected)
    assert masks.regions.tolist() == [[0, 0, 4, 5], [9, 8, 12, 10], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert masks.tight_boxes()[2].tolist() == [0, 0, 0, 0]


def test_from_crops_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"crop 0 must have shape .*\(2, 3\).*got \(3, 2\)"):
        CompactMasks.from_crops(
            torch.tensor([[0, 0, 3, 2]]), [torch.ones((3, 2), dtype=torch.bool)], (5, 5)
        )
    with pytest.raises(TypeError, match="integer pixel indices"):
        CompactMasks.from_crops(torch.tensor([[0.0, 0, 3, 2]]), [torch.ones(2, 3)], (5, 5))
    with pytest.raises(ValueError, match=r"regions must have shape \(N, 4\) with N = len"):
        CompactMasks.from_crops(torch.zeros((2, 4), dtype=torch.int64), [], (5, 5))
    with pytest.raises(ValueError, match=r"dense masks must have shape \(N, H, W\)"):
        CompactMasks.from_dense(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"offsets\[-1\] \(3\) must equal data.numel\(\) \(4\)"):
        CompactMasks(
            torch.tensor([[0, 0, 1, 3]]),
            torch.zeros(4, dtype=torch.bool),
            torch.tensor([0, 3]),
            (4, 4),
        )


@pytest.mark.parametrize(
    "index",
    [3, -1, slice(1, 6, 2), slice(None), [4, 0, 4], [], np.array([2, 1])],
    ids=["int", "negative", "slice", "all", "list", "empty", "numpy"],
)
def test_getitem_matches_dense_indexing(index: object) -> None:
    dense = random_dense(7, 19, 23, seed=3)
    masks = CompactMasks.from_dense(dense)
    sub = masks[index]
    expected_rows = torch.arange(7)[index if not isinstance(index, int) else [index]]
    assert isinstance(sub, CompactMasks)
    assert torch.equal(sub.to_dense(), dense[expected_rows])
    assert torch.equal(sub.areas(), dense[expected_rows].sum(dim=(1, 2)))


def test_getitem_tensor_indices_and_errors() -> None:
    dense = random_dense(5, 9, 11, seed=4)
    masks = CompactMasks.from_dense(dense)
    keep = torch.tensor([True, False, True, True, False])
    assert torch.equal(masks[keep].to_dense(), dense[keep])
    order = torch.tensor([4, 2, 0])
    assert torch.equal(masks[order].to_dense(), dense[order])
    with pytest.raises(IndexError, match="out of range for 5 masks"):
        masks[5]
    with pytest.raises(IndexError, match=r"bool index must have shape \(5,\)"):
        masks[torch.tensor([True, False])]


def test_contains_points_matches_dense_lookup() -> None:
    dense = random_dense(6, 21, 17, seed=5)
    masks = CompactMasks.from_dense(dense)
    g = torch.Generator().manual_seed(0)
    points = torch.stack(
        [torch.randint(-3, 20, (200,), generator=g), torch.randint(-3, 24, (200,), generator=g)], 1
    )  # (P, 2) xy, some off the frame
    inside = (points[:, 0] >= 0) & (points[:, 0] < 17) & (points[:, 1] >= 0) & (points[:, 1] < 21)
    xs, ys = points[:, 0].clamp(0, 16), points[:, 1].clamp(0, 20)
    expected = dense[:, ys, xs] & inside[None]  # (N, P)
    assert torch.equal(masks.contains_points(points), expected)
    with pytest.raises(TypeError, match="integer pixel coordinates"):
        masks.contains_points(torch.zeros((1, 2)))


def test_box_overlap_matches_dense_sums() -> None:
    dense = random_dense(6, 25, 30, seed=6)
    masks = CompactMasks.from_dense(dense)
    boxes = torch.tensor(
        [[0, 0, 30, 25], [5, 3, 12, 20], [-5, -5, 3, 4], [28, 20, 40, 40], [7, 7, 7, 9]]
    )
    expected = torch.stack(
        [
            dense[:, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].sum(dim=(1, 2))
            for x0, y0, x1, y1 in boxes.tolist()
        ],
        dim=1,
    )  # (N, M)
    assert torch.equal(masks.box_overlap(boxes), expected)
    many = boxes.repeat(5, 1)  # 25 boxes: the summed-area-table path
    assert torch.equal(masks.box_overlap(many), expected.repeat(1, 5))


def test_union_single_dense_and_cat() -> None:
    a = random_dense(4, 13, 15, seed=7)
    b = random_dense(3, 13, 15, seed=8)
    ma, mb = CompactMasks.from_dense(a), CompactMasks.from_dense(b)
    assert torch.equal(ma.union(), a.any(dim=0))
    assert torch.equal(ma.dense(2), a[2])
    both = CompactMasks.cat([ma, mb])
    assert torch.equal(both.to_dense(), torch.cat([a, b]))
    assert torch.equal(both.areas(), torch.cat([a, b]).sum(dim=(1, 2)))
    with pytest.raises(ValueError, match="cat needs one frame"):
        CompactMasks.cat([ma, CompactMasks.empty((5, 5))])


def test_to_device_keeps_content() -> None:
    dense = random_dense(3, 8, 9)
    masks = CompactMasks.from_dense(dense)
    assert masks.to("cpu") is masks
    assert torch.equal(masks.to(torch.device("cpu")).to_dense(), dense)
    assert masks.device == torch.device("cpu")


def test_large_frame_stores_only_region_areas(monkeypatch: pytest.MonkeyPatch) -> None:
    """300 small boxes in a 2000x3000 frame: no (N, H, W) or even (H, W) allocation."""
    height, width, n = 2000, 3000, 300
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, width - 60, (n,), generator=g)
    y0 = torch.randint(0, height - 60, (n,), generator=g)
    sizes = torch.randint(1, 60, (n, 2), generator=g)
    regions = torch.stack([x0, y0, x0 + sizes[:, 0], y0 + sizes[:, 1]], dim=1)
    crops = [torch.rand((int(h), int(w)), generator=g) < 0.5 for w, h in sizes.tolist()]
    limit = height * width // 4  # far below one dense frame, far above any crop

    def guard(name: str):
        real = getattr(torch, name)

        def checked(*args, **kwargs):
            out = real(*args, **kwargs)
            assert out.numel() <= limit, f"torch.{name} allocated {tuple(out.shape)}"
            return out

        return checked

    for name in ("zeros", "empty", "ones", "full", "zeros_like", "cat"):
        monkeypatch.setattr(torch, name, guard(name))
    masks = CompactMasks.from_crops(regions, crops, (height, width))
    region_area = int((sizes[:, 0] * sizes[:, 1]).sum())
    assert masks.data.numel() == region_area < n * height * width // 1000
    assert torch.equal(masks.areas(), torch.stack([c.sum() for c in crops]))
    sub = masks[torch.arange(0, n, 2)]
    assert sub.data.numel() == int((sizes[::2, 0] * sizes[::2, 1]).sum())
    points = torch.stack([x0, y0], dim=1)
    hits = masks.contains_points(points)
    assert torch.equal(hits.diagonal(), torch.stack([c[0, 0] for c in crops]))
    overlap = masks.box_overlap(regions[:5])
    assert torch.equal(overlap.diagonal(), masks.areas()[:5])
    half = resize_masks(masks, (1000, 1500), window=(0, 0, height, width))
    assert half.data.numel() < region_area


def test_from_padded_equals_from_crops() -> None:
    dense = random_dense(6, 20, 25, seed=11)
    reference = CompactMasks.from_dense(dense)
    regions = reference.regions
    g = torch.Generator().manual_seed(2)
    padded = torch.rand((6, 22, 27), generator=g) < 0.5  # garbage outside each crop
    for i, crop in enumerate(reference.crops()):
        padded[i, : crop.shape[0], : crop.shape[1]] = crop
    built = CompactMasks.from_padded(regions, padded, (20, 25))
    assert torch.equal(built.regions, regions) and torch.equal(built.offsets, reference.offsets)
    assert torch.equal(built.to_dense(), dense)
    with pytest.raises(ValueError, match=r"fit the padded \(3, 3\) crops"):
        CompactMasks.from_padded(regions, padded[:, :3, :3], (20, 25))
    with pytest.raises(ValueError, match=r"regions \(N, 4\) and padded \(N, Hb, Wb\)"):
        CompactMasks.from_padded(regions, padded[:2], (20, 25))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    from fastsam_core.export.rle import encode_masks

    dense = random_dense(9, 37, 41, seed=12)
    cpu = CompactMasks.from_dense(dense)
    gpu = CompactMasks.from_dense(dense.cuda())
    assert gpu.device.type == "cuda" and gpu.data.is_cuda
    assert torch.equal(gpu.to_dense().cpu(), dense)
    assert torch.equal(gpu.areas().cpu(), cpu.areas())
    assert torch.equal(gpu[[3, 1]].to_dense().cpu(), dense[[3, 1]])
    points = torch.tensor([[0, 0], [5, 7], [40, 36]])
    assert torch.equal(gpu.contains_points(points.cuda()).cpu(), cpu.contains_points(points))
    boxes = torch.tensor([[0, 0, 20, 20], [3, 4, 41, 37]])
    assert torch.equal(gpu.box_overlap(boxes.cuda()).cpu(), cpu.box_overlap(boxes))
    for mode in ("nearest", "bilinear"):
        resized_cpu = resize_masks(cpu, (50, 61), window=(2, 1, 30, 35), mode=mode).to_dense()
        resized_gpu = resize_masks(gpu, (50, 61), window=(2, 1, 30, 35), mode=mode).to_dense()
        assert (resized_gpu.cpu() != resized_cpu).float().mean() < 1e-3  # ties at exactly 0.5
    assert encode_masks(gpu) == encode_masks(cpu)
    assert torch.equal(gpu.to("cpu").to_dense(), dense)
