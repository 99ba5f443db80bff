"""`Results` as a compressed .npz: compact masks with packed bits, boxes, scores, ids (issue #3).

Keys: boxes (N, 4) float32, scores (N,), class_ids (N,), orig_hw (2,), names (C,) str, path (1,)
str, mask_image_hw (2,), mask_window (4,) (-1s when None), mask_regions (N, 4) int64,
mask_offsets (N + 1,) int64, mask_bits packbits of the flat crop buffer (unpack with
count=mask_offsets[-1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastsam_core.compact_masks import CompactMasks


def write_npz(
    target: Path,
    masks: CompactMasks,
    *,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    orig_hw: tuple[int, int],
    names: Sequence[str],
    path: str | None,
    mask_window: tuple[int, int, int, int] | None,
) -> None:
    """Write one image's rows to `target` (replaces it; the caller checks overwrite)."""
    masks = masks.to("cpu")
    arrays: dict[str, Any] = {
        "boxes": boxes.cpu().numpy(),
        "scores": scores.cpu().numpy(),
        "class_ids": class_ids.cpu().numpy(),
        "orig_hw": np.asarray(orig_hw, dtype=np.int64),
        "names": np.asarray(names, dtype=str),
        "path": np.asarray([path or ""], dtype=str),
        "mask_image_hw": np.asarray(masks.image_hw, dtype=np.int64),
        "mask_window": np.asarray(mask_window or (-1, -1, -1, -1), dtype=np.int64),
        "mask_regions": masks.regions.numpy(),
        "mask_offsets": masks.offsets.numpy(),
        "mask_bits": np.packbits(masks.data.numpy()),
    }
    with open(target, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_npz(path: str | Path) -> dict[str, Any]:
    """The `Results` fields stored by `write_npz` (orig_image is not stored), as keyword args."""
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
        return {
            "masks": masks,
            "boxes": torch.from_numpy(f["boxes"]),
            "scores": torch.from_numpy(f["scores"]),
            "class_ids": torch.from_numpy(f["class_ids"]),
            "orig_hw": tuple(f["orig_hw"].tolist()),
            "names": tuple(str(n) for n in f["names"]),
            "path": str(f["path"][0]) or None,
            "mask_window": None if window[0] < 0 else window,
        }
