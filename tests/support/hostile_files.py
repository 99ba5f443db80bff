"""Hostile checkpoints built by code from the committed genuine one (tests/fixtures).

Pickle surgery works on the raw protocol-2 opcode stream of the genuine `data.pkl`: its body
(without PROTO and STOP) leaves the checkpoint dict on the stack, so ops appended after it act on
that dict, and `model_memo_index` finds the memo slot of the pickled model so a BUILD can target
it. Archives are rewritten stored (uncompressed), as torch.save writes them.
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GENUINE = REPO_ROOT / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"


def read_records(path: Path = GENUINE) -> tuple[str, dict[str, bytes]]:
    """(top folder, {record name: bytes}) of a torch.save zip."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0]
        return prefix, {n[len(prefix) + 1 :]: archive.read(n) for n in names}


def write_records(path: Path, prefix: str, records: dict[str, bytes], **zip_args: int) -> Path:
    with zipfile.ZipFile(path, "w", zip_args.get("compression", zipfile.ZIP_STORED)) as archive:
        for name, data in records.items():
            archive.writestr(f"{prefix}/{name}", data)
    return path


def with_pickle(path: Path, data_pkl: bytes) -> Path:
    """The genuine checkpoint with its data.pkl replaced."""
    prefix, records = read_records()
    return write_records(path, prefix, {**records, "data.pkl": data_pkl})


def genuine_body() -> bytes:
    """The genuine data.pkl without PROTO 2 and STOP: leaves the checkpoint dict on the stack."""
    data = read_records()[1]["data.pkl"]
    assert data[:2] == b"\x80\x02" and data[-1:] == b".", "fixture is not a protocol-2 pickle"
    return data[2:-1]


# --- opcode builders (protocol 2) ------------------------------------------------------------


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)  # LONG_BINGET


def put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)  # LONG_BINPUT


def dict_of(*pairs: tuple[bytes, bytes]) -> bytes:
    """EMPTY_DICT then one SETITEM per (key ops, value ops)."""
    return b"}" + b"".join(k + v + b"s" for k, v in pairs)


def shared_list_bomb(depth: int = 60, memo: int = 900_000) -> bytes:
    """[a, a] nested `depth` times through the memo: ~10 bytes per level in the pickle,
    2**depth leaves for anything that walks or prints it."""
    ops = b"]" + put(memo)  # EMPTY_LIST
    for _ in range(depth):
        ops += b"(" + get(memo) + get(memo) + b"l" + put(memo)  # MARK a a LIST -> memo
    return ops


def model_memo_index(body: bytes, class_name: str = "SegmentationModel") -> int:
    """Memo slot of the first object NEWOBJ'd from the ultralytics class `class_name`."""
    ops = list(pickletools.genops(b"\x80\x02" + body + b"."))
    classes: dict[int, str] = {}
    last_global = ""
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            last_global = str(arg)
        elif op.name in ("BINPUT", "LONG_BINPUT") and ops[i - 1][0].name == "GLOBAL":
            classes[int(arg)] = last_global
        elif op.name == "NEWOBJ":
            cls_op = ops[i - 2]  # class (GLOBAL or GET), EMPTY_TUPLE, NEWOBJ
            name = str(cls_op[1]) if cls_op[0].name == "GLOBAL" else classes.get(cls_op[1], "")
            if name.endswith(f" {class_name}") and ops[i + 1][0].name.endswith("PUT"):
                return int(ops[i + 1][1])
    raise LookupError(f"no NEWOBJ of {class_name} in the fixture pickle")


def build_on_model(state_pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A data.pkl that is the genuine checkpoint whose model then gets BUILD(state)."""
    body = genuine_body()
    index = model_memo_index(body)
    return b"\x80\x02" + body + get(index) + dict_of(*state_pairs) + b"b0."  # BUILD, POP


def set_in_checkpoint(key: str, value_ops: bytes) -> bytes:
    """A data.pkl that is the genuine checkpoint dict with `key` set to the value ops."""
    return b"\x80\x02" + genuine_body() + text(key) + value_ops + b"s."


def build_on_global(module: str, name: str, attribute: str, value_ops: bytes) -> bytes:
    """(GLOBAL module.name with BUILD(None, {attribute: value}), genuine checkpoint) as a tuple:
    the slot-state form of BUILD calls setattr on whatever object the GLOBAL resolved to."""
    poison = global_(module, name) + b"N" + dict_of((text(attribute), value_ops)) + b"\x86b"
    return b"\x80\x02(" + poison + genuine_body() + b"t."  # MARK ... TUPLE
