"""weights_convert/unpickle.py: the allow-list loader refuses hostile and broken files."""

from __future__ import annotations

import pathlib
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from fastsam_weights_convert.unpickle import (
    ArgsNamespace,
    UltralyticsStub,
    UnsafeCheckpointError,
    load_checkpoint,
    resolve_global,
)
from fastsam_weights_convert.allow_list import AllowList, SafeCall
from torch import nn

# --- hand-written pickles -----------------------------------------------------------------------


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def reduce_payload(module: str, name: str, arg: str) -> bytes:
    """Protocol-2 pickle of `{"model": module.name(arg)}`: calls the global when unpickled."""
    call = _global(module, name) + _unicode(arg) + b"\x85R"  # TUPLE1, REDUCE
    return b"\x80\x02}" + _unicode("model") + call + b"s."  # EMPTY_DICT ... SETITEM, STOP


def getattr_payload(owner_module: str, owner: str, attribute: str) -> bytes:
    """`{"model": getattr(owner_module.owner, attribute)}` through `__builtin__.getattr`."""
    call = (_global("__builtin__", "getattr") + _global(owner_module, owner) + _unicode(attribute)
            + b"\x86R")  # TUPLE2, REDUCE  # fmt: skip
    return b"\x80\x02}" + _unicode("model") + call + b"s."


def write_torch_zip(path: Path, data_pkl: bytes) -> Path:
    """A zip laid out like torch.save's (`archive/data.pkl`, `archive/version`)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")
    return path


class _Marker:
    """Pickles as REDUCE(posix.system, ("touch <marker>",)) via torch.save itself."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


# --- hostile globals ----------------------------------------------------------------------------

HOSTILE = [
    ("os", "system"),
    ("posix", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("__builtin__", "eval"),
    ("builtins", "__import__"),
    ("torch", "load"),
    ("torch.hub", "load"),
    ("ultralytics.utils.checks", "check_requirements"),  # an ultralytics *function*, not a class
    ("ultralytics.nn.tasks", "torch_safe_load"),
]


@pytest.mark.parametrize(("module", "name"), HOSTILE)
def test_hostile_global_is_refused_and_never_runs(tmp_path, module, name):
    marker = tmp_path / "pwned"
    path = write_torch_zip(tmp_path / "evil.pt", reduce_payload(module, name, f"touch {marker}"))
    with pytest.raises(UnsafeCheckpointError, match=rf"{module}\.{name}") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI reports it as a one-line error
    assert not marker.exists()


def test_hostile_payload_written_by_torch_save_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": nn.Conv2d(1, 1, 1), "train_args": {"x": _Marker(f"touch {marker}")}}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system"):
        load_checkpoint(path)
    assert not marker.exists()
    # Control: the same file really is dangerous with an ordinary unpickler.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("owner_module", "owner", "attribute"),
    [
        ("collections", "OrderedDict", "fromkeys"),
        ("torch", "Size", "__subclasses__"),
        ("ultralytics.nn.modules.head", "Detect", "__init__"),
        ("ultralytics.nn.modules.head", "Detect", "__subclasses__"),
    ],
)
def test_getattr_is_guarded(tmp_path, owner_module, owner, attribute):
    path = write_torch_zip(tmp_path / "evil.pt", getattr_payload(owner_module, owner, attribute))
    with pytest.raises(UnsafeCheckpointError, match=rf"getattr\(.*'{attribute}'\)"):
        load_checkpoint(path)


def test_getattr_of_stub_forward_gives_inert_placeholder():
    allow = AllowList()
    method = allow.resolve("__builtin__", "getattr")(
        allow.resolve("ultralytics.nn.modules.head", "Detect"), "forward"
    )
    with pytest.raises(RuntimeError, match="inert placeholder"):
        method(None)


def test_getattr_of_a_stub_from_another_load_is_refused():
    stub = AllowList().resolve("ultralytics.nn.modules.head", "Detect")
    with pytest.raises(UnsafeCheckpointError, match="getattr"):
        AllowList().resolve("__builtin__", "getattr")(stub, "forward")


# --- what the allow-list does return ------------------------------------------------------------


def test_ultralytics_classes_become_inert_stubs():
    allow = AllowList()
    stub = allow.resolve("ultralytics.nn.modules.block", "C2f")
    assert issubclass(stub, UltralyticsStub) and stub.upstream == "ultralytics.nn.modules.block.C2f"
    assert allow.resolve("ultralytics.nn.modules.block", "C2f") is stub  # cached per name...
    assert AllowList().resolve("ultralytics.nn.modules.block", "C2f") is not stub  # ...per load
    with pytest.raises(RuntimeError, match="inert stub"):
        stub()(torch.zeros(1))


@pytest.mark.parametrize("module", ["ultralytics.yolo.utils", "ultralytics.utils"])
def test_namespace_args(module):
    made = resolve_global(module, "IterableSimpleNamespace")()
    assert type(made) is ArgsNamespace


@pytest.mark.parametrize(
    ("module", "name", "args", "expected"),
    [
        ("collections", "OrderedDict", (), OrderedDict()),
        ("__builtin__", "set", ([1, 2],), {1, 2}),
        ("builtins", "set", (), set()),
        ("torch", "Size", ((2, 3),), torch.Size([2, 3])),
    ],
)
def test_allowed_constructors_are_checked_wrappers(module, name, args, expected):
    """The pickle never gets the real class or function: a wrapper that checks arguments."""
    found = resolve_global(module, name)
    assert isinstance(found, SafeCall) and found is not expected
    made = found(*args)
    assert made == expected and type(made) is type(expected)


@pytest.mark.parametrize(("module", "name"), [("collections", "OrderedDict"), ("torch", "Size")])
def test_allowed_constructors_refuse_odd_arguments(module, name):
    with pytest.raises(UnsafeCheckpointError):
        resolve_global(module, name)(object(), 1, 2)


@pytest.mark.parametrize(
    ("module", "name", "base"),
    [
        ("torch.nn.modules.conv", "Conv2d", nn.Conv2d),
        ("torch.nn.modules.upsampling", "Upsample", nn.Upsample),
    ],
)
def test_torch_module_classes_are_per_load_restore_only_subclasses(module, name, base):
    cls = resolve_global(module, name)
    assert issubclass(cls, base) and cls is not base
    assert resolve_global(module, name) is not cls


def test_torch_class_under_wrong_module_is_refused():
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.conv\.Linear"):
        resolve_global("torch.nn.modules.conv", "Linear")


def test_checkpoint_of_allowed_objects_loads(tmp_path):
    path = tmp_path / "ok.pt"
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU(), nn.Upsample(scale_factor=2)
    )
    metadata = {
        "imgsz": 1024,
        "loss": np.float64(0.25),
        "data": pathlib.PurePosixPath("/d/sa.yaml"),
    }
    torch.save({"model": model.half(), "train_args": metadata, "version": "x"}, path)
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt["model"], nn.Sequential)
    assert ckpt["model"][0].weight.dtype == torch.float16
    assert torch.equal(ckpt["model"][0].weight, model[0].weight)
    assert ckpt["train_args"]["loss"] == 0.25


# --- broken or wrong files ----------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_checkpoint(tmp_path / "e.pt")


def test_random_bytes(tmp_path):
    path = tmp_path / "r.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a zip archive"):
        load_checkpoint(path)


def test_raw_pickle_is_not_a_zip(tmp_path):
    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps({"model": 1}, protocol=2))
    with pytest.raises(ValueError, match="not a zip archive"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_checkpoint(tmp_path, keep):
    good = tmp_path / "good.pt"
    torch.save({"model": nn.Conv2d(16, 16, 3)}, good)
    data = good.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="truncated|corrupt|not a zip"):
        load_checkpoint(bad)


def test_corrupt_pickle_inside_zip(tmp_path):
    path = write_torch_zip(tmp_path / "c.pt", b"\x80\x02garbage that is not a pickle")
    with pytest.raises(ValueError, match="pickle is malformed.*corrupt"):
        load_checkpoint(path)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "z.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"zip archive but not a PyTorch checkpoint.*readme\.txt"):
        load_checkpoint(path)


@pytest.mark.parametrize("nested", [False, True])
def test_plain_state_dict(tmp_path, nested):
    path = tmp_path / "sd.pt"
    sd = nn.Sequential(nn.Conv2d(3, 4, 3)).state_dict()
    torch.save({"state_dict": sd} if nested else sd, path)
    with pytest.raises(ValueError, match=r"plain state dict \(2 tensors.*not an official"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([1, 2, 3], "holds a list, expected the dict"),
        ({"epoch": 3, "model": None, "ema": None}, r"neither 'ema' nor 'model' holds"),
        ({"weights": 1}, r"neither 'ema' nor 'model'"),
    ],
)
def test_not_an_ultralytics_checkpoint(tmp_path, obj, match):
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


# --- more hostile pickles -----------------------------------------------------------------------

MORE_HOSTILE = [
    ("pickle", "loads"),
    ("numpy", "load"),
    ("numpy.testing._private.utils", "runstring"),
    ("torch.serialization", "load"),
    ("torch.jit", "load"),
    ("torch._utils", "_rebuild_tensor"),  # not the v2 rebuild torch.save writes
    ("operator", "attrgetter"),
    ("functools", "partial"),
    ("importlib", "import_module"),
    ("shutil", "rmtree"),
    ("webbrowser", "open"),
]


@pytest.mark.parametrize(("module", "name"), MORE_HOSTILE)
def test_more_hostile_globals_are_refused(tmp_path, module, name):
    path = write_torch_zip(tmp_path / "evil.pt", reduce_payload(module, name, str(tmp_path)))
    with pytest.raises(UnsafeCheckpointError, match=rf"global {module}\.{name}, which is not on"):
        load_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt"]  # nothing created/removed


def test_getattr_chain_cannot_reach_function_internals(tmp_path):
    """getattr(getattr(Detect, 'forward'), '__globals__'): the placeholder is not a class."""
    inner = (_global("__builtin__", "getattr") + _global("ultralytics.nn.modules.head", "Detect")
             + _unicode("forward") + b"\x86R")  # fmt: skip
    outer = _global("__builtin__", "getattr") + inner + _unicode("__globals__") + b"\x86R"
    path = write_torch_zip(tmp_path / "evil.pt", b"\x80\x02}" + _unicode("model") + outer + b"s.")
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(function, '__globals__'\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("encoding", ["rot13", "zlib_codec", "utf-8", "base64"])
def test_codecs_encode_only_latin1(tmp_path, encoding):
    call = (_global("_codecs", "encode") + _unicode("payload") + _unicode(encoding)
            + b"\x86R")  # fmt: skip
    path = write_torch_zip(tmp_path / "evil.pt", b"\x80\x02}" + _unicode("x") + call + b"s.")
    with pytest.raises(UnsafeCheckpointError, match=rf"_codecs\.encode\(<str>, '{encoding}'"):
        load_checkpoint(path)


def test_codecs_latin1_is_what_protocol_2_bytes_need():
    assert resolve_global("_codecs", "encode")("\xff\x00", "latin1") == b"\xff\x00"


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


@pytest.mark.parametrize(
    ("module", "name"),
    [("torch.nn.modules.linear", "Linear"), ("torch.nn.modules.conv", "Conv2d")],
)
def test_calling_a_torch_module_class_is_refused(tmp_path, module, name):
    """REDUCE(Linear, (10**6, 10**6)) would initialise 4 TB; restoring needs no call."""
    call = _global(module, name) + _int(1_000_000) + _int(1_000_000) + b"\x86R"
    path = write_torch_zip(tmp_path / "bomb.pt", b"\x80\x02}" + _unicode("model") + call + b"s.")
    with pytest.raises(UnsafeCheckpointError, match=rf"calls {module}\.{name}, which is not"):
        load_checkpoint(path)


def test_rebuild_from_type_cannot_call_module_classes(tmp_path):
    """torch._tensor._rebuild_from_type_v2(func, type, args, state) calls func(*args)."""
    args = b"(" + _int(1_000_000) + _int(1_000_000) + b"t"  # MARK ... TUPLE
    call = (_global("torch._tensor", "_rebuild_from_type_v2") + b"("
            + _global("torch.nn.modules.linear", "Linear") + _global("torch", "Tensor") + args
            + b"}tR")  # fmt: skip
    path = write_torch_zip(tmp_path / "bomb.pt", b"\x80\x02}" + _unicode("model") + call + b"s.")
    with pytest.raises(
        UnsafeCheckpointError, match=r"_rebuild_from_type_v2 with torch\.nn\.modules\.linear\.Linear"
    ):
        load_checkpoint(path)


def test_restored_torch_modules_are_still_real_modules(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"model": nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))}, path)
    model = load_checkpoint(path)["model"]
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[1], nn.BatchNorm2d)
    assert type(model[0]).__qualname__ == "Conv2d"
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 4, 6, 6)  # unpickling ran nothing; we may


class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: _Storage, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def write_raw_checkpoint(path: Path, obj, records: dict[str, bytes]) -> Path:
    """A torch.save-style zip whose pickle declares storages as we like."""
    import io

    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buf.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, data in records.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize(
    ("numel", "size", "stride", "offset"),
    [
        (10**12, (10**12,), (1,), 0),  # storage declared 4 TB, record holds 16 bytes
        (4, (10**12,), (1,), 0),  # view far past the storage
        (4, (2, 2), (10**9, 1), 0),  # stride past the storage
        (4, (4,), (1,), 10**9),  # offset past the storage
        (4, (-1,), (1,), 0),  # negative size
    ],
)
def test_rebuild_tensor_misuse_is_a_clean_error(tmp_path, numel, size, stride, offset):
    tensor = _Tensor(_Storage("0", numel), size, stride, offset)
    path = write_raw_checkpoint(tmp_path / "t.pt", {"model": tensor}, {"0": b"\0" * 16})
    with pytest.raises(UnsafeCheckpointError, match=r"t\.pt: .*(claims|past its storage|non-negative)"):
        load_checkpoint(path)


def test_storage_record_missing(tmp_path):
    path = write_raw_checkpoint(
        tmp_path / "t.pt", {"model": _Tensor(_Storage("7", 4), (4,), (1,))}, {}
    )
    with pytest.raises(UnsafeCheckpointError, match="references storage '7', not in the zip"):
        load_checkpoint(path)


# --- benign but unknown, or older module paths --------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("ultralytics.nn.modules.block", "C4fNext"),  # a block newer than this allow-list
        ("ultralytics.utils.metrics", "SegmentMetrics"),  # not an nn.Module
        ("torch.nn.modules.conv", "Conv3d"),
        ("datetime", "datetime"),
        ("argparse", "Namespace"),
    ],
)
def test_unknown_benign_global_names_the_global(tmp_path, module, name):
    data = b"\x80\x02}" + _unicode("model") + _global(module, name) + b")\x81s."  # NEWOBJ
    path = write_torch_zip(tmp_path / "new.pt", data)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"references the global {module}.{name}, which is not on the allow-list" in message
    assert str(path) in message and "report the global" in message
    assert "\n" not in message  # one line for the CLI


@pytest.mark.parametrize(
    "module",
    ["ultralytics.nn.modules", "ultralytics.nn.modules.block", "ultralytics.nn.modules.conv"],
)
def test_ultralytics_module_paths_of_all_versions(module):
    """8.0.0-8.0.x (early) kept all blocks in ultralytics/nn/modules.py; later split."""
    assert resolve_global(module, "C2f").upstream == f"{module}.C2f"


# --- broken files: say what they are ------------------------------------------------------------


def test_legacy_torch_format_is_named(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"model": nn.Conv2d(1, 1, 1)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"old\.pt is not a zip archive.*legacy \(torch < 1\.6"):
        load_checkpoint(path)


def test_raw_pickle_is_named(tmp_path):
    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps({"model": 1}, protocol=4))
    with pytest.raises(ValueError, match=r"raw pickle \(pickle\.dump\)"):
        load_checkpoint(path)


def test_truncated_zip_is_named(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": nn.Conv2d(16, 16, 3)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(
        ValueError, match=r"cut\.pt is not a zip archive.*its end is missing.*trunc"
    ):
        load_checkpoint(cut)


def test_safetensors_with_pt_suffix_is_named(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.pt"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match=r"looks like a safetensors file"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "member", ["../../evil/data.pkl", "/abs/data.pkl", "archive/../../x", "C:\\evil\\data.pkl"]
)
def test_zip_with_path_traversal_names(tmp_path, member):
    path = tmp_path / "trav.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}.")
        archive.writestr(member, b"x")
    with pytest.raises(ValueError, match=r"absolute or parent-directory paths"):
        load_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trav.pt"]
    assert not (tmp_path.parent / "evil").exists()


def test_zip_bomb_member_is_refused(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}.")
        archive.writestr("archive/data/0", b"\0" * (80 << 20))  # 80 MB -> ~80 KB
    with pytest.raises(UnsafeCheckpointError, match=r"compressed members.*zip bomb"):
        load_checkpoint(path)


def test_file_name_with_colons_is_fine(tmp_path):
    """torch.save names the archive folder after the file: timestamps put ':' in member names."""
    path = tmp_path / "last-2023-06-20T12:00:00.pt"
    torch.save({"model": nn.Conv2d(1, 1, 1)}, path)
    with zipfile.ZipFile(path) as archive:
        assert any(":" in name for name in archive.namelist())
    assert isinstance(load_checkpoint(path)["model"], nn.Conv2d)
