"""Allow-list loader for ultralytics checkpoints (spec §2.3, §2.5); never calls torch.load.

`load_checkpoint(path)` opens the zip itself (`archive.TorchArchive`: TorchScript and anything
unexpected refused), then runs `data.pkl` through `Unpickler`, Python's pure-Python unpickler
with the opcodes that can reach code guarded:

* GLOBAL / STACK_GLOBAL: only what `allow_list.AllowList` (new per load) resolves;
* REDUCE: only `SafeCall`s, which check their arguments before building anything;
* NEWOBJ: only the per-load stub / restore-only classes, with no arguments;
* BUILD: only on objects created during this load, never with dunder attribute names, so a
  file cannot rewrite a class or function of the host process (`PurePosixPath._str`,
  `_rebuild_tensor_v2.__defaults__`);
* SETITEM(S) / APPEND(S) / ADDITEMS: only on plain containers;
* INST, OBJ, EXT*, PERSID (protocol 0/1 and extension-registry forms): refused;
* BINPERSID: storages, read from the archive with their sizes checked (`storages`).

ultralytics is never imported; nothing from the file is ever executed.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from fastsam_weights_convert.allow_list import (
    AllowList,
    ArgsNamespace,
    SafeCall,
    UltralyticsStub,
)
from fastsam_weights_convert.archive import TorchArchive, UnsafeCheckpointError
from fastsam_weights_convert.checkpoint import checkpoint_source
from fastsam_weights_convert.storages import LoadedStorage, StorageType, element_size

__all__ = [
    "ArgsNamespace",
    "UltralyticsStub",
    "Unpickler",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "load_pickled",
    "loads",
    "resolve_global",
]

_CONTAINERS = (dict, collections.OrderedDict, list, set)


def _refuse(message: str) -> NoReturn:
    raise UnsafeCheckpointError(message)


def _type_name(obj: Any) -> str:
    if isinstance(obj, type):
        return getattr(obj, "upstream", f"{obj.__module__}.{obj.__qualname__}")
    if isinstance(obj, SafeCall):
        return obj.qualname
    return type(obj).__name__


def _check_state_keys(state: Any) -> None:
    dicts = [state] if isinstance(state, dict) else []
    if isinstance(state, tuple) and len(state) == 2:
        dicts = [d for d in state if isinstance(d, dict)]
    for d in dicts:
        bad = [k for k in d if not isinstance(k, str) or (k.startswith("__") and k.endswith("__"))]
        if bad:
            shown = repr(bad[0])[:40] if isinstance(bad[0], str) else type(bad[0]).__name__
            _refuse(f"checkpoint sets attribute {shown} through BUILD; refusing it")


class Unpickler(pickle._Unpickler):
    """Pure-Python unpickler whose code-reaching opcodes go through the allow-list."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    # Set by pickle._Unpickler.load() and its opcodes; typeshed does not declare them.
    stack: list[Any]
    metastack: list[list[Any]]
    append: Any

    def __init__(self, file: io.BytesIO, archive: TorchArchive | None = None) -> None:
        super().__init__(file, encoding="utf-8")
        self.archive = archive
        self.allow = AllowList(archive.storage_bytes if archive else 0)
        self.fresh: dict[int, Any] = {}  # id -> object created in this load (kept alive)
        self.storages: dict[str, LoadedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            _refuse("checkpoint names a global with non-string parts")
        return self.allow.resolve(module[:200], name[:200])

    def persistent_load(self, pid: Any) -> LoadedStorage:
        """('storage', StorageType, key, location, numel) -> the storage record, checked."""
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            _refuse("checkpoint has a persistent id that is not a torch storage reference")
        _, kind, key, location, numel = pid
        if not isinstance(kind, StorageType) or not isinstance(key, str) or len(key) > 20:
            _refuse("checkpoint storage reference has an unexpected type or key")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            _refuse("checkpoint storage reference has an invalid element count")
        if not isinstance(location, str) or len(location) > 32:
            _refuse("checkpoint storage reference has an invalid location")
        if key in self.storages:
            cached = self.storages[key]
            if cached.dtype != kind.dtype and kind.name != "UntypedStorage":
                _refuse(f"checkpoint storage {key} is referenced with two element types")
            return cached
        if self.archive is None:
            _refuse("checkpoint references a storage but no archive was given")
        data = self.archive.read_storage(key, numel * element_size(kind.dtype))
        self.storages[key] = LoadedStorage(data, kind.dtype)
        return self.storages[key]

    def _fresh(self, obj: Any) -> Any:
        self.fresh[id(obj)] = obj
        return obj

    # -- guarded opcodes --------------------------------------------------------------------

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(func, SafeCall):
            _refuse(f"checkpoint calls {_type_name(func)}, which is not an allowed callable")
        if type(args) is not tuple:
            _refuse(f"checkpoint calls {func.qualname} with non-tuple arguments")
        result = func(*args)
        self.stack[-1] = self._fresh(result) if func.fresh else result

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _new(self, cls: Any, args: Any, kwargs: Any = None) -> None:
        if not isinstance(cls, type) or cls not in self.allow.new_classes:
            _refuse(f"checkpoint instantiates {_type_name(cls)}, which it may not")
        if args != () or kwargs:
            _refuse(f"checkpoint instantiates {_type_name(cls)} with arguments")
        # mypy resolves `cls.__new__` on a `type` value to the metaclass's type.__new__
        self.append(self._fresh(cls.__new__(cls)))  # type: ignore[call-overload]

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new(cls, args)

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new(cls, args, kwargs)

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _refused_opcode(self) -> NoReturn:
        _refuse(
            "checkpoint uses a pickle opcode (INST, OBJ, EXT, PERSID) that torch.save never "
            "writes and that could construct arbitrary objects"
        )

    for _op in (pickle.INST, pickle.OBJ, pickle.EXT1, pickle.EXT2, pickle.EXT4, pickle.PERSID):
        dispatch[_op[0]] = _refused_opcode
    del _op


def _install_guards() -> None:
    """BUILD and the container opcodes need the stack layout, so they are defined here."""

    def load_build(self: Unpickler) -> None:
        state = self.stack[-1]
        inst = self.stack[-2]
        if id(inst) not in self.fresh:
            _refuse(
                f"checkpoint uses BUILD to set attributes of {_type_name(inst)}, an object it did "
                "not create (this could rewrite a class or function of the running program)"
            )
        _check_state_keys(state)
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    def guarded(opcode: bytes, target: str) -> None:
        # typeshed types these handlers as taking the C pickle.Unpickler; they take ours
        original: Callable[[Any], None] = pickle._Unpickler.dispatch[opcode[0]]

        def load(self: Unpickler) -> None:
            if target == "top":  # SETITEM / APPEND: container below the pushed value(s)
                items = 2 if opcode == pickle.SETITEM else 1
                obj = self.stack[-1 - items] if len(self.stack) > items else None
            else:  # SETITEMS / APPENDS / ADDITEMS: container below the mark
                obj = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
            if type(obj) not in _CONTAINERS:
                _refuse(f"checkpoint adds items to a {_type_name(obj)}, not a plain container")
            original(self)

        Unpickler.dispatch[opcode[0]] = load

    Unpickler.dispatch[pickle.BUILD[0]] = load_build
    guarded(pickle.SETITEM, "top")
    guarded(pickle.APPEND, "top")
    guarded(pickle.SETITEMS, "mark")
    guarded(pickle.APPENDS, "mark")
    guarded(pickle.ADDITEMS, "mark")


_install_guards()


def resolve_global(module: str, name: str) -> Any:
    """What a fresh allow-list substitutes for global `module.name`; raises if forbidden."""
    return AllowList().resolve(module, name)


def loads(data: bytes, archive: TorchArchive | None = None) -> Any:
    """Unpickle `data` through the allow-list (storages read from `archive`)."""
    return Unpickler(io.BytesIO(data), archive).load()


def _check_checkpoint(ckpt: Any, path: Path) -> None:
    """An ultralytics checkpoint: a pickled model or a 'model.N.*' state dict."""
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
        UnsafeCheckpointError: TorchScript, forged records, a global outside the allow-list, an
            allowed one used in a way a checkpoint never does, memory-bomb views; nothing ran.
        ValueError: empty / not a zip (legacy torch format, raw pickle, truncated, safetensors),
            a corrupt pickle or storage, content without a YOLO model.
    """
    ckpt = load_pickled(path)
    _check_checkpoint(ckpt, Path(path))
    return ckpt


def load_pickled(path: str | Path) -> Any:
    """Any `torch.save` file through the same archive checks and allow-list unpickler, without
    the ultralytics content check: plain containers, numbers, strings and tensors (e.g. backbone
    weights, optimizer states). The product's only way to read a pickled file.

    Raises:
        FileNotFoundError, ValueError, UnsafeCheckpointError: as `load_checkpoint`.
    """
    path = Path(path)
    with TorchArchive(path) as archive:
        data = archive.pickle_bytes()
        try:
            ckpt = loads(data, archive)
        except UnsafeCheckpointError as err:
            text = str(err)
            raise UnsafeCheckpointError(
                text if text.startswith(str(path)) else f"{path}: refused: {text}"
            ) from None
        except ValueError as err:  # storage records that cannot be read
            if str(err).startswith(str(path)):
                raise
            raise _corrupt(path, err) from None
        except (pickle.UnpicklingError, EOFError, IndexError, KeyError, TypeError) as err:
            raise _corrupt(path, err) from None
        except (AttributeError, RuntimeError, MemoryError, RecursionError) as err:
            raise _corrupt(path, err) from None
    return ckpt


def _corrupt(path: Path, err: BaseException) -> ValueError:
    return ValueError(
        f"{path}: the checkpoint's pickle is malformed ({type(err).__name__}: {str(err)[:160]}); "
        "the file is corrupt or was not written by torch.save"
    )
