"""The metadata an exported graph carries for the runtime (`fastsam export`, issue 14).

`export_onnx` writes `GraphInfo.to_json()` into the ONNX model's `metadata_props` under
`METADATA_KEY` (`write_metadata`); the runtime reads it back through onnxruntime's
`custom_metadata_map` (no `onnx` package needed) with `GraphInfo.from_metadata`, which refuses
graphs of other models and unsupported format versions with one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsam_core.config import YoloSegConfig
from fastsam_core.ops.references import POSTPROCESS_NAMES

METADATA_KEY = "fastsam"  # metadata_props key holding `GraphInfo.to_json()`
FORMAT_VERSION = 1  # bump when the graph I/O contract or the fields below change
INPUT_NAME = "images"  # (B, 3, H, W) uint8 RGB, letterboxed (`ops.letterbox`, pad 114)
# (B, 4, A) xywh letterbox px, (B, nc, A) sigmoid, (B, K, A), (B, K, H/4, W/4), (A, 2) px; float32
OUTPUT_NAMES = ("boxes", "scores", "mask_coeffs", "protos", "anchors")
FUSE_FORMULAS = ("v8.0", "current")


@dataclass(frozen=True)
class GraphInfo:
    """What an exported graph is: its network config, input size and provenance.

    Attributes:
        format_version: `FORMAT_VERSION` of the writer.
        config: the `YoloSegConfig` as a plain dict (`YoloSegConfig.to_dict()`).
        imgsz: (H, W) input size of a fixed graph; the default letterbox size of a dynamic one.
        dynamic: H and W are free (multiples of 32); the batch is always free.
        names: class names, one per class.
        strides, reg_max, num_classes, num_protos: the head's geometry (copied from `config`).
        fuse_formula: the Conv+BN fuse formula baked in ("v8.0" or "current", spec §1.10).
        postprocess: the reference whose fused weights the graph holds ("official"/"ultralytics").
        half: the network runs in fp16 (input uint8 and outputs float32 regardless).
        int8: statically quantized (QDQ) backbone and neck.
        opset: ONNX opset of the graph.
        fastsam_core_version: version of the exporter.
        source_sha256: sha256 of the source weights file, None for an in-memory model.
    """

    config: dict[str, Any]
    imgsz: tuple[int, int]
    dynamic: bool
    names: tuple[str, ...]
    strides: tuple[int, ...]
    reg_max: int
    num_classes: int
    num_protos: int
    fuse_formula: str
    postprocess: str
    half: bool
    int8: bool
    opset: int
    fastsam_core_version: str
    source_sha256: str | None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # the JSON form (lists for tuples), so an info equals its `from_json(to_json())` copy
        object.__setattr__(self, "config", json.loads(json.dumps(self.config)))

    @classmethod
    def for_config(cls, cfg: YoloSegConfig, **fields: Any) -> GraphInfo:
        """An info whose config and head geometry (names, strides, ...) come from `cfg`."""
        return cls(
            config=cfg.to_dict(),
            names=tuple(cfg.class_names) or tuple(f"class{i}" for i in range(cfg.num_classes)),
            strides=tuple(cfg.strides),
            reg_max=cfg.reg_max,
            num_classes=cfg.num_classes,
            num_protos=cfg.num_mask_coeffs,
            **fields,
        )

    def yolo_config(self) -> YoloSegConfig:
        """`config` as a `YoloSegConfig`."""
        return YoloSegConfig.from_dict(dict(self.config))

    def to_json(self) -> str:
        """Compact JSON (tuples as lists), the inverse of `from_json`."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "graph") -> GraphInfo:
        """Parse and validate `to_json()` output; ValueError naming `source` on any defect."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError, RecursionError) as err:
            raise ValueError(f"{source}: {METADATA_KEY!r} metadata is not JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"{source}: {METADATA_KEY!r} metadata must be a JSON object, got "
                f"{type(data).__name__}"
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source}: graph metadata format_version {version!r} is not supported by this "
                f"fastsam-core (reads version {FORMAT_VERSION}); re-export it with this version's "
                "`fastsam export`"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = sorted(names - set(data)), sorted(map(str, set(data) - names))
        if missing or unknown:
            raise ValueError(
                f"{source}: graph metadata fields missing {missing}, unknown {unknown}; "
                "re-export it with `fastsam export`"
            )
        try:
            info = cls(
                **{
                    **data,
                    "imgsz": _tuple(data["imgsz"]),
                    "names": _tuple(data["names"]),
                    "strides": _tuple(data["strides"]),
                }
            )
            info._validate()
        except (ValueError, TypeError) as err:
            raise ValueError(f"{source}: invalid graph metadata: {err}") from None
        return info

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "graph") -> GraphInfo:
        """From an ONNX `metadata_props` / onnxruntime `custom_metadata_map` mapping."""
        if METADATA_KEY not in metadata:
            raise ValueError(
                f"{source} is an ONNX graph without {METADATA_KEY!r} metadata (found keys "
                f"{sorted(metadata)[:8]}): not a graph written by `fastsam export`"
            )
        return cls.from_json(metadata[METADATA_KEY], source)

    def _validate(self) -> None:
        cfg = YoloSegConfig.from_dict(dict(self.config))  # its own range checks
        checks = {
            "imgsz": len(self.imgsz) == 2
            and all(_is_int(v) and v > 0 and v % 32 == 0 for v in self.imgsz),
            "dynamic": isinstance(self.dynamic, bool),
            "names": all(isinstance(n, str) for n in self.names)
            and len(self.names) == self.num_classes,
            "strides": self.strides == tuple(cfg.strides),
            "reg_max": self.reg_max == cfg.reg_max,
            "num_classes": self.num_classes == cfg.num_classes,
            "num_protos": self.num_protos == cfg.num_mask_coeffs,
            "fuse_formula": self.fuse_formula in FUSE_FORMULAS,
            "postprocess": self.postprocess in POSTPROCESS_NAMES,
            "half": isinstance(self.half, bool),
            "int8": isinstance(self.int8, bool),
            "opset": _is_int(self.opset) and self.opset > 0,
            "fastsam_core_version": isinstance(self.fastsam_core_version, str),
            "source_sha256": self.source_sha256 is None
            or (isinstance(self.source_sha256, str) and len(self.source_sha256) == 64),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                "bad fields " + ", ".join(f"{n}={getattr(self, n)!r}"[:120] for n in bad)
            )


def write_metadata(path: str | Path, info: GraphInfo) -> None:
    """Store `info` under `METADATA_KEY` in the ONNX file at `path`, in place (needs `onnx`)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=METADATA_KEY, value=info.to_json())
    onnx.save(proto, str(path))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tuple(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple(value)
