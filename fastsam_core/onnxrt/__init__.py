"""Torch-free runtime for exported FastSAM graphs (`fastsam export`): numpy, pillow, onnxruntime.

Every module in this package imports only the standard library, numpy, PIL, onnxruntime (lazily)
and torch-free fastsam_core modules; a test runs it with `import torch` made to fail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it (loaded on first use, as `fastsam_core`'s names)
_EXPORTS = {
    "GraphInfo": "fastsam_core.onnxrt.graph",
    "ImageError": "fastsam_core.onnxrt.results",
    "NumpyCompactMasks": "fastsam_core.onnxrt.compact",
    "NumpyPromptResults": "fastsam_core.onnxrt.results",
    "NumpyPrompts": "fastsam_core.onnxrt.prompt_inputs",
    "NumpyResults": "fastsam_core.onnxrt.results",
    "OnnxNetwork": "fastsam_core.onnxrt.session",
    "OnnxPredictor": "fastsam_core.onnxrt.predictor",
    "make_prompts": "fastsam_core.onnxrt.prompt_inputs",
    "prompt": "fastsam_core.onnxrt.prompts",
}

__all__ = [
    "GraphInfo",
    "ImageError",
    "NumpyCompactMasks",
    "NumpyPromptResults",
    "NumpyPrompts",
    "NumpyResults",
    "OnnxNetwork",
    "OnnxPredictor",
    "make_prompts",
    "prompt",
]


def __getattr__(name: str) -> Any:
    """Import the module defining public `name` on first access, then cache it as a global."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastsam_core.onnxrt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from fastsam_core.onnxrt.compact import NumpyCompactMasks
    from fastsam_core.onnxrt.graph import GraphInfo
    from fastsam_core.onnxrt.predictor import OnnxPredictor
    from fastsam_core.onnxrt.prompt_inputs import NumpyPrompts, make_prompts
    from fastsam_core.onnxrt.prompts import prompt
    from fastsam_core.onnxrt.results import ImageError, NumpyPromptResults, NumpyResults
    from fastsam_core.onnxrt.session import OnnxNetwork
