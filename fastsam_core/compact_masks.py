"""Compact instance masks: each mask stored only inside its box (issue #5 part 1, spec §3.8).

A dense (N, H, W) bool tensor for 300 masks on a 2000x3000 photo takes 1.8 GB; most of it is
background outside each mask's box. `CompactMasks` keeps, per mask, the bool crop of its integer
region `[x0, y0, x1, y1)` (row-major) in one flat buffer with offsets, so memory grows with the sum
of region areas. The flat layout is what a fused mask-assembly kernel can write directly.
Its index arithmetic lives in `compact_layout.py`; mapping masks to another frame (letterbox to
original image) in `compact_resample.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastsam_core.compact_layout import (
    offsets_from_sizes,
    region_sizes,
    segment_sums,
    tight_box_crop,
    tight_boxes_dense,
)
from fastsam_core.row_index import Index, normalize_index

# box_overlap counts each (mask, box) pair directly up to this many boxes, else builds one
# summed-area table per mask (cheaper per box, but a full int64 pass over the crop).
_DIRECT_SUM_MAX_BOXES = 16


def as_hw(image_hw: Sequence[int]) -> tuple[int, int]:
    """Validate a frame size: (H, W) with H, W >= 0 -> a tuple of two ints."""
    if len(image_hw) != 2 or any(int(v) < 0 for v in image_hw):
        raise ValueError(f"image_hw must be (H, W) with H, W >= 0, got {tuple(image_hw)}")
    return int(image_hw[0]), int(image_hw[1])


class CompactMasks:
    """N binary masks in an (H, W) frame, each stored as a bool crop of its region.

    Attributes:
        regions: (N, 4) int64 [x0, y0, x1, y1), x1/y1 exclusive, clipped to the frame;
            an empty region (x1 <= x0 or y1 <= y0) stores nothing and means an all-false mask.
        data: (sum_i h_i * w_i,) bool, crop i in row-major order at data[offsets[i]:offsets[i+1]].
        offsets: (N + 1,) int64 start offsets of each crop in `data`.
        image_hw: (H, W) of the frame the regions live in.

    Everything lives on `data.device`; no method densifies unless its name says so.
    """

    def __init__(
        self,
        regions: torch.Tensor,
        data: torch.Tensor,
        offsets: torch.Tensor,
        image_hw: Sequence[int],
    ) -> None:
        """Wrap an already-built flat buffer (what a kernel emits); prefer `from_crops`.

        Args:
            regions: (N, 4) int64 [x0, y0, x1, y1) in the frame (0 <= x0 <= x1 <= W, same for y).
            data: (M,) bool flat buffer, M = offsets[-1].
            offsets: (N + 1,) int64, offsets[0] = 0, offsets[i+1] - offsets[i] = h_i * w_i.
            image_hw: (H, W) of the frame.
        """
        self.image_hw = as_hw(image_hw)
        if regions.ndim != 2 or regions.shape[1] != 4:
            raise ValueError(f"regions must have shape (N, 4), got {tuple(regions.shape)}")
        if regions.dtype != torch.int64:
            raise TypeError(f"regions must be int64, got {regions.dtype}; use .long()")
        if data.ndim != 1 or data.dtype != torch.bool:
            raise TypeError(
                f"data must be a flat bool tensor, got {data.dtype} {tuple(data.shape)}"
            )
        n = regions.shape[0]
        if offsets.shape != (n + 1,) or offsets.dtype != torch.int64:
            raise ValueError(
                f"offsets must be int64 of shape ({n + 1},), got {offsets.dtype} "
                f"{tuple(offsets.shape)}"
            )
        if int(offsets[-1]) != data.numel():
            raise ValueError(
                f"offsets[-1] ({int(offsets[-1])}) must equal data.numel() ({data.numel()})"
            )
        self.regions = regions.to(data.device)
        self.data = data
        self.offsets = offsets.to(data.device)
        # Areas and host copies of the small index tensors are cached: masks are immutable
        # after construction, and per-mask loops should not sync with an accelerator N times.
        self._areas: torch.Tensor | None = None
        self._host: tuple[list[list[int]], list[int]] | None = None

    def _host_index(self) -> tuple[list[list[int]], list[int]]:
        """(regions, offsets) as Python lists, fetched once."""
        if self._host is None:
            self._host = (self.regions.tolist(), self.offsets.tolist())
        return self._host

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, image_hw: Sequence[int], device: torch.device | str = "cpu") -> CompactMasks:
        """Zero masks in an (H, W) frame."""
        return cls(
            torch.zeros((0, 4), dtype=torch.int64, device=device),
            torch.zeros(0, dtype=torch.bool, device=device),
            torch.zeros(1, dtype=torch.int64, device=device),
            image_hw,
        )

    @classmethod
    def from_crops(
        cls,
        regions: torch.Tensor,
        crops: Sequence[torch.Tensor],
        image_hw: Sequence[int],
    ) -> CompactMasks:
        """Build from per-mask crops.

        Args:
            regions: (N, 4) integer [x0, y0, x1, y1) in frame pixels; may extend past the frame
                (the crop is clipped with it).
            crops: N bool (or 0/1) tensors, crop i of shape (y1 - y0, x1 - x0) of the unclipped
                region i (a (0, 0) crop for an empty region).
            image_hw: (H, W) of the frame.
        """
        height, width = as_hw(image_hw)
        regions = torch.as_tensor(regions)
        if regions.ndim != 2 or regions.shape[1] != 4 or regions.shape[0] != len(crops):
            raise ValueError(
                f"regions must have shape (N, 4) with N = len(crops) = {len(crops)}, "
                f"got {tuple(regions.shape)}"
            )
        if regions.is_floating_point():
            raise TypeError("regions must be integer pixel indices; round boxes before calling")
        device = crops[0].device if len(crops) else regions.device
        regions = regions.to(device=device, dtype=torch.int64)
        clipped = regions.clone()
        clipped[:, 0::2] = regions[:, 0::2].clamp(0, width)
        clipped[:, 1::2] = regions[:, 1::2].clamp(0, height)
        flat = []
        region_list, clipped_list = regions.tolist(), clipped.tolist()  # one host sync
        for i, crop in enumerate(crops):
            x0, y0, x1, y1 = region_list[i]
            expected = (max(y1 - y0, 0), max(x1 - x0, 0))
            if tuple(crop.shape) != expected:
                raise ValueError(
                    f"crop {i} must have shape (y1 - y0, x1 - x0) = {expected} for region "
                    f"{[x0, y0, x1, y1]}, got {tuple(crop.shape)}"
                )
            cx0, cy0, cx1, cy1 = clipped_list[i]
            if cx1 <= cx0 or cy1 <= cy0:
                clipped[i] = 0
                continue
            inner = crop[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            flat.append(inner.to(device=device, dtype=torch.bool).reshape(-1))
        heights, widths = region_sizes(clipped)
        data = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.bool, device=device)
        return cls(clipped, data, offsets_from_sizes(heights * widths), (height, width))

    @classmethod
    def from_padded(
        cls, regions: torch.Tensor, padded: torch.Tensor, image_hw: Sequence[int]
    ) -> CompactMasks:
        """Build from a batch of crops padded to one size, in one gather (what a batched op emits).

        Args:
            regions: (N, 4) int64 [x0, y0, x1, y1) inside the frame.
            padded: (N, Hb, Wb) bool; crop i is padded[i, :y1 - y0, :x1 - x0], the rest ignored.
            image_hw: (H, W) of the frame.
        """
        height, width = as_hw(image_hw)
        regions = torch.as_tensor(regions, device=padded.device)
        n = regions.shape[0] if regions.ndim == 2 else -1
        if regions.ndim != 2 or regions.shape[1] != 4 or padded.ndim != 3 or padded.shape[0] != n:
            raise ValueError(
                f"from_padded needs regions (N, 4) and padded (N, Hb, Wb), got "
                f"{tuple(regions.shape)} and {tuple(padded.shape)}"
            )
        regions = regions.long()
        heights, widths = region_sizes(regions)
        inside = (
            (regions[:, 0] >= 0)
            & (regions[:, 1] >= 0)
            & (regions[:, 2] <= width)
            & (regions[:, 3] <= height)
        )
        too_big = (heights > padded.shape[1]) | (widths > padded.shape[2])
        if not bool(inside.all()) or bool(too_big.any()):
            raise ValueError(
                f"regions must lie inside the {(height, width)} frame and fit the padded "
                f"{tuple(padded.shape[1:])} crops; clip them first"
            )
        regions = torch.where((heights * widths > 0)[:, None], regions, torch.zeros_like(regions))
        heights, widths = region_sizes(regions)
        rows = torch.arange(padded.shape[1], device=padded.device)
        cols = torch.arange(padded.shape[2], device=padded.device)
        valid = (rows[None, :, None] < heights[:, None, None]) & (
            cols[None, None, :] < widths[:, None, None]
        )  # (N, Hb, Wb)
        # Boolean indexing walks (n, row, col) in order: crop i comes out row-major, in order.
        data = padded.bool()[valid]
        return cls(regions, data, offsets_from_sizes(heights * widths), (height, width))

    @classmethod
    def from_dense(cls, masks: torch.Tensor) -> CompactMasks:
        """Build from dense (N, H, W) masks (bool or 0/1), storing only each tight box."""
        if masks.ndim != 3:
            raise ValueError(f"dense masks must have shape (N, H, W), got {tuple(masks.shape)}")
        masks = masks.bool() if masks.dtype != torch.bool else masks
        n, height, width = masks.shape
        boxes = tight_boxes_dense(masks)  # (N, 4) int64
        crops = [masks[i, y0:y1, x0:x1] for i, (x0, y0, x1, y1) in enumerate(boxes.tolist())]
        if n == 0:
            return cls.empty((height, width), masks.device)
        return cls.from_crops(boxes, crops, (height, width))

    @classmethod
    def cat(cls, items: Sequence[CompactMasks]) -> CompactMasks:
        """Concatenate mask sets that share one frame (and device)."""
        if not items:
            raise ValueError("cat needs at least one CompactMasks")
        frames = {m.image_hw for m in items}
        if len(frames) != 1:
            raise ValueError(f"cat needs one frame, got image_hw {sorted(frames)}")
        device = items[0].device
        offsets = [items[0].offsets]
        for m in items[1:]:
            offsets.append(m.offsets[1:].to(device) + offsets[-1][-1])
        return cls(
            torch.cat([m.regions.to(device) for m in items]),
            torch.cat([m.data.to(device) for m in items]),
            torch.cat(offsets),
            items[0].image_hw,
        )

    # ------------------------------------------------------------------ basic protocol
    def __len__(self) -> int:
        return self.regions.shape[0]

    def __repr__(self) -> str:
        return (
            f"CompactMasks(n={len(self)}, image_hw={self.image_hw}, "
            f"stored={self.data.numel()} px, device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to(self, device: torch.device | str) -> CompactMasks:
        """Copy to another device (returns self if already there)."""
        if torch.device(device) == self.device:
            return self
        out = CompactMasks(
            self.regions.to(device), self.data.to(device), self.offsets.to(device), self.image_hw
        )
        if self._areas is not None:
            out._areas = self._areas.to(device)
        return out

    def crop(self, i: int) -> torch.Tensor:
        """(h_i, w_i) bool view of mask i inside its region."""
        regions, offsets = self._host_index()
        x0, y0, x1, y1 = regions[i]
        start, stop = offsets[i], offsets[i + 1]
        return self.data[start:stop].view(max(y1 - y0, 0), max(x1 - x0, 0))

    def crops(self) -> list[torch.Tensor]:
        """All crops as views, in order."""
        return [self.crop(i) for i in range(len(self))]

    def __getitem__(self, index: Index) -> CompactMasks:
        """Subset by int, slice, bool mask or integer indices; always returns CompactMasks."""
        idx = normalize_index(index, len(self), self.device)
        numels = self.offsets[1:] - self.offsets[:-1]  # (N,)
        new_offsets = offsets_from_sizes(numels[idx])
        # Slices are views; one cat copies only the selected bools (no int64 index buffer).
        bounds = self._host_index()[1]
        pieces = [self.data[bounds[i] : bounds[i + 1]] for i in idx.tolist()]
        data = torch.cat(pieces) if pieces else self.data[:0].clone()
        out = CompactMasks(self.regions[idx], data, new_offsets, self.image_hw)
        if self._areas is not None:
            out._areas = self._areas[idx]
        return out

    # ------------------------------------------------------------------ queries
    def areas(self) -> torch.Tensor:
        """(N,) int64 number of true pixels per mask."""
        if self._areas is None:
            self._areas = segment_sums(self.data, self.offsets)
        return self._areas

    def tight_boxes(self) -> torch.Tensor:
        """(N, 4) int64 [x0, y0, x1, y1) tight box of the true pixels; all zero for empty masks."""
        if self.device.type == "cpu":  # numpy per crop: ~20x faster than torch's `any`
            data = self.data.numpy()
            regions, offsets = self._host_index()
            local = [[0, 0, 0, 0]] * len(self)
            for i, (x0, y0, x1, y1) in enumerate(regions):
                if x1 > x0 and y1 > y0:
                    array = data[offsets[i] : offsets[i + 1]].reshape(y1 - y0, x1 - x0)
                    bx0, by0, bx1, by1 = tight_box_crop(array)
                    if bx1 > bx0:
                        local[i] = [bx0 + x0, by0 + y0, bx1 + x0, by1 + y0]
            return torch.tensor(local, dtype=torch.int64).reshape(len(self), 4)
        boxes = torch.zeros((len(self), 4), dtype=torch.int64, device=self.device)
        for i in range(len(self)):
            crop = self.crop(i)
            if crop.numel() == 0:
                continue
            local_box = tight_boxes_dense(crop[None])[0]
            if local_box[2] > local_box[0]:
                boxes[i] = local_box + self.regions[i, :2].repeat(2)
        return boxes

    def contains_points(self, points: torch.Tensor) -> torch.Tensor:
        """(N, P) bool: is integer point p = (x, y) inside mask n? Off-frame points are False."""
        points = torch.as_tensor(points, device=self.device)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must be (P, 2) integer xy, got {tuple(points.shape)}")
        if points.is_floating_point():
            raise TypeError("points must be integer pixel coordinates; use .long() after rounding")
        x = points[:, 0].long()[None, :]  # (1, P)
        y = points[:, 1].long()[None, :]
        x0, y0, x1, y1 = (self.regions[:, k, None] for k in range(4))  # each (N, 1)
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)  # (N, P)
        flat = self.offsets[:-1, None] + (y - y0) * (x1 - x0) + (x - x0)  # (N, P)
        flat = torch.where(inside, flat, torch.zeros_like(flat))
        if self.data.numel() == 0:
            return inside
        return inside & self.data[flat]

    def box_overlap(self, boxes: torch.Tensor) -> torch.Tensor:
        """(N, M) int64 count of mask pixels inside each integer box [x0, y0, x1, y1)."""
        boxes = torch.as_tensor(boxes, device=self.device)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (M, 4) integer xyxy, got {tuple(boxes.shape)}")
        if boxes.is_floating_point():
            raise TypeError("boxes must be integer pixel coordinates; round/truncate first")
        boxes = boxes.long()
        num_boxes = boxes.shape[0]
        out = torch.zeros((len(self), num_boxes), dtype=torch.int64, device=self.device)
        box_list = boxes.tolist()
        for i, (rx0, ry0, _, _) in enumerate(self._host_index()[0]):
            crop = self.crop(i)
            if crop.numel() == 0:
                continue
            h, w = crop.shape
            if num_boxes <= _DIRECT_SUM_MAX_BOXES:
                # Few boxes (prompts): count inside each intersection directly.
                for j, (bx0, by0, bx1, by1) in enumerate(box_list):
                    cx0, cx1 = min(max(bx0 - rx0, 0), w), min(max(bx1 - rx0, 0), w)
                    cy0, cy1 = min(max(by0 - ry0, 0), h), min(max(by1 - ry0, 0), h)
                    if cx1 > cx0 and cy1 > cy0:
                        out[i, j] = torch.count_nonzero(crop[cy0:cy1, cx0:cx1])
                continue
            # Many boxes: summed-area table of the crop, integral[r, c] = sum(crop[:r, :c]).
            integral = torch.zeros((h + 1, w + 1), dtype=torch.int64, device=self.device)
            integral[1:, 1:] = crop.long().cumsum(0).cumsum(1)
            bx0 = (boxes[:, 0] - rx0).clamp(0, w)  # (M,) boxes in crop coordinates
            bx1 = (boxes[:, 2] - rx0).clamp(0, w)
            by0 = (boxes[:, 1] - ry0).clamp(0, h)
            by1 = (boxes[:, 3] - ry0).clamp(0, h)
            bx1, by1 = torch.maximum(bx1, bx0), torch.maximum(by1, by0)
            out[i] = (
                integral[by1, bx1] - integral[by0, bx1] - integral[by1, bx0] + integral[by0, bx0]
            )
        return out

    # ------------------------------------------------------------------ dense views
    def to_dense(self) -> torch.Tensor:
        """(N, H, W) bool dense masks (allocates N*H*W bytes)."""
        height, width = self.image_hw
        dense = torch.zeros((len(self), height, width), dtype=torch.bool, device=self.device)
        for i, (x0, y0, x1, y1) in enumerate(self._host_index()[0]):
            if x1 > x0 and y1 > y0:
                dense[i, y0:y1, x0:x1] = self.crop(i)
        return dense

    def union(self) -> torch.Tensor:
        """(H, W) bool union of all masks (one dense frame, not N)."""
        height, width = self.image_hw
        out = torch.zeros((height, width), dtype=torch.bool, device=self.device)
        for i, (x0, y0, x1, y1) in enumerate(self._host_index()[0]):
            if x1 > x0 and y1 > y0:
                out[y0:y1, x0:x1] |= self.crop(i)
        return out

    def dense(self, i: int) -> torch.Tensor:
        """(H, W) bool dense view of the single mask i."""
        height, width = self.image_hw
        out = torch.zeros((height, width), dtype=torch.bool, device=self.device)
        x0, y0, x1, y1 = self._host_index()[0][i]
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = self.crop(i)
        return out


# ---------------------------------------------------------------------- private helpers
