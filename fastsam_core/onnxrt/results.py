"""Per-image results of the torch-free runtime: `fastsam_core.results.Results` in numpy.

`NumpyResults` has the public surface of the PyTorch `Results` (masks, boxes, scores, class_ids,
indexing, sort, areas, dense masks, RLE, polygons, JSON, overlay, npz) with numpy arrays instead
of tensors; every export is the same `fastsam_core.export` function, so files are byte-identical
(`tests/unit/test_onnxrt_results.py`) and `Results.load_npz` reads `save_npz` files of either.
`NumpyPromptResults` adds the prompt columns of `PromptResults`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from fastsam_core.export.files import writable
from fastsam_core.onnxrt.compact import NumpyCompactMasks, normalize_index
from fastsam_core.onnxrt.resample import ResizeMode, resize_masks
from fastsam_core.stream import ImageError as ImageError  # re-exported: its home is stream.py


@dataclass
class NumpyResults:
    """Instance masks, boxes and scores for one image (fields as `fastsam_core.results.Results`).

    Attributes:
        masks: N compact masks in the original frame, or in the letterbox frame when
            `mask_window` is set (retina off).
        boxes: (N, 4) float32 xyxy in original-image pixels.
        scores: (N,) float32 confidences.
        class_ids: (N,) int64 indices into `names`.
        orig_hw: (H0, W0) of the original image.
        names: class names.
        path: source file path, if any.
        orig_image: (H0, W0, 3) uint8 RGB array, if kept (needed by `plot` / `save_overlay`).
        mask_window: (top, left, height, width) of the image inside the masks' frame, or None.
        stability_scores: (N,) float32 SAM stability scores, or None when not computed.
        point_coords: (N, 2) float32 anchor points in original pixels, or None.
        frame: the frame index when `path` is a video, else None.
    """

    masks: NumpyCompactMasks
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    orig_hw: tuple[int, int]
    names: tuple[str, ...] = ("object",)
    path: str | None = None
    orig_image: np.ndarray | None = field(default=None, repr=False)
    mask_window: tuple[int, int, int, int] | None = None
    stability_scores: np.ndarray | None = None
    point_coords: np.ndarray | None = None
    frame: int | None = None
    _original: dict[str, NumpyCompactMasks] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        n = len(self.masks)
        self.orig_hw = (int(self.orig_hw[0]), int(self.orig_hw[1]))
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        self.names = tuple(self.names)
        sizes = {"boxes": len(self.boxes), "scores": len(self.scores)}
        sizes["class_ids"] = len(self.class_ids)
        if self.stability_scores is not None:
            self.stability_scores = np.asarray(self.stability_scores, np.float32).reshape(-1)
            sizes["stability_scores"] = len(self.stability_scores)
        if self.point_coords is not None:
            self.point_coords = np.asarray(self.point_coords, np.float32).reshape(-1, 2)
            sizes["point_coords"] = len(self.point_coords)
        if any(v != n for v in sizes.values()):
            raise ValueError(f"Results needs one row per mask ({n} masks), got {sizes}")
        if self.mask_window is None:
            if self.masks.image_hw != self.orig_hw:
                raise ValueError(
                    f"masks live in a {self.masks.image_hw} frame but orig_hw is {self.orig_hw}; "
                    "pass mask_window=(top, left, height, width) for letterbox-frame masks"
                )
        else:
            window = tuple(int(v) for v in self.mask_window)
            if len(window) != 4:
                raise ValueError(f"mask_window must be (top, left, height, width), got {window}")
            self.mask_window = (window[0], window[1], window[2], window[3])
        if self.orig_image is not None:
            image = np.asarray(self.orig_image)
            if image.shape != (*self.orig_hw, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"orig_image must be a ({self.orig_hw[0]}, {self.orig_hw[1]}, 3) uint8 RGB "
                    f"array, got {image.dtype} {image.shape}"
                )
            self.orig_image = image

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Any) -> NumpyResults:
        """Subset (int, slice, bool or integer array/list) -> a new result in the same order."""
        idx = normalize_index(index, len(self))
        return dataclasses.replace(
            self,
            masks=self.masks[idx],
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            class_ids=self.class_ids[idx],
            stability_scores=_rows(self.stability_scores, idx),
            point_coords=_rows(self.point_coords, idx),
            **self._extra_rows(idx),
        )

    def _extra_rows(self, idx: np.ndarray) -> dict[str, Any]:
        """Subclass columns indexed like the others (none here)."""
        return {}

    def sort(self, by: Literal["score", "area"] = "score", descending: bool = True) -> NumpyResults:
        """New result sorted by score or mask area (stable: ties keep their order)."""
        if by == "score":
            key = self.scores
        elif by == "area":
            key = self.areas
        else:
            raise ValueError(f"sort by must be 'score' or 'area', got {by!r}")
        return self[np.argsort(-key if descending else key, kind="stable")]

    def stability(self) -> np.ndarray | None:
        """(N,) SAM stability scores, or None when not computed."""
        return self.stability_scores

    def to(self, device: str) -> NumpyResults:
        """self for "cpu" (the runtime's results live in host memory)."""
        self.masks.to(device)  # refuses anything but the cpu
        return self

    # ------------------------------------------------------------------ views
    @property
    def dense_masks(self) -> np.ndarray:
        """(N, H, W) bool masks in their own frame (letterbox frame when mask_window is set)."""
        return self.masks.to_dense()

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 mask areas in the masks' own frame."""
        return self.masks.areas()

    @property
    def predicted_iou(self) -> np.ndarray:
        """(N,) SAM's name for the score: the detector confidence."""
        return self.scores

    def masks_original(self, mode: ResizeMode = "nearest") -> NumpyCompactMasks:
        """Masks in the original (H0, W0) frame ("nearest" or "bilinear" > 0.5), cached."""
        if self.mask_window is None:
            return self.masks
        if mode not in self._original:
            self._original[mode] = resize_masks(self.masks, self.orig_hw, self.mask_window, mode)
        return self._original[mode]

    # ------------------------------------------------------------------ conversions
    def to_rle(self) -> list[dict[str, Any]]:
        """COCO compressed RLE per mask in the original frame."""
        from fastsam_core.export.rle import encode_masks

        return encode_masks(self.masks_original())

    def to_polygons(self) -> list[list[np.ndarray]]:
        """Outer contours per mask in original pixels: for each mask a list of (K, 2) xy."""
        from fastsam_core.export.polygons import compact_mask_polygons

        return compact_mask_polygons(self.masks_original())

    def to_polygon_rings(self) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
        """(outer rings, hole rings) per mask in original pixels."""
        from fastsam_core.export.polygons import compact_mask_rings

        return compact_mask_rings(self.masks_original())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready document: image info and one COCO / SAM-style record per mask."""
        from fastsam_core.export.records import results_document

        return results_document(self)

    # ------------------------------------------------------------------ files
    def save_json(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write `to_json()`; refuses to replace an existing file unless overwrite."""
        target = writable(path, overwrite)
        target.write_text(json.dumps(self.to_json()))
        return target

    def plot(self, **options: Any) -> np.ndarray:
        """(H0, W0, 3) uint8 RGB overlay (options as `Results.plot`)."""
        from fastsam_core.export.overlay import plot_results

        return plot_results(self, **options)  # type: ignore[arg-type]  # same surface

    def save_overlay(self, path: str | Path, overwrite: bool = False, **options: Any) -> Path:
        """Write `plot(**options)` as a PNG."""
        from fastsam_core.export.overlay import save_png

        target = writable(path, overwrite)
        save_png(self.plot(**options), target, overwrite=True)
        return target

    def save_npz(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write boxes, scores, class ids and the compact masks (`export.npz`, the same file
        format as `Results.save_npz`)."""
        from fastsam_core.export.npz import write_npz

        target = writable(path, overwrite)
        write_npz(
            target,
            self.masks,
            boxes=self.boxes,
            scores=self.scores,
            class_ids=self.class_ids,
            orig_hw=self.orig_hw,
            names=self.names,
            path=self.path,
            mask_window=self.mask_window,
        )
        return target

    @classmethod
    def load_npz(cls, path: str | Path) -> NumpyResults:
        """Read a file written by `save_npz` (either class; orig_image is not stored)."""
        from fastsam_core.export.npz import read_npz

        return cls(**read_npz(path, NumpyCompactMasks))


def _rows(column: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if column is None else column[idx]


@dataclass
class NumpyPromptResults(NumpyResults):
    """`NumpyResults` whose rows answer prompts (columns as `fastsam_core.results.PromptResults`).

    Attributes (besides those of `NumpyResults`):
        prompt_scores: (N,) float32 IoU for a box, the mask confidence for points.
        prompt_ids: (N,) int64 index of the box that picked the row; -1 for points / "subset".
        source_ids: (N,) int64 row of the everything-mode result; -1 for a mask built by the
            prompt (point "union") and the empty row of a box that overlaps no mask.
        prompt_kinds: N of "box", "point" or "subset".
    """

    prompt_scores: np.ndarray | None = None
    prompt_ids: np.ndarray | None = None
    source_ids: np.ndarray | None = None
    prompt_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.masks)
        self.prompt_scores = (
            self.scores.copy()
            if self.prompt_scores is None
            else np.asarray(self.prompt_scores, dtype=np.float32).reshape(-1)
        )
        for name in ("prompt_ids", "source_ids"):
            value = getattr(self, name)
            value = np.full(n, -1) if value is None else np.asarray(value).reshape(-1)
            setattr(self, name, value.astype(np.int64))
        self.prompt_kinds = tuple(self.prompt_kinds) or ("subset",) * n
        sizes = {
            "prompt_scores": len(self.prompt_scores),
            "prompt_ids": len(self.prompt_ids),  # type: ignore[arg-type]
            "source_ids": len(self.source_ids),  # type: ignore[arg-type]
            "prompt_kinds": len(self.prompt_kinds),
        }
        if any(v != n for v in sizes.values()):
            raise ValueError(f"PromptResults needs one entry per mask ({n} masks), got {sizes}")

    @classmethod
    def wrap(
        cls,
        results: NumpyResults,
        prompt_scores: np.ndarray | None = None,
        prompt_ids: np.ndarray | None = None,
        source_ids: np.ndarray | None = None,
        prompt_kinds: tuple[str, ...] = (),
    ) -> NumpyPromptResults:
        """Attach prompt information to an existing result (same masks, no copy)."""
        base = {
            f.name: getattr(results, f.name) for f in dataclasses.fields(NumpyResults) if f.init
        }
        return cls(
            **base,
            prompt_scores=prompt_scores,
            prompt_ids=prompt_ids,
            source_ids=source_ids,
            prompt_kinds=prompt_kinds,
        )

    def __getitem__(self, index: Any) -> NumpyPromptResults:
        """Subset, keeping the prompt columns aligned."""
        return cast(NumpyPromptResults, super().__getitem__(index))

    def _extra_rows(self, idx: np.ndarray) -> dict[str, Any]:
        assert self.prompt_scores is not None and self.prompt_ids is not None  # __post_init__
        assert self.source_ids is not None
        return {
            "prompt_scores": self.prompt_scores[idx],
            "prompt_ids": self.prompt_ids[idx],
            "source_ids": self.source_ids[idx],
            "prompt_kinds": tuple(self.prompt_kinds[i] for i in idx.tolist()),
        }
