"""Compact instance masks in numpy: the torch-free twin of `fastsam_core.compact_masks`.

Same layout as `CompactMasks` (regions (N, 4) int64 [x0, y0, x1, y1), a flat bool buffer of the
row-major crops, (N + 1,) int64 offsets, the (H, W) frame), same methods, numpy arrays in and
out; `tests/unit/test_onnxrt_results.py` checks every method against `CompactMasks` on the same
random masks. The exporters (`fastsam_core.export`) accept either class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Same dispatch as CompactMasks.box_overlap: direct counts up to this many boxes, else a
# summed-area table per mask.
_DIRECT_SUM_MAX_BOXES = 16


def as_hw(image_hw: Sequence[int]) -> tuple[int, int]:
    """Validate a frame size: (H, W) with H, W >= 0 -> a tuple of two ints."""
    if len(image_hw) != 2 or any(int(v) < 0 for v in image_hw):
        raise ValueError(f"image_hw must be (H, W) with H, W >= 0, got {tuple(image_hw)}")
    return int(image_hw[0]), int(image_hw[1])


def normalize_index(index: Any, n: int) -> np.ndarray:
    """Any supported row index (int, slice, bool or integer sequence/array) -> (K,) int64
    positions in [0, n); the numpy twin of `fastsam_core.row_index.normalize_index`."""
    if isinstance(index, bool):
        raise TypeError("a bare bool is not a valid mask index; use an int or a bool array")
    if isinstance(index, (int, np.integer)):
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"mask index {i} out of range for {n} masks")
        return np.array([i % n], dtype=np.int64)
    if isinstance(index, slice):
        return np.arange(n, dtype=np.int64)[index]
    if isinstance(index, (list, tuple)) and len(index) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.asarray(index)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise IndexError(f"bool index must have shape ({n},), got {idx.shape}")
        return np.flatnonzero(idx).astype(np.int64)
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        raise IndexError(f"index must be 1-D integer or bool, got {idx.dtype} {idx.shape}")
    idx = idx.astype(np.int64).reshape(-1)
    if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"mask index out of range for {n} masks: {idx.tolist()}")
    return idx % max(n, 1)


def _offsets(numels: np.ndarray) -> np.ndarray:
    """(N,) element counts -> (N + 1,) int64 start offsets."""
    offsets = np.zeros(numels.size + 1, dtype=np.int64)
    np.cumsum(numels, out=offsets[1:])
    return offsets


def tight_boxes_dense(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) int64 [x0, y0, x1, y1) tight boxes; zeros for empty masks."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.int64)
    if masks.size == 0:
        return boxes
    rows, cols = np.any(masks, axis=2), np.any(masks, axis=1)  # (N, H), (N, W)
    nonempty = np.any(rows, axis=1)  # (N,)
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = masks.shape[2] - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = masks.shape[1] - rows[:, ::-1].argmax(axis=1)
    boxes[~nonempty] = 0
    return boxes


class NumpyCompactMasks:
    """N binary masks in an (H, W) frame, each stored as a bool crop of its region (numpy).

    Attributes:
        regions: (N, 4) int64 [x0, y0, x1, y1), clipped to the frame; empty regions store nothing.
        data: (sum_i h_i * w_i,) bool, crop i row-major at data[offsets[i]:offsets[i+1]].
        offsets: (N + 1,) int64 start offsets of each crop in `data`.
        image_hw: (H, W) of the frame the regions live in.
    """

    def __init__(
        self, regions: np.ndarray, data: np.ndarray, offsets: np.ndarray, image_hw: Sequence[int]
    ) -> None:
        """Wrap an already-built flat buffer (what the mask assembly emits); see `from_crops`."""
        self.image_hw = as_hw(image_hw)
        regions, data, offsets = np.asarray(regions), np.asarray(data), np.asarray(offsets)
        if regions.ndim != 2 or regions.shape[1] != 4:
            raise ValueError(f"regions must have shape (N, 4), got {regions.shape}")
        if regions.dtype != np.int64:
            raise TypeError(f"regions must be int64, got {regions.dtype}; use .astype(np.int64)")
        if data.ndim != 1 or data.dtype != np.bool_:
            raise TypeError(f"data must be a flat bool array, got {data.dtype} {data.shape}")
        n = regions.shape[0]
        if offsets.shape != (n + 1,) or offsets.dtype != np.int64:
            raise ValueError(
                f"offsets must be int64 of shape ({n + 1},), got {offsets.dtype} {offsets.shape}"
            )
        if int(offsets[-1]) != data.size:
            raise ValueError(f"offsets[-1] ({int(offsets[-1])}) must equal data.size ({data.size})")
        self.regions, self.data, self.offsets = regions, data, offsets
        self._areas: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, image_hw: Sequence[int], device: str = "cpu") -> NumpyCompactMasks:
        """Zero masks in an (H, W) frame (`device` is accepted for CompactMasks' signature)."""
        return cls(np.zeros((0, 4), np.int64), np.zeros(0, bool), np.zeros(1, np.int64), image_hw)

    @classmethod
    def from_crops(
        cls, regions: Any, crops: Sequence[np.ndarray], image_hw: Sequence[int]
    ) -> NumpyCompactMasks:
        """Build from per-mask crops of (possibly off-frame) integer regions, clipping both.

        Args:
            regions: (N, 4) integer [x0, y0, x1, y1) in frame pixels.
            crops: N bool (or 0/1) arrays, crop i of shape (y1 - y0, x1 - x0).
            image_hw: (H, W) of the frame.
        """
        height, width = as_hw(image_hw)
        regions = np.asarray(regions).reshape(-1, 4) if len(crops) else np.zeros((0, 4))
        if regions.shape[0] != len(crops):
            raise ValueError(
                f"regions must have shape (N, 4) with N = len(crops) = {len(crops)}, "
                f"got {regions.shape}"
            )
        if regions.dtype.kind == "f" and len(crops):
            raise TypeError("regions must be integer pixel indices; round boxes before calling")
        regions = regions.astype(np.int64)
        clipped = regions.copy()
        clipped[:, 0::2] = regions[:, 0::2].clip(0, width)
        clipped[:, 1::2] = regions[:, 1::2].clip(0, height)
        flat = []
        for i, crop in enumerate(crops):
            x0, y0, x1, y1 = regions[i].tolist()
            crop = np.asarray(crop)
            expected = (max(y1 - y0, 0), max(x1 - x0, 0))
            if crop.shape != expected:
                raise ValueError(
                    f"crop {i} must have shape (y1 - y0, x1 - x0) = {expected} for region "
                    f"{[x0, y0, x1, y1]}, got {crop.shape}"
                )
            cx0, cy0, cx1, cy1 = clipped[i].tolist()
            if cx1 <= cx0 or cy1 <= cy0:
                clipped[i] = 0
                continue
            flat.append(crop[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(bool).reshape(-1))
        sizes = (clipped[:, 3] - clipped[:, 1]) * (clipped[:, 2] - clipped[:, 0])  # (N,)
        data = np.concatenate(flat) if flat else np.zeros(0, dtype=bool)
        return cls(clipped, data, _offsets(sizes), (height, width))

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> NumpyCompactMasks:
        """Build from dense (N, H, W) masks (bool or 0/1), storing only each tight box."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"dense masks must have shape (N, H, W), got {masks.shape}")
        masks = masks.astype(bool, copy=False)
        boxes = tight_boxes_dense(masks)  # (N, 4)
        crops = [masks[i, y0:y1, x0:x1] for i, (x0, y0, x1, y1) in enumerate(boxes.tolist())]
        return cls.from_crops(boxes, crops, masks.shape[1:])

    @classmethod
    def cat(cls, items: Sequence[NumpyCompactMasks]) -> NumpyCompactMasks:
        """Concatenate mask sets that share one frame."""
        if not items:
            raise ValueError("cat needs at least one CompactMasks")
        frames = {m.image_hw for m in items}
        if len(frames) != 1:
            raise ValueError(f"cat needs one frame, got image_hw {sorted(frames)}")
        numels = np.concatenate([np.diff(m.offsets) for m in items])
        return cls(
            np.concatenate([m.regions for m in items]),
            np.concatenate([m.data for m in items]),
            _offsets(numels),
            items[0].image_hw,
        )

    # ------------------------------------------------------------------ basic protocol
    def __len__(self) -> int:
        return self.regions.shape[0]

    def __repr__(self) -> str:
        stored = self.data.size
        return f"NumpyCompactMasks(n={len(self)}, image_hw={self.image_hw}, stored={stored} px)"

    @property
    def device(self) -> str:
        return "cpu"

    def to(self, device: str) -> NumpyCompactMasks:
        """self for "cpu" (numpy masks live in host memory), as `CompactMasks.to`."""
        if str(device) != "cpu":
            raise ValueError(f"numpy masks live on the cpu, got device {device!r}")
        return self

    def crop(self, i: int) -> np.ndarray:
        """(h_i, w_i) bool view of mask i inside its region."""
        x0, y0, x1, y1 = self.regions[i].tolist()
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.data[start:stop].reshape(max(y1 - y0, 0), max(x1 - x0, 0))

    def crops(self) -> list[np.ndarray]:
        return [self.crop(i) for i in range(len(self))]

    def __getitem__(self, index: Any) -> NumpyCompactMasks:
        """Subset by int, slice, bool mask or integer indices; always returns masks."""
        idx = normalize_index(index, len(self))
        bounds = self.offsets.tolist()
        pieces = [self.data[bounds[i] : bounds[i + 1]] for i in idx.tolist()]
        data = np.concatenate(pieces) if pieces else np.zeros(0, dtype=bool)
        out = NumpyCompactMasks(
            self.regions[idx], data, _offsets(np.diff(self.offsets)[idx]), self.image_hw
        )
        if self._areas is not None:
            out._areas = self._areas[idx]
        return out

    # ------------------------------------------------------------------ queries
    def areas(self) -> np.ndarray:
        """(N,) int64 number of true pixels per mask."""
        if self._areas is None:
            bounds = self.offsets.tolist()
            self._areas = np.array(
                [np.count_nonzero(self.data[bounds[i] : bounds[i + 1]]) for i in range(len(self))],
                dtype=np.int64,
            )
        return self._areas

    def tight_boxes(self) -> np.ndarray:
        """(N, 4) int64 [x0, y0, x1, y1) tight box of the true pixels; zeros for empty masks."""
        boxes = np.zeros((len(self), 4), dtype=np.int64)
        for i in range(len(self)):
            crop = self.crop(i)
            if crop.size == 0:
                continue
            local = tight_boxes_dense(crop[None])[0]
            if local[2] > local[0]:
                boxes[i] = local + np.tile(self.regions[i, :2], 2)
        return boxes

    def contains_points(self, points: Any) -> np.ndarray:
        """(N, P) bool: is integer point p = (x, y) inside mask n? Off-frame points are False."""
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must be (P, 2) integer xy, got {points.shape}")
        if points.dtype.kind == "f":
            raise TypeError("points must be integer pixel coordinates; round them first")
        x = points[:, 0].astype(np.int64)[None, :]  # (1, P)
        y = points[:, 1].astype(np.int64)[None, :]
        x0, y0, x1, y1 = (self.regions[:, k, None] for k in range(4))  # each (N, 1)
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)  # (N, P)
        flat = self.offsets[:-1, None] + (y - y0) * (x1 - x0) + (x - x0)  # (N, P)
        if self.data.size == 0:
            return inside
        return inside & self.data[np.where(inside, flat, 0)]

    def box_overlap(self, boxes: Any) -> np.ndarray:
        """(N, M) int64 count of mask pixels inside each integer box [x0, y0, x1, y1)."""
        boxes = np.asarray(boxes)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (M, 4) integer xyxy, got {boxes.shape}")
        if boxes.dtype.kind == "f":
            raise TypeError("boxes must be integer pixel coordinates; round/truncate first")
        boxes = boxes.astype(np.int64)
        out = np.zeros((len(self), boxes.shape[0]), dtype=np.int64)
        for i, (rx0, ry0, _, _) in enumerate(self.regions.tolist()):
            crop = self.crop(i)
            if crop.size == 0:
                continue
            h, w = crop.shape
            bx0 = (boxes[:, 0] - rx0).clip(0, w)  # (M,) boxes in crop coordinates
            bx1 = np.maximum((boxes[:, 2] - rx0).clip(0, w), bx0)
            by0 = (boxes[:, 1] - ry0).clip(0, h)
            by1 = np.maximum((boxes[:, 3] - ry0).clip(0, h), by0)
            if boxes.shape[0] <= _DIRECT_SUM_MAX_BOXES:  # few boxes (prompts): count directly
                for j in range(boxes.shape[0]):
                    out[i, j] = np.count_nonzero(crop[by0[j] : by1[j], bx0[j] : bx1[j]])
                continue
            integral = np.zeros((h + 1, w + 1), dtype=np.int64)  # sum(crop[:r, :c])
            integral[1:, 1:] = crop.cumsum(0, dtype=np.int64).cumsum(1)
            out[i] = (
                integral[by1, bx1] - integral[by0, bx1] - integral[by1, bx0] + integral[by0, bx0]
            )
        return out

    # ------------------------------------------------------------------ dense views
    def to_dense(self) -> np.ndarray:
        """(N, H, W) bool dense masks (allocates N*H*W bytes)."""
        dense = np.zeros((len(self), *self.image_hw), dtype=bool)
        for i, (x0, y0, x1, y1) in enumerate(self.regions.tolist()):
            if x1 > x0 and y1 > y0:
                dense[i, y0:y1, x0:x1] = self.crop(i)
        return dense

    def union(self) -> np.ndarray:
        """(H, W) bool union of all masks (one dense frame, not N)."""
        out = np.zeros(self.image_hw, dtype=bool)
        for i, (x0, y0, x1, y1) in enumerate(self.regions.tolist()):
            if x1 > x0 and y1 > y0:
                out[y0:y1, x0:x1] |= self.crop(i)
        return out

    def dense(self, i: int) -> np.ndarray:
        """(H, W) bool dense view of the single mask i."""
        out = np.zeros(self.image_hw, dtype=bool)
        x0, y0, x1, y1 = self.regions[i].tolist()
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = self.crop(i)
        return out
