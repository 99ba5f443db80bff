"""Allow-list unpickler for ultralytics checkpoints (spec §2.3, §2.5).

Pass this module as `pickle_module` to `torch.load`: torch subclasses our `Unpickler`, resolves
`torch.*Storage` names itself and sends every other global through `Unpickler.find_class`, which
returns only harmless objects:

* containers and torch rebuild functions / nn classes -> the real objects (rebuilding only sets
  attributes, it runs no pickled code);
* every `ultralytics.*` module class -> an inert `nn.Module` stub whose `forward` raises;
* `IterableSimpleNamespace` -> a `types.SimpleNamespace` subclass;
* `getattr` -> a guard that only answers (stub class, method name) with a placeholder;
* anything else -> `UnsafeCheckpointError` naming the global and the file.

torch.nn classes come back as subclasses that refuse to be called: a pickle restores modules
without calling them, while a call would run `__init__` with sizes chosen by the file.

ultralytics is never imported; nothing from the file is ever executed.
"""

from __future__ import annotations

import codecs
import collections
import pathlib
import pickle
import sys
import types
from pathlib import Path
from typing import IO, Any, NoReturn

import torch
from fastsam_weights_convert.archive import check_archive
from fastsam_weights_convert.checkpoint import checkpoint_source
from torch import nn

__all__ = [
    "ArgsNamespace",
    "UltralyticsStub",
    "Unpickler",
    "UnsafeCheckpointError",
    "load",
    "load_checkpoint",
]


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The checkpoint references a global outside the allow-list; nothing was executed."""


# ---------------------------------------------------------------------------------------------
# Stand-ins for ultralytics objects.


class UltralyticsStub(nn.Module):
    """Inert stand-in for a pickled ultralytics `nn.Module`; holds attributes, never runs.

    `upstream` names the class it replaces ("ultralytics.nn.modules.conv.Conv").
    """

    upstream: str = "ultralytics.<unknown>"

    def forward(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(
            f"{self.upstream} was loaded as an inert stub; convert the checkpoint and use "
            "fastsam_core.YoloV8Seg instead"
        )


class ArgsNamespace(types.SimpleNamespace):
    """Stand-in for ultralytics' `IterableSimpleNamespace` (training arguments)."""


def _placeholder_method(qualname: str) -> Any:
    def placeholder(*args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(f"{qualname} comes from a checkpoint and is an inert placeholder")

    placeholder.__qualname__ = qualname
    return placeholder


# Methods that 8.0.x pickles as REDUCE(getattr, (cls, name)), e.g. `Segment.detect = Detect.forward`.
_GETATTR_METHODS = frozenset(
    {"forward", "forward_fuse", "forward_split", "_forward", "forward_head"}
)


def _guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """The only `getattr` a checkpoint may call: (stub class, known method name) -> placeholder."""
    if isinstance(obj, type) and issubclass(obj, UltralyticsStub) and name in _GETATTR_METHODS:
        return _placeholder_method(f"{obj.upstream}.{name}")
    raise UnsafeCheckpointError(
        f"checkpoint calls getattr({_describe(obj)}, {name!r}); only getattr(<ultralytics "
        f"module class>, one of {sorted(_GETATTR_METHODS)}) is allowed"
    )


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return getattr(obj, "upstream", f"{obj.__module__}.{obj.__qualname__}")
    return type(obj).__name__


# ---------------------------------------------------------------------------------------------
# The allow-list.

# Class names of ultralytics `nn.Module`s (blocks, heads, whole models) of 8.0.x through 8.4.x.
# Any of them becomes an inert stub, whatever submodule path the file uses.
ULTRALYTICS_MODULE_CLASSES = frozenset(
    {
        # nn.tasks
        "BaseModel", "DetectionModel", "SegmentationModel", "PoseModel", "ClassificationModel",
        "OBBModel", "RTDETRDetectionModel", "WorldModel", "YOLOEModel", "YOLOESegModel",
        "SemanticSegmentationModel", "DepthModel", "Ensemble",
        # nn.modules.conv
        "Conv", "Conv2", "LightConv", "DWConv", "DWConvTranspose2d", "ConvTranspose", "Focus",
        "GhostConv", "ChannelAttention", "SpatialAttention", "CBAM", "Concat", "RepConv", "Index",
        # nn.modules.block
        "DFL", "Proto", "HGStem", "HGBlock", "SPP", "SPPF", "C1", "C2", "C3", "C2f", "C2fAttn",
        "ImagePoolingAttn", "ContrastiveHead", "BNContrastiveHead", "C3x", "C3TR", "C3Ghost",
        "GhostBottleneck", "Bottleneck", "BottleneckCSP", "ResNetBlock", "ResNetLayer", "RepC3",
        "RepNCSPELAN4", "ELAN1", "ADown", "AConv", "SPPELAN", "CBFuse", "CBLinear", "C3k2", "C3k",
        "C2fPSA", "C2PSA", "RepVGGDW", "CIB", "C2fCIB", "Attention", "PSA", "PSABlock", "SCDown",
        "TorchVision", "A2C2f", "AAttn", "ABlock", "MaxSigmoidAttnBlock", "RepBottleneck",
        "RepCSP", "Residual", "SAVPE", "SwiGLUFFN", "Proto26", "RealNVP",
        # nn.modules.head
        "Detect", "Segment", "Segment26", "OBB", "OBB26", "Pose", "Pose26", "Depth", "Classify",
        "WorldDetect", "LRPCHead", "YOLOEDetect", "YOLOESegment", "YOLOESegment26",
        "RTDETRDecoder", "v10Detect", "SemanticSegment",
        # nn.modules.transformer / utils
        "TransformerEncoderLayer", "TransformerLayer", "TransformerBlock", "MLPBlock", "MLP",
        "LayerNorm2d", "AIFI", "MSDeformAttn", "DeformableTransformerDecoderLayer",
        "DeformableTransformerDecoder",
    }
)  # fmt: skip

_NAMESPACE_GLOBALS = {
    ("ultralytics.yolo.utils", "IterableSimpleNamespace"),
    ("ultralytics.utils", "IterableSimpleNamespace"),
}

# torch.nn classes a YOLO checkpoint may hold; rebuilding one only restores its __dict__.
_TORCH_NN_CLASSES: dict[str, tuple[str, ...]] = {
    "torch.nn.modules.conv": ("Conv1d", "Conv2d", "ConvTranspose2d"),
    "torch.nn.modules.batchnorm": ("BatchNorm1d", "BatchNorm2d"),
    "torch.nn.modules.activation": (
        "SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Hardsigmoid", "GELU", "Sigmoid",
        "Tanh", "Softmax", "Mish", "MultiheadAttention",
    ),
    "torch.nn.modules.pooling": ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"),
    "torch.nn.modules.upsampling": ("Upsample",),
    "torch.nn.modules.container": ("Sequential", "ModuleList", "ModuleDict", "ParameterList"),
    "torch.nn.modules.linear": ("Identity", "Linear"),
    "torch.nn.modules.dropout": ("Dropout", "Dropout2d"),
    "torch.nn.modules.normalization": ("LayerNorm", "GroupNorm"),
    "torch.nn.modules.flatten": ("Flatten",),
    "torch.nn.modules.sparse": ("Embedding",),
}  # fmt: skip

_TORCH_FUNCTIONS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): nn.Parameter,
}


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol 2 uses it (bytes as latin1 text); other codecs refused."""
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(obj, str):
        raise UnsafeCheckpointError(
            f"checkpoint calls _codecs.encode(<{type(obj).__name__}>, {encoding!r}, {errors!r}); "
            "only the latin1 encoding protocol-2 pickles use for bytes is allowed"
        )
    return codecs.encode(obj, "latin1")


_PLAIN_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,  # protocol-2 pickles spell builtins this way (spec §2.5)
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    # Protocol 2 pickles `bytes` (e.g. inside numpy scalars) as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "getattr"): _guarded_getattr,
    ("__builtin__", "getattr"): _guarded_getattr,
    # Paths in training arguments; constructing one touches no file.
    ("pathlib", "PosixPath"): pathlib.PurePosixPath,
    ("pathlib", "WindowsPath"): pathlib.PureWindowsPath,
    ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
    ("pathlib", "PureWindowsPath"): pathlib.PureWindowsPath,
}

_stub_cache: dict[str, type[UltralyticsStub]] = {}


def _stub_class(module: str, name: str) -> type[UltralyticsStub]:
    qualname = f"{module}.{name}"
    if qualname not in _stub_cache:
        _stub_cache[qualname] = type(name, (UltralyticsStub,), {"upstream": qualname})
    return _stub_cache[qualname]


def _torch_dtype(module: str, name: str) -> torch.dtype | None:
    value = getattr(torch, name, None) if module == "torch" else None
    return value if isinstance(value, torch.dtype) else None


def _numpy_global(module: str, name: str) -> Any:
    """numpy scalars / arrays that CUR training metadata may hold (rebuilding runs no code)."""
    allowed = {
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }  # fmt: skip
    if (module, name) not in allowed and not (module == "numpy.dtypes" and name.endswith("DType")):
        return None
    import numpy as np

    if module == "numpy":
        return getattr(np, name)
    if module == "numpy.dtypes":
        return getattr(np.dtypes, name, None)
    multiarray = getattr(np, "_core", None) or np.core
    return getattr(multiarray.multiarray, name, None)


def resolve_global(module: str, name: str) -> Any:
    """The object the allow-list substitutes for global `module.name`; raises if forbidden."""
    if (module, name) in _PLAIN_GLOBALS:
        return _PLAIN_GLOBALS[(module, name)]
    if (module, name) in _TORCH_FUNCTIONS:
        return _TORCH_FUNCTIONS[(module, name)]
    if name in _TORCH_NN_CLASSES.get(module, ()):
        return getattr(nn, name)
    dtype = _torch_dtype(module, name)
    if dtype is not None:
        return dtype
    if (module, name) in _NAMESPACE_GLOBALS:
        return ArgsNamespace
    if module.startswith("ultralytics.") and name in ULTRALYTICS_MODULE_CLASSES:
        return _stub_class(module, name)
    numpy_obj = _numpy_global(module, name)
    if numpy_obj is not None:
        return numpy_obj
    raise UnsafeCheckpointError(
        f"references the global {module}.{name}, which is not on the allow-list of "
        "weights_convert.unpickle; refusing to load it (nothing was executed). If this is a "
        "genuine ultralytics checkpoint, report the global so it can be reviewed and added"
    )


class _RestoreOnly(type):
    """Metaclass of the torch.nn classes handed to the unpickler.

    A pickle restores a module with NEWOBJ (`cls.__new__`, no code) + BUILD (`__setstate__`);
    calling the class (REDUCE) would run its `__init__` with arguments from the file, e.g.
    `Linear(10**6, 10**6)` initialising terabytes, so calling raises instead.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnsafeCheckpointError(
            f"calls {cls.__module__}.{cls.__qualname__}(...): a checkpoint may restore modules "
            "but not construct them (that would run __init__ with arguments from the file)"
        )


_restore_only_cache: dict[type, type] = {}


def _restore_only(cls: type) -> type:
    """A subclass of torch class `cls` that unpickles normally but cannot be called."""
    if cls not in _restore_only_cache:
        attrs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        _restore_only_cache[cls] = _RestoreOnly(cls.__name__, (cls,), attrs)
    return _restore_only_cache[cls]


class Unpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` consults the allow-list instead of importing."""

    def find_class(self, module: str, name: str) -> Any:
        found = resolve_global(module, name)
        if isinstance(found, type) and issubclass(found, nn.Module):
            # Our stubs' __init__ is nn.Module's (allocates nothing); torch's must not run.
            return found if issubclass(found, UltralyticsStub) else _restore_only(found)
        return found


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """`pickle.load` through the allow-list (torch calls this for legacy, non-zip files)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """`pickle.loads` through the allow-list."""
    import io

    return load(io.BytesIO(data), **kwargs)


# ---------------------------------------------------------------------------------------------
# File-level checks.


def _check_checkpoint(ckpt: Any, path: Path) -> None:
    """An ultralytics checkpoint: a pickled model or a 'model.N.*' state dict (`checkpoint_source`)."""
    try:
        checkpoint_source(ckpt)
    except ValueError as err:
        raise ValueError(f"{path} {err}") from None


def load_checkpoint(path: str | Path) -> Any:
    """Load an ultralytics `.pt` checkpoint through the allow-list, without ultralytics.

    Args:
        path: a file written by `torch.save` holding an ultralytics checkpoint: the usual dict
            (model in 'model' or 'ema'), a bare pickled model, or a 'model.N.*' state dict.
    Returns:
        What the file holds; ultralytics modules inside it are inert `UltralyticsStub`s whose
        tensors can be read but which never run (`checkpoint.checkpoint_source` finds the model).
    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle references a global outside the allow-list, or calls
            an allowed one in a way a checkpoint never does; nothing was executed.
        ValueError: empty / not a zip (legacy torch format, raw pickle, truncated, safetensors)
            / forged zip member names / zip bomb / corrupt pickle or storages, a non-checkpoint
            zip, or content without a YOLO model (other state dicts, other objects).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; expected a PyTorch .pt checkpoint")
    check_archive(path)
    try:
        ckpt = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=sys.modules[__name__]
        )
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f"{path} {err}") from None
    except Exception as err:  # truncated members, CRC errors, malformed pickle streams
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint ({type(err).__name__}: {err}); the "
            "file is truncated or corrupt, download it again"
        ) from err
    _check_checkpoint(ckpt, path)
    return ckpt
