"""fastsam-core: a clean, modular PyTorch reimplementation of FastSAM.

The public names below load on first use (PEP 562 module `__getattr__`): `import fastsam_core`
imports neither torch nor any optional package, so `fastsam --help` and tools that only read
`__version__` start at once; `fastsam_core.Predictor` imports the predictor (and torch) then.
`fastsam_core.OnnxPredictor` runs exported `.onnx` graphs without torch (numpy, Pillow,
onnxruntime; `fastsam_core.onnxrt`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CompactMasks": "fastsam_core.compact_masks",
    "FASTSAM_S": "fastsam_core.config",
    "FASTSAM_X": "fastsam_core.config",
    "SCALES": "fastsam_core.config",
    "YoloSegConfig": "fastsam_core.config",
    "yolov8_seg_config": "fastsam_core.config",
    "MODEL_REGISTRY": "fastsam_core.model",
    "SegOutput": "fastsam_core.model",
    "YoloV8Seg": "fastsam_core.model",
    "build_model": "fastsam_core.model",
    "fastsam_s": "fastsam_core.model",
    "fastsam_x": "fastsam_core.model",
    "fuse_conv_bn": "fastsam_core.model",
    "OnnxPredictor": "fastsam_core.onnxrt.predictor",
    "Predictor": "fastsam_core.predictor",
    "Results": "fastsam_core.results",
    "load_config": "fastsam_core.weights",
    "load_model": "fastsam_core.weights",
}

# literal (static checkers read it); tests/e2e/test_startup.py checks it equals _EXPORTS's keys
__all__ = [
    "FASTSAM_S",
    "FASTSAM_X",
    "MODEL_REGISTRY",
    "SCALES",
    "CompactMasks",
    "OnnxPredictor",
    "Predictor",
    "Results",
    "SegOutput",
    "YoloSegConfig",
    "YoloV8Seg",
    "build_model",
    "fastsam_s",
    "fastsam_x",
    "fuse_conv_bn",
    "load_config",
    "load_model",
    "yolov8_seg_config",
]


def __getattr__(name: str) -> Any:
    """Import the module defining public `name` on first access, then cache it as a global."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastsam_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static checkers and IDEs see the eager imports
    from fastsam_core.compact_masks import CompactMasks
    from fastsam_core.config import FASTSAM_S, FASTSAM_X, SCALES, YoloSegConfig, yolov8_seg_config
    from fastsam_core.model import (
        MODEL_REGISTRY,
        SegOutput,
        YoloV8Seg,
        build_model,
        fastsam_s,
        fastsam_x,
        fuse_conv_bn,
    )
    from fastsam_core.onnxrt.predictor import OnnxPredictor
    from fastsam_core.predictor import Predictor
    from fastsam_core.results import Results
    from fastsam_core.weights import load_config, load_model
