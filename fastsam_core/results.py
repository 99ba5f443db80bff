"""Per-image results of a FastSAM prediction and their exports (issue #3 part 4, spec §3.9).

`Results` holds everything-mode rows; `PromptResults` (a subclass) adds which prompt picked each
row and how well. File formats live in `export/` (RLE, polygons, overlay PNG, npz).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.compact_resample import ResizeMode, resize_masks
from fastsam_core.export.files import writable
from fastsam_core.ops.stability import PendingStability, resolve_stability
from fastsam_core.row_index import Index, normalize_index
from fastsam_core.stream import ImageError as ImageError  # re-exported: its home is stream.py


@dataclass
class Results:
    """Instance masks, boxes and scores for one image.

    Attributes:
        masks: N compact masks, in the original frame (retina) or, when `mask_window` is set,
            in the letterbox frame (non-retina, spec §3.8: masks stay at input resolution).
        boxes: (N, 4) float32 xyxy in original-image pixels.
        scores: (N,) float32 confidences.
        class_ids: (N,) int64 indices into `names`.
        orig_hw: (H0, W0) of the original image.
        names: class names (FastSAM has one class, "object").
        path: source file path, if any.
        orig_image: (H0, W0, 3) uint8 RGB tensor, if kept (needed by `save_overlay`).
        mask_window: (top, left, height, width) of the image content inside the masks' frame;
            None when masks are already in the original frame.
        stability_scores: (N,) float32 SAM stability score of each mask's logits
            (`ops.stability`); from the predictor a `PendingStability` computed on first use
            (`Results.stability()`, exports); None when unknown (masks built from dense input).
        point_coords: (N, 2) float32 xy in original pixels of each detection's anchor point
            (the prediction cell centre), or None when unknown (records then use the box centre).
        frame: the frame index when `path` is a video (`io.video`), else None.
    """

    masks: CompactMasks
    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    orig_hw: tuple[int, int]
    names: tuple[str, ...] = ("object",)
    path: str | None = None
    orig_image: torch.Tensor | None = field(default=None, repr=False)
    mask_window: tuple[int, int, int, int] | None = None
    stability_scores: torch.Tensor | PendingStability | None = None
    point_coords: torch.Tensor | None = None
    frame: int | None = None
    _original: dict[str, CompactMasks] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        n = len(self.masks)
        self.orig_hw = (int(self.orig_hw[0]), int(self.orig_hw[1]))
        self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32).reshape(-1, 4)
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1)
        self.class_ids = torch.as_tensor(self.class_ids, dtype=torch.int64).reshape(-1)
        self.names = tuple(self.names)
        sizes = {
            "boxes": self.boxes.shape[0],
            "scores": self.scores.shape[0],
            "class_ids": self.class_ids.shape[0],
        }
        if isinstance(self.stability_scores, PendingStability):
            sizes["stability_scores"] = len(self.stability_scores)
        elif self.stability_scores is not None:
            self.stability_scores = torch.as_tensor(self.stability_scores).float().reshape(-1)
            sizes["stability_scores"] = self.stability_scores.shape[0]
        if self.point_coords is not None:
            self.point_coords = torch.as_tensor(self.point_coords).float().reshape(-1, 2)
            sizes["point_coords"] = self.point_coords.shape[0]
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
            image = torch.as_tensor(self.orig_image)
            if image.shape != (*self.orig_hw, 3) or image.dtype != torch.uint8:
                raise ValueError(
                    f"orig_image must be a ({self.orig_hw[0]}, {self.orig_hw[1]}, 3) uint8 RGB "
                    f"tensor, got {image.dtype} {tuple(image.shape)}"
                )
            self.orig_image = image

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Index) -> Results:
        """Subset (int, slice, bool/long tensor or list) -> a new Results in the same order."""
        idx = normalize_index(index, len(self), self.masks.device)
        cpu_idx = idx.to(self.boxes.device)
        picked = {name: _rows(getattr(self, name), cpu_idx) for name in _ROW_COLUMNS}
        return Results(**results_fields(self) | picked | {"masks": self.masks[idx]})

    def sort(self, by: Literal["score", "area"] = "score", descending: bool = True) -> Results:
        """New Results sorted by score or mask area (stable: ties keep their order)."""
        if by == "score":
            key = self.scores
        elif by == "area":
            key = self.areas.to(self.scores.device)
        else:
            raise ValueError(f"sort by must be 'score' or 'area', got {by!r}")
        order = torch.sort(key, descending=descending, stable=True).indices
        return self[order]

    def stability(self) -> torch.Tensor | None:
        """(N,) SAM stability scores, computed (once) if still pending; None when unknown."""
        self.stability_scores = resolve_stability(self.stability_scores)
        return self.stability_scores

    def to(self, device: torch.device | str) -> Results:
        """Copy masks and tensors to `device` (orig_image stays where it is)."""
        moved = {name: _rows(getattr(self, name), None, device) for name in _ROW_COLUMNS}
        return Results(**results_fields(self) | moved | {"masks": self.masks.to(device)})

    # ------------------------------------------------------------------ views
    @property
    def dense_masks(self) -> torch.Tensor:
        """(N, H, W) bool masks in their own frame (letterbox frame when mask_window is set)."""
        return self.masks.to_dense()

    @property
    def areas(self) -> torch.Tensor:
        """(N,) int64 mask areas in the masks' own frame (see `masks_original` for the photo)."""
        return self.masks.areas()

    def masks_original(self, mode: ResizeMode = "nearest") -> CompactMasks:
        """Masks in the original (H0, W0) frame; letterbox-frame masks are resized from the window.

        `mode="nearest"` is how the official plot maps non-retina masks; "bilinear" (> 0.5)
        is what ultralytics' prompt code does (spec §4.1, §4.2). Cached per mode.
        """
        if self.mask_window is None:
            return self.masks
        if mode not in self._original:
            self._original[mode] = resize_masks(self.masks, self.orig_hw, self.mask_window, mode)
        return self._original[mode]

    # ------------------------------------------------------------------ conversions
    def to_rle(self) -> list[dict[str, Any]]:
        """COCO compressed RLE per mask in the original frame: {"size": [H0, W0], "counts": str}."""
        from fastsam_core.export.rle import encode_masks

        return encode_masks(self.masks_original())

    def to_polygons(self) -> list[list[np.ndarray]]:
        """Outer contours per mask in original pixels: for each mask a list of (K, 2) float xy."""
        from fastsam_core.export.polygons import compact_mask_polygons

        return compact_mask_polygons(self.masks_original())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready document: image info and one COCO / SAM-style record per mask (fields:
        `export.records`; `bbox` is the mask's tight box, `det_bbox` the detector's)."""
        from fastsam_core.export.records import results_document

        return results_document(self)

    def to_polygon_rings(self) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
        """(outer rings, hole rings) per mask in original pixels (`export.polygons.crop_rings`)."""
        from fastsam_core.export.polygons import compact_mask_rings

        return compact_mask_rings(self.masks_original())

    @property
    def predicted_iou(self) -> torch.Tensor:
        """(N,) SAM's name for the score: here the detector confidence (`scores`)."""
        return self.scores

    # ------------------------------------------------------------------ files
    def save_json(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write `to_json()` to `path`; refuses to replace an existing file unless overwrite."""
        target = writable(path, overwrite)
        target.write_text(json.dumps(self.to_json()))
        return target

    def plot(self, **options: Any) -> np.ndarray:
        """(H0, W0, 3) uint8 RGB overlay of the masks on `orig_image`; options (`export.overlay.
        plot_results`): alpha=0.6, contours=True, seed=0, boxes=False (detector boxes),
        labels=False ("name score"), prompts=None (a `Prompts` whose boxes / points are drawn)."""
        from fastsam_core.export.overlay import plot_results

        return plot_results(self, **options)

    def save_overlay(self, path: str | Path, overwrite: bool = False, **options: Any) -> Path:
        """Write `plot(**options)` as a PNG (alpha=0.6, contours=True, seed=0 by default)."""
        from fastsam_core.export.overlay import save_png

        target = writable(path, overwrite)
        save_png(self.plot(**options), target, overwrite=True)
        return target

    def to_supervision(self) -> Any:
        """`supervision.Detections` (dense masks, detector boxes, scores, class ids and names)
        for supervision's annotators; needs `pip install supervision`."""
        from fastsam_core.export.supervision import to_detections

        return to_detections(self)

    def save_npz(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write boxes, scores, class ids and the compact masks (see `export.npz.write_npz`)."""
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
    def load_npz(cls, path: str | Path) -> Results:
        """Read a file written by `save_npz` (orig_image is not stored)."""
        from fastsam_core.export.npz import read_npz

        return cls(**read_npz(path))


def results_fields(results: Results) -> dict[str, Any]:
    """The constructor fields of `Results` as `results` holds them: what a subclass (prompt
    rows, soft masks) passes on to wrap the same rows without copying them."""
    return {f.name: getattr(results, f.name) for f in dataclasses.fields(Results) if f.init}


# The per-row columns besides the masks (indexed and moved together by __getitem__ and to).
_ROW_COLUMNS = ("boxes", "scores", "class_ids", "stability_scores", "point_coords")


def _rows(
    column: Any,
    index: torch.Tensor | None,
    device: torch.device | str | None = None,
) -> Any:
    """An optional per-row column, indexed and/or moved like the others (None stays None)."""
    if column is not None and index is not None:
        column = column[index.to(column.device)]
    return column if column is None or device is None else column.to(device)


def results_from_dense(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    orig_hw: Sequence[int],
    class_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> Results:
    """Convenience: Results from dense (N, H, W) masks (compacted to their tight boxes)."""
    if class_ids is None:
        class_ids = torch.zeros(masks.shape[0], dtype=torch.int64)
    return Results(
        masks=CompactMasks.from_dense(masks),
        boxes=boxes,
        scores=scores,
        class_ids=class_ids,
        orig_hw=(int(orig_hw[0]), int(orig_hw[1])),
        **kwargs,
    )


@dataclass
class PromptResults(Results):
    """`Results` whose rows answer prompts (a `Results` subclass: every export works).

    Attributes (besides those of `Results`):
        prompt_scores: (N,) float32 match score: IoU for a box (0 for a box overlapping no
            mask), CLIP similarity (softmax probability for the "official" text rule) for a
            text, the mask confidence for points.
        prompt_ids: (N,) int64 index of the box / text that picked the row; -1 for point prompts
            and for "subset" output (ultralytics style, rows not tied to one prompt).
        source_ids: (N,) int64 row of the everything-mode Results the mask came from; -1 for a
            mask built by the prompt (the "union" of point prompts) and for the empty row of a
            box that overlaps no mask (`box_no_match="empty"`).
        prompt_kinds: N of "box", "point", "text" or "subset".
    """

    prompt_scores: torch.Tensor | None = None
    prompt_ids: torch.Tensor | None = None
    source_ids: torch.Tensor | None = None
    prompt_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.masks)
        self.prompt_scores = (
            self.scores.clone()
            if self.prompt_scores is None
            else torch.as_tensor(self.prompt_scores, dtype=torch.float32).reshape(-1)
        )
        for name in ("prompt_ids", "source_ids"):
            value = getattr(self, name)
            value = torch.full((n,), -1) if value is None else torch.as_tensor(value).reshape(-1)
            setattr(self, name, value.long())
        self.prompt_kinds = tuple(self.prompt_kinds) or ("subset",) * n
        sizes = {
            "prompt_scores": self.prompt_scores.shape[0],
            "prompt_ids": self.prompt_ids.shape[0],  # type: ignore[union-attr]
            "source_ids": self.source_ids.shape[0],  # type: ignore[union-attr]
            "prompt_kinds": len(self.prompt_kinds),
        }
        if any(v != n for v in sizes.values()):
            raise ValueError(f"PromptResults needs one entry per mask ({n} masks), got {sizes}")

    @classmethod
    def wrap(
        cls,
        results: Results,
        prompt_scores: torch.Tensor | None = None,
        prompt_ids: torch.Tensor | None = None,
        source_ids: torch.Tensor | None = None,
        prompt_kinds: tuple[str, ...] = (),
    ) -> PromptResults:
        """Attach prompt information to an existing Results (same masks, no copy)."""
        return cls(
            **results_fields(results),
            prompt_scores=prompt_scores,
            prompt_ids=prompt_ids,
            source_ids=source_ids,
            prompt_kinds=prompt_kinds,
        )

    def __getitem__(self, index: Index) -> PromptResults:
        """Subset, keeping the prompt columns aligned."""
        idx = normalize_index(index, len(self), torch.device("cpu"))
        base = super().__getitem__(idx)
        assert self.prompt_ids is not None and self.source_ids is not None  # set in __post_init__
        return PromptResults.wrap(
            base,
            self.prompt_scores[idx] if self.prompt_scores is not None else None,
            self.prompt_ids[idx],
            self.source_ids[idx],
            tuple(self.prompt_kinds[i] for i in idx.tolist()),
        )

    def to(self, device: torch.device | str) -> PromptResults:
        return PromptResults.wrap(
            super().to(device),
            self.prompt_scores,
            self.prompt_ids,
            self.source_ids,
            self.prompt_kinds,
        )
