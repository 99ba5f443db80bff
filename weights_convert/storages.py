"""Tensor storages of a torch.save archive and the checked views built on them (spec §2.1).

A pickled tensor is `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: a view into one
storage record `<dir>/data/<key>`. Every number in that call comes from the file, so
`rebuild_tensor` checks it: sizes and strides are small non-negative ints, no dimension longer
than 1 has stride 0, dimensions do not overlap, and the whole view lies inside the storage. A
40 KB file can therefore never claim gigabytes through a view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import torch

from fastsam_weights_convert.archive import UnsafeCheckpointError

__all__ = ["LoadedStorage", "StorageType", "check_view", "element_size", "rebuild_tensor"]

_MAX_DIMS = 8


@dataclass(frozen=True)
class StorageType:
    """Stand-in for the pickled `torch.FloatStorage`-style global: just the element dtype."""

    name: str

    NAMES: ClassVar[dict[str, torch.dtype]] = {
        "DoubleStorage": torch.float64,
        "FloatStorage": torch.float32,
        "HalfStorage": torch.float16,
        "BFloat16Storage": torch.bfloat16,
        "LongStorage": torch.int64,
        "IntStorage": torch.int32,
        "ShortStorage": torch.int16,
        "CharStorage": torch.int8,
        "ByteStorage": torch.uint8,
        "BoolStorage": torch.bool,
        "UntypedStorage": torch.uint8,
    }

    @property
    def dtype(self) -> torch.dtype:
        return self.NAMES[self.name]


@dataclass(frozen=True)
class LoadedStorage:
    """One storage record read from the archive: raw bytes and the element type."""

    data: torch.UntypedStorage
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        return self.data.nbytes() // element_size(self.dtype)


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _refuse(message: str) -> NoReturn:
    raise UnsafeCheckpointError(message)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, list, torch.Size) or len(value) > _MAX_DIMS:
        _refuse(f"checkpoint tensor {what} is not a tuple of at most {_MAX_DIMS} ints")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        _refuse(f"checkpoint tensor {what} holds something other than non-negative ints")
    return tuple(value)


def check_view(numel: int, offset: Any, size: Any, stride: Any) -> tuple[int, ...]:
    """Validate a view of a storage of `numel` elements; returns the checked size.

    Raises:
        UnsafeCheckpointError: bad types, zero or overlapping strides on dimensions longer than
            1, or a view reaching past the storage.
    """
    shape = _int_tuple(size, "size")
    steps = _int_tuple(stride, "stride")
    if len(shape) != len(steps):
        _refuse(f"checkpoint tensor has {len(shape)} sizes but {len(steps)} strides")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        _refuse("checkpoint tensor storage offset is not a non-negative int")
    if math.prod(shape) == 0:
        if offset > numel:
            _refuse(f"checkpoint tensor offset {offset} is past its storage ({numel} elements)")
        return shape
    long_dims = sorted((s, n) for n, s in zip(shape, steps) if n > 1)
    if any(s == 0 for s, _ in long_dims):
        _refuse(
            f"checkpoint tensor of size {shape} has stride 0 on a dimension longer than 1: one "
            "stored value repeated; refusing a memory bomb"
        )
    reach = 1  # elements spanned by the dimensions with smaller strides
    for s, n in long_dims:
        if s < reach:
            _refuse(f"checkpoint tensor of size {shape} has overlapping strides {steps}")
        reach = s * (n - 1) + reach
    last = offset + sum((n - 1) * s for n, s in zip(shape, steps))
    if last >= numel:
        _refuse(
            f"checkpoint tensor of size {shape} with stride {steps} at offset {offset} reaches "
            f"element {last}, past its storage of {numel} elements"
        )
    return shape


def rebuild_tensor(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2` with every argument checked first (a view, no copy)."""
    if not isinstance(storage, LoadedStorage):
        _refuse(f"checkpoint rebuilds a tensor from a {type(storage).__name__}, not a storage")
    if backward_hooks or metadata:
        _refuse("checkpoint tensors carry backward hooks or metadata; refusing them")
    check_view(storage.numel, offset, size, stride)
    tensor = torch.empty((0,), dtype=storage.dtype)
    tensor.set_(storage.data, offset, tuple(size), tuple(stride))
    tensor.requires_grad_(bool(requires_grad) and tensor.is_floating_point())
    return tensor
