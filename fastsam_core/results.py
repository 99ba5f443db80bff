"""Per-image results of a FastSAM prediction and their exports (issue #3 part 4, spec §3.9)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fastsam_core.compact_masks import CompactMasks, Index, _normalize_index

ResizeMode = Literal["nearest", "bilinear"]


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
        idx = _normalize_index(index, len(self), self.masks.device)
        cpu_idx = idx.to(self.boxes.device)
        return Results(
            masks=self.masks[idx],
            boxes=self.boxes[cpu_idx],
            scores=self.scores[cpu_idx],
            class_ids=self.class_ids[cpu_idx],
            orig_hw=self.orig_hw,
            names=self.names,
            path=self.path,
            orig_image=self.orig_image,
            mask_window=self.mask_window,
        )

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

    def to(self, device: torch.device | str) -> Results:
        """Copy masks and tensors to `device` (orig_image stays where it is)."""
        return Results(
            masks=self.masks.to(device),
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            class_ids=self.class_ids.to(device),
            orig_hw=self.orig_hw,
            names=self.names,
            path=self.path,
            orig_image=self.orig_image,
            mask_window=self.mask_window,
        )

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
            self._original[mode] = self.masks.resized(self.orig_hw, self.mask_window, mode)
        return self._original[mode]

    # ------------------------------------------------------------------ conversions
    def to_rle(self) -> list[dict[str, Any]]:
        """COCO compressed RLE per mask, in the original frame: {"size": [H0, W0], "counts": str}."""
        from fastsam_core.export.rle import encode_masks

        return encode_masks(self.masks_original())

    def to_polygons(self) -> list[list[np.ndarray]]:
        """Outer contours per mask in original pixels: for each mask a list of (K, 2) float xy."""
        from fastsam_core.export.polygons import compact_mask_polygons

        return compact_mask_polygons(self.masks_original())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready document: image info and one COCO-style record per mask."""
        masks = self.masks_original()
        rles = self.to_rle()
        areas = masks.areas().tolist()
        boxes, scores = self.boxes.tolist(), self.scores.tolist()
        class_ids = self.class_ids.tolist()
        annotations = []
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            class_id = int(class_ids[i])
            annotations.append(
                {
                    "id": i,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "bbox_xyxy": [x0, y0, x1, y1],
                    "score": float(scores[i]),
                    "area": int(areas[i]),
                    "category_id": class_id,
                    "category_name": (
                        self.names[class_id] if 0 <= class_id < len(self.names) else str(class_id)
                    ),
                    "segmentation": rles[i],
                }
            )
        return {
            "image": {"path": self.path, "height": self.orig_hw[0], "width": self.orig_hw[1]},
            "names": list(self.names),
            "annotations": annotations,
        }

    # ------------------------------------------------------------------ files
    def save_json(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write `to_json()` to `path`; refuses to replace an existing file unless overwrite."""
        target = _writable(path, overwrite)
        target.write_text(json.dumps(self.to_json()))
        return target

    def save_overlay(
        self,
        path: str | Path,
        overwrite: bool = False,
        alpha: float = 0.6,
        contours: bool = True,
        seed: int = 0,
    ) -> Path:
        """Render masks over `orig_image` (see `export.overlay.render_overlay`) into a PNG."""
        from fastsam_core.export.overlay import render_overlay, save_png

        if self.orig_image is None:
            raise ValueError(
                "save_overlay needs orig_image; build Results with orig_image=(H0, W0, 3) uint8"
            )
        target = _writable(path, overwrite)
        image = render_overlay(
            self.orig_image, self.masks_original(), alpha=alpha, contours=contours, seed=seed
        )
        save_png(image, target, overwrite=True)
        return target

    def save_npz(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write boxes, scores, class ids and the compact masks (bits packed with np.packbits).

        Keys: boxes (N, 4) float32, scores (N,), class_ids (N,), orig_hw (2,), names (C,) str,
        path (1,) str, mask_image_hw (2,), mask_window (4,) (-1s when None),
        mask_regions (N, 4) int64, mask_offsets (N + 1,) int64, mask_bits packbits of the flat
        crop buffer (unpack with count=mask_offsets[-1]). `Results.load_npz` reads it back.
        """
        target = _writable(path, overwrite)
        masks = self.masks.to("cpu")
        arrays: dict[str, Any] = {
            "boxes": self.boxes.cpu().numpy(),
            "scores": self.scores.cpu().numpy(),
            "class_ids": self.class_ids.cpu().numpy(),
            "orig_hw": np.asarray(self.orig_hw, dtype=np.int64),
            "names": np.asarray(self.names, dtype=str),
            "path": np.asarray([self.path or ""], dtype=str),
            "mask_image_hw": np.asarray(masks.image_hw, dtype=np.int64),
            "mask_window": np.asarray(self.mask_window or (-1, -1, -1, -1), dtype=np.int64),
            "mask_regions": masks.regions.numpy(),
            "mask_offsets": masks.offsets.numpy(),
            "mask_bits": np.packbits(masks.data.numpy()),
        }
        with open(target, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return target

    @classmethod
    def load_npz(cls, path: str | Path) -> Results:
        """Read a file written by `save_npz` (orig_image is not stored)."""
        with np.load(Path(path), allow_pickle=False) as f:
            offsets = torch.from_numpy(f["mask_offsets"].astype(np.int64))
            bits = np.unpackbits(f["mask_bits"], count=int(offsets[-1])).astype(bool)
            masks = CompactMasks(
                torch.from_numpy(f["mask_regions"].astype(np.int64)),
                torch.from_numpy(bits),
                offsets,
                tuple(f["mask_image_hw"].tolist()),
            )
            window = tuple(f["mask_window"].tolist())
            return cls(
                masks=masks,
                boxes=torch.from_numpy(f["boxes"]),
                scores=torch.from_numpy(f["scores"]),
                class_ids=torch.from_numpy(f["class_ids"]),
                orig_hw=tuple(f["orig_hw"].tolist()),  # type: ignore[arg-type]
                names=tuple(str(n) for n in f["names"]),
                path=str(f["path"][0]) or None,
                mask_window=None if window[0] < 0 else window,  # type: ignore[arg-type]
            )


def _writable(path: str | Path, overwrite: bool) -> Path:
    """Resolve an output path, creating its folder; refuse to replace a file unless overwrite."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True (CLI: --force) to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


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
