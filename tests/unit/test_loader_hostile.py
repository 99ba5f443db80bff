"""Hostile checkpoints (issue #20): refused or bounded, nothing runs, the process stays intact.

Every file is built by code, most from the committed genuine checkpoint (tests/support/
hostile_files.py). Each case asserts the outcome, that the message is one line naming the file,
and (`_intact`) that the host process is unchanged: pathlib, torch's rebuild functions and nn
classes untouched, no new module imported, a genuine checkpoint still converts.
"""

from __future__ import annotations

import os
import pathlib
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from fastsam_weights_convert import convert_checkpoint
from fastsam_weights_convert.unpickle import UnsafeCheckpointError, load_checkpoint
from torch import nn

from tests.support import hostile_files as hf

_REBUILD_DEFAULTS = torch._utils._rebuild_tensor_v2.__defaults__
_CONV_FORWARD = nn.Conv2d.forward



@pytest.fixture(autouse=True, scope="module")
def _warm_up():
    """Convert once first: torch imports some of its own modules lazily on first use, which the
    'nothing was imported' checks must not mistake for the file importing them."""
    convert_checkpoint(hf.GENUINE)


def _intact() -> None:
    """The process is as before: no poisoned globals, and a genuine checkpoint converts."""
    assert "_str" not in vars(pathlib.PurePosixPath)
    assert str(pathlib.Path("/a") / "b") == "/a/b"
    assert torch._utils._rebuild_tensor_v2.__defaults__ == _REBUILD_DEFAULTS
    assert nn.Conv2d.forward is _CONV_FORWARD
    assert convert_checkpoint(hf.GENUINE)[1].reg_max == 26


def _refused(path: Path, match: str, error: type[Exception] = UnsafeCheckpointError) -> str:
    modules = set(sys.modules)
    with pytest.raises(error, match=match) as info:
        convert_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and len(message) < 600
    new = {m for m in set(sys.modules) - modules if not m.startswith("encodings.")}
    assert not new, f"loading imported {sorted(new)}"  # zipfile may load a text codec
    _intact()
    return message


# --- TorchScript --------------------------------------------------------------------------------

_SCRIPT = """
import sys, torch
from typing import Tuple

class Payload(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path = state[0] + " <- code from the file ran"
        self.training = state[1]

torch.jit.save(torch.jit.script(Payload("marker")), sys.argv[1])
"""


def test_torchscript_archive_is_refused_before_its_code_runs(tmp_path):
    script = tmp_path / "make_payload.py"
    script.write_text(_SCRIPT)
    path = tmp_path / "FastSAM-s.pt"
    subprocess.run([sys.executable, str(script), str(path)], check=True, capture_output=True)
    # The control: torch.load hands this file to torch.jit.load, which runs __setstate__.
    ran = torch.load(path, weights_only=False)
    assert ran.path.endswith("code from the file ran")
    message = _refused(path, "TorchScript archive")
    assert "constants.pkl" in message or "code/" in message


# --- BUILD on allow-listed globals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name", "attribute"),
    [
        ("pathlib", "PurePosixPath", "_str"),  # every Path would point at the attacker's path
        ("pathlib", "PosixPath", "_str"),
        ("torch._utils", "_rebuild_tensor_v2", "__defaults__"),  # every later torch.load fails
        ("torch._utils", "_rebuild_parameter", "__code__"),
        ("torch.nn.modules.conv", "Conv2d", "forward"),
        ("ultralytics.nn.modules.conv", "Conv", "forward"),
        ("ultralytics.utils", "IterableSimpleNamespace", "x"),
        ("collections", "OrderedDict", "fromkeys"),
        ("builtins", "getattr", "x"),
        ("_codecs", "encode", "x"),
        ("torch", "Size", "x"),
        ("torch", "float32", "is_floating_point"),
        ("torch", "Tensor", "add"),
        ("torch", "FloatStorage", "dtype"),
        ("numpy", "ndarray", "x"),
    ],
)
def test_build_cannot_rewrite_an_allowed_global(tmp_path, module, name, attribute):
    pkl = hf.build_on_global(module, name, attribute, hf.text("/tmp/attacker"))
    _refused(hf.with_pickle(tmp_path / "poison.pt", pkl), "BUILD")


@pytest.mark.parametrize("attribute", ["__class__", "__dict__", "__reduce_ex__"])
def test_build_refuses_dunder_attributes_even_on_fresh_objects(tmp_path, attribute):
    pkl = hf.build_on_model([(hf.text(attribute), hf.text("x"))])
    _refused(hf.with_pickle(tmp_path / "dunder.pt", pkl), f"attribute '{attribute}'")


def test_build_on_the_checkpoint_dict_is_refused(tmp_path):
    pkl = b"\x80\x02" + hf.genuine_body() + b"N" + hf.dict_of((hf.text("x"), b"N")) + b"\x86b."
    _refused(hf.with_pickle(tmp_path / "dict.pt", pkl), "BUILD .*dict")


def test_items_cannot_be_added_to_a_global(tmp_path):
    poison = hf.global_("torch.nn.modules.container", "Sequential") + hf.text("k") + b"Ns0"
    pkl = b"\x80\x02" + poison + hf.genuine_body() + b"."
    _refused(hf.with_pickle(tmp_path / "setitem.pt", pkl), "adds items")


# --- memory and CPU bombs -------------------------------------------------------------------------


def _max_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize(
    ("size", "stride", "match"),
    [
        ((100_000, 100_000), (0, 0), "stride 0"),  # 4 bytes claiming 40 GB
        ((100_000, 100_000), (0, 1), "stride 0"),
        ((1000, 1000), (1, 1), "overlapping strides"),
    ],
)
def test_views_cannot_claim_more_than_the_storage(tmp_path, size, stride, match):
    base = torch.zeros(100)
    view = torch.empty(0).set_(base.untyped_storage(), 0, size, stride)
    path = tmp_path / "views.pt"
    torch.save({"model.0.conv.weight": view}, path)
    before = _max_rss_kb()
    _refused(path, match)
    assert _max_rss_kb() - before < 200_000


def test_many_views_of_one_storage_exhaust_the_view_budget(tmp_path):
    base = torch.zeros(1 << 18)  # 1 MB, viewed 64 times
    path = tmp_path / "shared.pt"
    torch.save({f"model.{i}.conv.weight": base.view(512, 512) for i in range(64)}, path)
    _refused(path, "claim far more bytes")


def test_split_zip_bomb_is_refused(tmp_path):
    """Many members each under any per-member limit (8 MB of zeros -> ~8 KB each)."""
    prefix, records = hf.read_records()
    bomb = {**records, **{f"data/{1000 + i}": bytes(8 << 20) for i in range(24)}}
    path = hf.write_records(tmp_path / "bomb.pt", prefix, bomb, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2 << 20
    _refused(path, "compressed members.*zip bomb")


@pytest.mark.parametrize(
    "record", ["constants.pkl", "code/__torch__.py", "extra/x", "data/0/../x", "evil.py"]
)
def test_unexpected_records_are_refused(tmp_path, record):
    prefix, records = hf.read_records()
    path = hf.write_records(tmp_path / "odd.pt", prefix, {**records, record: b"x"})
    _refused(path, "refusing the file")


@pytest.mark.parametrize(
    "pkl",
    [
        hf.build_on_model([(hf.text("names"), hf.shared_list_bomb())]),
        hf.build_on_model([(hf.text("names"), b"}" + hf.text("0") + hf.shared_list_bomb() + b"s")]),
        hf.build_on_model([(hf.text("yaml"), hf.dict_of((hf.text("nc"), hf.shared_list_bomb())))]),
        hf.set_in_checkpoint("train_args", hf.dict_of((hf.text("imgsz"), hf.shared_list_bomb()))),
        hf.set_in_checkpoint(hf.shared_list_bomb().hex()[:8], b"N"),
    ],
    ids=["names-list", "names-dict", "yaml-nc", "train-args-imgsz", "odd-key"],
)
def test_shared_reference_metadata_cannot_hang(tmp_path, pkl):
    """~1 KB of pickle that str()/repr()/a walk would expand to 2**60 items."""
    path = hf.with_pickle(tmp_path / "meta.pt", pkl)
    start = time.perf_counter()
    try:
        state, cfg, _ = convert_checkpoint(path)  # bad metadata is ignored, the weights load
        assert cfg.reg_max == 26 and len(state) > 100
    except ValueError as err:
        assert "\n" not in str(err) and len(str(err)) < 600
    assert time.perf_counter() - start < 20
    _intact()


def test_shared_submodule_dag_cannot_hang(tmp_path):
    """A module whose two children are the same module, nested: 2**40 paths to walk."""
    layers = b"".join(
        hf.global_("torch.nn.modules.container", "Sequential") + b")\x81" + hf.put(800_000 + i)
        for i in range(40)
    )
    wiring = b"".join(
        hf.get(800_000 + i)
        + hf.dict_of(
            (
                hf.text("_modules"),
                hf.dict_of(
                    (hf.text("a"), hf.get(800_001 + i)), (hf.text("b"), hf.get(800_001 + i))
                ),
            )
        )
        + b"b0"
        for i in range(39)
    )
    top = hf.dict_of((hf.text("model"), hf.get(800_000)))
    path = hf.with_pickle(tmp_path / "dag.pt", b"\x80\x02" + layers + wiring + top + b".")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="module"):
        convert_checkpoint(path)
    assert time.perf_counter() - start < 20
    _intact()


# --- files that are not files ---------------------------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "FastSAM-s.pt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_checkpoint(fifo)


def test_symlink_loop_is_one_line(tmp_path):
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    with pytest.raises(ValueError, match="cannot read") as info:
        load_checkpoint(loop)
    assert "\n" not in str(info.value)


def test_forged_storage_is_refused_not_called_truncated(tmp_path):
    prefix, records = hf.read_records()
    records["data/0"] = records["data/0"][:-4]  # the pickle claims 4 more bytes
    message = _refused(hf.write_records(tmp_path / "forged.pt", prefix, records), "claims")
    assert "download it again" not in message
