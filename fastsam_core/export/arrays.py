"""Array inputs of the exporters: numpy arrays or torch tensors (any device) -> numpy, torch-free.

The exporters (`rle`, `polygons`, `overlay`, `npz`, `records`) serve both the PyTorch `Results`
and the torch-free runtime's (`fastsam_core.onnxrt`), so they compute in numpy and never import
torch: a tensor can only reach them from a caller that has imported torch already.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_tensor(value: Any) -> bool:
    """True for a torch.Tensor (checked by its module, so torch is never imported here)."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def as_numpy(value: Any) -> np.ndarray:
    """A numpy array (zero-copy for CPU tensors and arrays) of an array, tensor or sequence."""
    if isinstance(value, np.ndarray):
        return value
    if is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)
