"""What a checkpoint's pickle may name and call (spec §2.3, §2.5), rebuilt fresh for every load.

`AllowList.resolve(module, name)` is the only way a global enters an unpickled object graph:

* `ultralytics.*` module classes -> inert `UltralyticsStub` subclasses, new classes per load;
* torch.nn classes -> restore-only subclasses (new per load) that refuse to be called;
* constructors and torch rebuild functions -> `SafeCall`s that check their arguments first
  (`_rebuild_tensor_v2` through `storages.rebuild_tensor`: sizes, strides and offsets inside the
  storage, no zero or overlapping strides);
* a few inert values (torch dtypes, `torch.Tensor` / `nn.Parameter` as type markers);
* anything else -> `UnsafeCheckpointError` naming the global.

No shared class or function of the host process is ever handed to the unpickler as something it
may call or BUILD on: the unpickler calls only `SafeCall`s, instantiates only `new_classes`, and
BUILDs only objects created during this load (`unpickle.Unpickler`).
"""

from __future__ import annotations

import codecs
import collections
import pathlib
import types
from collections.abc import Callable
from typing import Any, NoReturn

import torch
from torch import nn

from fastsam_weights_convert.archive import UnsafeCheckpointError
from fastsam_weights_convert.storages import LoadedStorage, StorageType, rebuild_tensor

__all__ = [
    "ULTRALYTICS_MODULE_CLASSES",
    "AllowList",
    "ArgsNamespace",
    "SafeCall",
    "UltralyticsStub",
]


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


class _RestoreOnly(type):
    """Metaclass of the torch.nn classes handed to the unpickler.

    A pickle restores a module with NEWOBJ (`cls.__new__`, no code) + BUILD (`__setstate__`);
    calling the class would run its `__init__` with arguments from the file (`Linear(10**6,
    10**6)` initialising terabytes), so calling raises instead.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnsafeCheckpointError(
            f"calls {cls.__module__}.{cls.__qualname__}(...): a checkpoint may restore modules "
            "but not construct them (that would run __init__ with arguments from the file)"
        )


class SafeCall:
    """A callable the pickle may REDUCE: `check` validates the arguments before `fn` runs."""

    def __init__(self, qualname: str, fn: Callable[..., Any], fresh: bool = False) -> None:
        self.qualname = qualname
        self.fn = fn
        self.fresh = fresh  # the result is a new object the pickle may BUILD on

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<allowed {self.qualname}>"


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

# torch.nn classes a YOLO checkpoint may hold; restoring one only sets its __dict__.
_TORCH_NN_CLASSES: dict[str, tuple[str, ...]] = {
    "torch.nn.modules.conv": ("Conv1d", "Conv2d", "ConvTranspose2d"),
    "torch.nn.modules.batchnorm": ("BatchNorm1d", "BatchNorm2d"),
    "torch.nn.modules.activation": (
        "SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Hardsigmoid", "GELU", "Sigmoid",
        "Tanh", "Softmax", "Mish", "MultiheadAttention",
    ),
    "torch.nn.modules.pooling": (
        "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    ),
    "torch.nn.modules.upsampling": ("Upsample",),
    "torch.nn.modules.container": ("Sequential", "ModuleList", "ModuleDict", "ParameterList"),
    "torch.nn.modules.linear": ("Identity", "Linear"),
    "torch.nn.modules.dropout": ("Dropout", "Dropout2d"),
    "torch.nn.modules.normalization": ("LayerNorm", "GroupNorm"),
    "torch.nn.modules.flatten": ("Flatten",),
    "torch.nn.modules.sparse": ("Embedding",),
}  # fmt: skip

# Methods that 8.0.x pickles as REDUCE(getattr, (cls, name)),
# e.g. `Segment.detect = Detect.forward`.
_GETATTR_METHODS = frozenset(
    {"forward", "forward_fuse", "forward_split", "_forward", "forward_head"}
)
_MAX_PATH_CHARS = 4096


def _refuse(message: str) -> NoReturn:
    raise UnsafeCheckpointError(message)


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return getattr(obj, "upstream", f"{obj.__module__}.{obj.__qualname__}")
    return type(obj).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _placeholder_method(qualname: str) -> Any:
    def placeholder(*args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(f"{qualname} comes from a checkpoint and is an inert placeholder")

    placeholder.__qualname__ = qualname
    return placeholder


def _latin1_encode(obj: Any = None, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol 2 uses it (bytes as latin1 text); other codecs refused."""
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(obj, str):
        _refuse(
            f"checkpoint calls _codecs.encode(<{type(obj).__name__}>, {encoding!r}, {errors!r}); "
            "only the latin1 encoding protocol-2 pickles use for bytes is allowed"
        )
    return codecs.encode(obj, "latin1")


def _container(kind: type) -> Callable[..., Any]:
    """OrderedDict / set / frozenset from no argument or one list (items arrive by SETITEMS)."""

    def build(*args: Any) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and type(args[0]) in (list, tuple):
            items = args[0]
            if kind is collections.OrderedDict and not all(
                type(i) in (list, tuple) and len(i) == 2 for i in items
            ):
                _refuse("checkpoint builds an OrderedDict from something other than pairs")
            return kind(items)
        _refuse(f"checkpoint calls {kind.__name__} with {len(args)} arguments of unexpected types")

    return build


def _pure_path(kind: type) -> Callable[..., Any]:
    def build(*parts: Any) -> Any:
        if not all(isinstance(p, str) for p in parts) or sum(map(len, parts)) > _MAX_PATH_CHARS:
            _refuse("checkpoint builds a path from something other than a few short strings")
        return kind(*parts)

    return build


def _size(*args: Any) -> torch.Size:
    if len(args) != 1 or type(args[0]) not in (list, tuple) or not all(map(_is_int, args[0])):
        _refuse("checkpoint builds a torch.Size from something other than a tuple of ints")
    return torch.Size(args[0])


def _device(*args: Any) -> torch.device:
    if not 1 <= len(args) <= 2 or not isinstance(args[0], str) or len(args[0]) > 32:
        _refuse("checkpoint builds a torch.device from something other than a short name")
    return torch.device("cpu")  # everything is loaded on the CPU


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> Any:
    if not isinstance(data, torch.Tensor) or type(data) is not torch.Tensor:
        _refuse(f"checkpoint rebuilds a Parameter from a {type(data).__name__}, not a tensor")
    if hooks or state:
        _refuse("checkpoint parameters carry backward hooks or extra state; refusing them")
    return nn.Parameter(data, requires_grad=bool(requires_grad))


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufcSU" or dtype.fields:
        _refuse(f"checkpoint builds a numpy scalar of dtype {_describe(dtype)}; only numbers")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        _refuse("checkpoint builds a numpy scalar whose bytes do not match its dtype")
    return np.frombuffer(data, dtype=dtype)[0].copy()


def _numpy_dtype(name: Any, align: Any = False, copy: Any = True) -> Any:
    import numpy as np

    if not isinstance(name, str) or len(name) > 8:
        _refuse("checkpoint builds a numpy dtype from something other than a short code")
    return np.dtype(name, bool(align), True)  # always a new object: BUILD may then set it


class AllowList:
    """Per-load resolver of pickle globals; every class and wrapper it returns is new."""

    def __init__(self, storage_bytes: int = 0) -> None:
        self._cache: dict[tuple[str, str], Any] = {}
        self.new_classes: set[type] = set()  # classes the pickle may instantiate with NEWOBJ
        self.view_budget = 4 * storage_bytes + (1 << 20)  # bytes all tensor views may claim

    def resolve(self, module: str, name: str) -> Any:
        """The object substituted for global `module.name`; raises if it is not allowed."""
        key = (module, name)
        if key not in self._cache:
            self._cache[key] = self._resolve(module, name)
        return self._cache[key]

    def _resolve(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        table = self._callables()
        if key := table.get((module, name)):
            return SafeCall(qualname, *key) if isinstance(key, tuple) else SafeCall(qualname, key)
        if name in _TORCH_NN_CLASSES.get(module, ()):
            base = getattr(nn, name)
            attrs = {"__module__": module, "__qualname__": name}
            return self._new_class(_RestoreOnly(name, (base,), attrs))
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "torch" and name.endswith("Storage") and name in StorageType.NAMES:
            return StorageType(name)
        if (module, name) in (("torch", "Tensor"), ("torch._tensor", "Tensor")):
            return torch.Tensor  # only as the type argument of _rebuild_from_type_v2
        if (module, name) == ("torch.nn.parameter", "Parameter"):
            return nn.Parameter
        if (module, name) in _NAMESPACE_GLOBALS:
            return SafeCall(qualname, self._namespace, fresh=True)
        if module.startswith("ultralytics.") and name in ULTRALYTICS_MODULE_CLASSES:
            return self._new_class(type(name, (UltralyticsStub,), {"upstream": qualname}))
        if (module, name) == ("numpy", "ndarray"):
            import numpy as np

            return np.ndarray  # only as the class argument of _reconstruct
        raise UnsafeCheckpointError(
            f"references the global {qualname}, which is not on the allow-list of "
            "weights_convert.allow_list; refusing to load it (nothing was executed). If this is a "
            "genuine ultralytics checkpoint, report the global so it can be reviewed and added"
        )

    def _new_class(self, cls: type) -> type:
        self.new_classes.add(cls)
        return cls

    def _namespace(self, *args: Any) -> ArgsNamespace:
        if args:
            _refuse("checkpoint calls IterableSimpleNamespace with arguments")
        return ArgsNamespace()

    def _getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        """The only `getattr` a checkpoint may call: (stub class, known method) -> placeholder."""
        if (
            obj in self.new_classes
            and issubclass(obj, UltralyticsStub)
            and name in _GETATTR_METHODS
        ):
            return _placeholder_method(f"{obj.upstream}.{name}")
        name_text = repr(name)[:40] if isinstance(name, str) else f"<{type(name).__name__}>"
        _refuse(
            f"checkpoint calls getattr({_describe(obj)}, {name_text}); only getattr(<ultralytics "
            f"module class>, one of {sorted(_GETATTR_METHODS)}) is allowed"
        )

    def _rebuild_tensor(self, *args: Any) -> torch.Tensor:
        tensor = rebuild_tensor(*args)
        self.view_budget -= tensor.numel() * tensor.element_size()
        if self.view_budget < 0:
            _refuse(
                "checkpoint tensors claim far more bytes than the file's storages hold (views "
                "sharing storage); refusing a memory bomb"
            )
        return tensor

    def _rebuild_from_type(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        if not (isinstance(func, SafeCall) and func.fn == self._rebuild_tensor):
            _refuse(f"checkpoint calls _rebuild_from_type_v2 with {_describe(func)}")
        if new_type not in (torch.Tensor, nn.Parameter) or type(args) is not tuple or state:
            _refuse("checkpoint rebuilds a tensor subclass or tensor state; refusing it")
        tensor = func(*args)
        return nn.Parameter(tensor, requires_grad=False) if new_type is nn.Parameter else tensor

    def _numpy_reconstruct(self, cls: Any, shape: Any, code: Any) -> Any:
        import numpy as np

        if cls is not np.ndarray or shape != (0,) or not isinstance(code, bytes):
            _refuse("checkpoint calls numpy's _reconstruct with unexpected arguments")
        return np.ndarray((0,), dtype=np.uint8)

    def _callables(self) -> dict[tuple[str, str], Any]:
        """(module, name) -> function, or (function, fresh) when BUILD may follow."""
        rebuild = self._rebuild_tensor
        table: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): (_container(collections.OrderedDict), True),
            ("builtins", "set"): _container(set),
            ("__builtin__", "set"): _container(set),  # protocol-2 spelling (spec §2.5)
            ("builtins", "frozenset"): _container(frozenset),
            ("__builtin__", "frozenset"): _container(frozenset),
            ("_codecs", "encode"): _latin1_encode,
            ("builtins", "getattr"): self._getattr,
            ("__builtin__", "getattr"): self._getattr,
            # Paths in training arguments; a pure path touches no file.
            ("pathlib", "PosixPath"): _pure_path(pathlib.PurePosixPath),
            ("pathlib", "WindowsPath"): _pure_path(pathlib.PureWindowsPath),
            ("pathlib", "PurePosixPath"): _pure_path(pathlib.PurePosixPath),
            ("pathlib", "PureWindowsPath"): _pure_path(pathlib.PureWindowsPath),
            ("torch._utils", "_rebuild_tensor_v2"): rebuild,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type,
            ("torch", "Size"): _size,
            ("torch", "device"): _device,
        }
        for multiarray in ("numpy.core.multiarray", "numpy._core.multiarray"):
            table[(multiarray, "scalar")] = _numpy_scalar
            table[(multiarray, "_reconstruct")] = (self._numpy_reconstruct, True)
        table[("numpy", "dtype")] = (_numpy_dtype, True)
        return table


# Keep the storage types importable from here for callers that inspect resolved globals.
__all__ += ["LoadedStorage", "StorageType"]
