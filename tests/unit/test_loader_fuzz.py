"""Fuzzing the checkpoint loader (issue #20): mutated pickles and zip directories of a genuine
checkpoint give a clear error or a correct load, never code execution, an import or a hang."""

from __future__ import annotations

import struct
import sys
import time
import zipfile

import pytest
import torch
from fastsam_weights_convert import convert_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import hostile_files as hf

_PICKLE = hf.read_records()[1]["data.pkl"]
_ARCHIVE = hf.GENUINE.read_bytes()
_SETTINGS = settings(
    max_examples=60,
    deadline=None,  # timed below, per example, with a bound that catches a hang
    derandomize=True,  # the same cases on every run: CI never flakes on a new one
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)



@pytest.fixture(autouse=True, scope="module")
def _warm_up():
    """Convert once first: torch imports some of its own modules lazily on first use, which the
    'nothing was imported' checks must not mistake for the file importing them."""
    convert_checkpoint(hf.GENUINE)


def _load_bounded(path) -> None:
    """Load; only clear errors are acceptable, and it must end quickly."""
    modules = set(sys.modules)
    start = time.perf_counter()
    try:
        state, cfg, _ = convert_checkpoint(path)
        assert all(isinstance(t, torch.Tensor) for t in state.values()) and cfg.reg_max > 1
    except (ValueError, FileNotFoundError) as err:  # UnsafeCheckpointError is a ValueError
        message = str(err)
        assert "\n" not in message and len(message) < 1000, message
    assert time.perf_counter() - start < 10
    new = {m for m in set(sys.modules) - modules if not m.startswith("encodings.")}
    assert not new, f"loading imported {sorted(new)}"


_mutations = st.lists(
    st.tuples(st.integers(0, len(_PICKLE) - 1), st.integers(0, 255)), min_size=1, max_size=6
)


@_SETTINGS
@given(mutations=_mutations)
def test_mutated_pickle_stream(tmp_path, mutations):
    data = bytearray(_PICKLE)
    for position, value in mutations:
        data[position] = value
    _load_bounded(hf.with_pickle(tmp_path / "fuzz.pt", bytes(data)))


@_SETTINGS
@given(
    cut=st.integers(3, len(_PICKLE) - 2),
    insert=st.binary(min_size=1, max_size=12),
)
def test_spliced_pickle_stream(tmp_path, cut, insert):
    """Inserted opcodes (GLOBAL, REDUCE, BUILD, ... bytes) in the middle of a genuine stream."""
    _load_bounded(hf.with_pickle(tmp_path / "fuzz.pt", _PICKLE[:cut] + insert + _PICKLE[cut:]))


def _central_directory_start() -> int:
    end = _ARCHIVE.rfind(b"PK\x05\x06")
    return struct.unpack("<I", _ARCHIVE[end + 16 : end + 20])[0]


_CD = _central_directory_start()


@_SETTINGS
@given(
    mutations=st.lists(
        st.tuples(st.integers(_CD, len(_ARCHIVE) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_zip_directory(tmp_path, mutations):
    data = bytearray(_ARCHIVE)
    for position, value in mutations:
        data[position] = value
    path = tmp_path / "fuzz.pt"
    path.write_bytes(bytes(data))
    _load_bounded(path)


def test_fuzz_targets_are_genuine():
    """The unmutated inputs load, so the fuzz tests exercise the loader, not an early refusal."""
    assert zipfile.is_zipfile(hf.GENUINE) and _ARCHIVE[_CD : _CD + 4] == b"PK\x01\x02"
    convert_checkpoint(hf.GENUINE)


@pytest.mark.parametrize("opcode", [b"i", b"o", b"\x82", b"P", b"\x93"])
def test_refused_opcodes(tmp_path, opcode):
    """INST, OBJ, EXT1, PERSID and STACK_GLOBAL-with-junk forms never construct anything."""
    data = b"\x80\x02" + hf.genuine_body() + b"(" + opcode + b"x\ny\n."
    _load_bounded(hf.with_pickle(tmp_path / "op.pt", data))
