"""`Results` as a compressed .npz: compact masks with packed bits, boxes, scores, ids (issue #3).

Keys: boxes (N, 4) float32, scores (N,), class_ids (N,), orig_hw (2,), names (C,) str, path (1,)
str, mask_image_hw (2,), mask_window (4,) (-1s when None), mask_regions (N, 4) int64,
mask_offsets (N + 1,) int64, mask_bits packbits of the flat crop buffer (unpack with
count=mask_offsets[-1]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastsam_core.export.arrays import as_numpy

if TYPE_CHECKING:
    from fastsam_core.compact_masks import CompactMasks
    from fastsam_core.onnxrt.compact import NumpyCompactMasks

# Builds masks from (regions (N, 4) int64, data (M,) bool, offsets (N + 1,) int64, image_hw).
MasksFromArrays = Callable[[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]], Any]


def write_npz(
    target: Path,
    masks: CompactMasks | NumpyCompactMasks,
    *,
    boxes: Any,
    scores: Any,
    class_ids: Any,
    orig_hw: tuple[int, int],
    names: Sequence[str],
    path: str | None,
    mask_window: tuple[int, int, int, int] | None,
) -> None:
    """Write one image's rows to `target` (replaces it; the caller checks overwrite).

    `masks` and the (N, ...) columns may be torch tensors or numpy arrays (same file)."""
    masks = masks.to("cpu")
    arrays: dict[str, Any] = {
        "boxes": as_numpy(boxes),
        "scores": as_numpy(scores),
        "class_ids": as_numpy(class_ids),
        "orig_hw": np.asarray(orig_hw, dtype=np.int64),
        "names": np.asarray(names, dtype=str),
        "path": np.asarray([path or ""], dtype=str),
        "mask_image_hw": np.asarray(masks.image_hw, dtype=np.int64),
        "mask_window": np.asarray(mask_window or (-1, -1, -1, -1), dtype=np.int64),
        "mask_regions": as_numpy(masks.regions),
        "mask_offsets": as_numpy(masks.offsets),
        "mask_bits": np.packbits(as_numpy(masks.data)),
    }
    with open(target, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_npz(path: str | Path, masks_from_arrays: MasksFromArrays | None = None) -> dict[str, Any]:
    """The `Results` fields stored by `write_npz` (orig_image is not stored), as keyword args.

    Args:
        path: the .npz file.
        masks_from_arrays: builds the masks from numpy (regions, data, offsets, image_hw);
            default the PyTorch `CompactMasks` (the torch-free runtime passes its own).
    Returns:
        masks, boxes, scores, class_ids (numpy columns), orig_hw, names, path, mask_window.
    """
    if masks_from_arrays is None:
        masks_from_arrays = _torch_compact_masks
    with np.load(Path(path), allow_pickle=False) as f:
        offsets = f["mask_offsets"].astype(np.int64)
        bits = np.unpackbits(f["mask_bits"], count=int(offsets[-1])).astype(bool)
        masks = masks_from_arrays(
            f["mask_regions"].astype(np.int64), bits, offsets, tuple(f["mask_image_hw"].tolist())
        )
        window = tuple(f["mask_window"].tolist())
        return {
            "masks": masks,
            "boxes": f["boxes"],
            "scores": f["scores"],
            "class_ids": f["class_ids"],
            "orig_hw": tuple(f["orig_hw"].tolist()),
            "names": tuple(str(n) for n in f["names"]),
            "path": str(f["path"][0]) or None,
            "mask_window": None if window[0] < 0 else window,
        }


def _torch_compact_masks(
    regions: np.ndarray, data: np.ndarray, offsets: np.ndarray, image_hw: tuple[int, int]
) -> CompactMasks:
    import torch  # the PyTorch Results only

    from fastsam_core.compact_masks import CompactMasks

    return CompactMasks(
        torch.from_numpy(regions), torch.from_numpy(data), torch.from_numpy(offsets), image_hw
    )
