"""Row selection shared by `CompactMasks`, `Results` and `PromptResults`: any index -> positions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch

# What `masks[index]` / `results[index]` accept.
Index: TypeAlias = int | slice | torch.Tensor | Sequence[int] | Sequence[bool] | np.ndarray


def normalize_index(index: Index, n: int, device: torch.device) -> torch.Tensor:
    """Any supported index -> (K,) int64 positions in [0, n)."""
    if isinstance(index, bool):
        raise TypeError("a bare bool is not a valid mask index; use an int or a bool tensor")
    if isinstance(index, (int, np.integer)):
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"mask index {i} out of range for {n} masks")
        return torch.tensor([i % n], dtype=torch.int64, device=device)
    if isinstance(index, slice):
        return torch.arange(n, device=device)[index]
    if isinstance(index, list | tuple) and len(index) == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    idx = torch.as_tensor(np.asarray(index) if isinstance(index, list | tuple) else index)
    idx = idx.to(device)
    if idx.dtype == torch.bool:
        if idx.shape != (n,):
            raise IndexError(f"bool index must have shape ({n},), got {tuple(idx.shape)}")
        return idx.nonzero().flatten()
    if idx.is_floating_point() or idx.ndim > 1:
        raise IndexError(f"index must be 1-D integer or bool, got {idx.dtype} {tuple(idx.shape)}")
    idx = idx.long().reshape(-1)
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"mask index out of range for {n} masks: {idx.tolist()}")
    return idx % max(n, 1)
