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
    method = resolve_global("__builtin__", "getattr")(
        resolve_global("ultralytics.nn.modules.head", "Detect"), "forward"
    )
    with pytest.raises(RuntimeError, match="inert placeholder"):
        method(None)


# --- what the allow-list does return ------------------------------------------------------------


def test_ultralytics_classes_become_inert_stubs():
    stub = resolve_global("ultralytics.nn.modules.block", "C2f")
    assert issubclass(stub, UltralyticsStub) and stub.upstream == "ultralytics.nn.modules.block.C2f"
    assert resolve_global("ultralytics.nn.modules.block", "C2f") is stub  # cached per name
    with pytest.raises(RuntimeError, match="inert stub"):
        stub()(torch.zeros(1))


@pytest.mark.parametrize("module", ["ultralytics.yolo.utils", "ultralytics.utils"])
def test_namespace_args(module):
    assert resolve_global(module, "IterableSimpleNamespace") is ArgsNamespace


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        ("collections", "OrderedDict", OrderedDict),
        ("__builtin__", "set", set),
        ("builtins", "set", set),
        ("torch", "Size", torch.Size),
        ("torch._utils", "_rebuild_tensor_v2", torch._utils._rebuild_tensor_v2),
        ("torch.nn.modules.conv", "Conv2d", nn.Conv2d),
        ("torch.nn.modules.upsampling", "Upsample", nn.Upsample),
        ("torch", "float16", torch.float16),
    ],
)
def test_allowed_globals_are_the_real_objects(module, name, expected):
    assert resolve_global(module, name) is expected


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
    with pytest.raises(ValueError, match="is not a file"):
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
    with pytest.raises(ValueError, match="truncated or corrupt"):
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
