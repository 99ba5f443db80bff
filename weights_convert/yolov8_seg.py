"""Map an ultralytics YOLOv8-seg state dict onto `YoloV8Seg` (spec §1.9); pure, no file I/O.

The mapping is data: `LAYER_PREFIXES` sends each upstream layer index to our module path and
block type, `RENAMES` rewrites the names inside each block type (`cv2` is C2f's projection but
the head's box branch), and `DROP` lists upstream keys we deliberately discard. The config is
inferred from tensor shapes and cross-checked against the checkpoint metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import torch

from fastsam_core.config import (
    CLASS_HIDDEN_RULES,
    SCALES,
    YoloSegConfig,
    class_hidden_width,
    yolov8_seg_config,
)
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_weights_convert.model_kind import check_segmentation_model

# Upstream layer index -> (our module path, block type). Layers 10, 11, 13, 14, 17, 20
# (Upsample, Concat) hold no tensors.
LAYER_PREFIXES: dict[int, tuple[str, str]] = {
    0: ("backbone.stem", "conv"),
    1: ("backbone.stages.0.downsample", "conv"),
    2: ("backbone.stages.0.c2f", "c2f"),
    3: ("backbone.stages.1.downsample", "conv"),
    4: ("backbone.stages.1.c2f", "c2f"),
    5: ("backbone.stages.2.downsample", "conv"),
    6: ("backbone.stages.2.c2f", "c2f"),
    7: ("backbone.stages.3.downsample", "conv"),
    8: ("backbone.stages.3.c2f", "c2f"),
    9: ("backbone.sppf", "sppf"),
    12: ("neck.top_down_p4", "c2f"),
    15: ("neck.top_down_p3", "c2f"),
    16: ("neck.downsample_p3", "conv"),
    18: ("neck.bottom_up_p4", "c2f"),
    19: ("neck.downsample_p4", "conv"),
    21: ("neck.bottom_up_p5", "c2f"),
    22: ("head", "segment"),
}

# Per block type: (upstream name pattern, our name), matched against the key after "model.N.".
# The leaf names inside a Conv (conv.weight, bn.*) and a plain Conv2d (weight, bias) are equal
# on both sides, so only the module path changes.
RENAMES: dict[str, list[tuple[str, str]]] = {
    "conv": [(r"(conv|bn)\.(.+)", r"\1.\2")],
    "c2f": [
        (r"cv1\.(.+)", r"expand.\1"),
        (r"cv2\.(.+)", r"project.\1"),
        (r"m\.(\d+)\.cv1\.(.+)", r"blocks.\1.conv1.\2"),
        (r"m\.(\d+)\.cv2\.(.+)", r"blocks.\1.conv2.\2"),
    ],
    "sppf": [(r"cv1\.(.+)", r"reduce.\1"), (r"cv2\.(.+)", r"project.\1")],
    "segment": [
        (r"cv2\.(\d)\.(.+)", r"box_branch.\1.\2"),
        (r"cv3\.(\d)\.(.+)", r"class_branch.\1.\2"),
        (r"cv4\.(\d)\.(.+)", r"coeff_branch.\1.\2"),
        (r"dfl\.conv\.weight", r"dfl.conv.weight"),
        (r"proto\.cv1\.(.+)", r"proto.conv1.\1"),
        (r"proto\.upsample\.(.+)", r"proto.upsample.\1"),
        (r"proto\.cv2\.(.+)", r"proto.conv2.\1"),
        (r"proto\.cv3\.(.+)", r"proto.conv3.\1"),
    ],
}

# Upstream key pattern -> reason it is discarded. Official FastSAM / YOLOv8-seg checkpoints have
# exactly our key set (417 keys for s, 657 for x; spec §1.7), so nothing is dropped today.
DROP: dict[str, str] = {}

_KEY = re.compile(r"model\.(\d+)\.(.+)")
_BLOCK = re.compile(r"model\.(\d+)\.m\.(\d+)\.")


def _rename(key: str) -> str | None:
    """Our name for upstream `key`, or None when no table entry covers it."""
    match = _KEY.fullmatch(key)
    if match is None or int(match.group(1)) not in LAYER_PREFIXES:
        return None
    prefix, block_type = LAYER_PREFIXES[int(match.group(1))]
    for pattern, replacement in RENAMES[block_type]:
        inner = re.fullmatch(pattern, match.group(2))
        if inner is not None:
            return f"{prefix}.{inner.expand(replacement)}"
    return None


def _dropped(key: str) -> bool:
    return any(re.fullmatch(pattern, key) for pattern in DROP)


def _shape(src: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in src:
        raise ValueError(
            f"state dict lacks {key!r}, needed to infer the architecture; expected "
            "an ultralytics YOLOv8-seg state dict with 'model.N.' keys (spec §1.9)"
        )
    shape = tuple(src[key].shape)
    if len(shape) != ndim or min(shape, default=0) < 1:
        raise ValueError(f"{key} has shape {shape}; expected {ndim} non-zero dimensions")
    return shape


def _depth(src: dict[str, torch.Tensor], layer: int) -> int:
    blocks = {int(m.group(2)) for k in src if (m := _BLOCK.match(k)) and int(m.group(1)) == layer}
    if not blocks:
        raise ValueError(
            f"layer {layer} has no 'model.{layer}.m.J.' bottleneck keys; expected a "
            "C2f layer of YOLOv8"
        )
    if blocks != set(range(len(blocks))):  # also keeps a forged 'm.999999.' from sizing a model
        raise ValueError(
            f"layer {layer} has bottlenecks {sorted(blocks)[:10]}; expected m.0 .. m.{{n-1}} "
            "without gaps"
        )
    return len(blocks)


def _imgsz(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, (list, tuple)) and value and all(_imgsz(v) for v in value):
        return max(value)
    return None


def infer_config(src: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> YoloSegConfig:
    """Architecture from tensor shapes (spec §2.5 step 4), cross-checked against `meta`.

    Args:
        src: upstream state dict ('model.N.*' keys).
        meta: optional metadata (`checkpoint.checkpoint_metadata`): scale, nc, names, imgsz,
            bn_eps, head_reg_max, head_type, layer_types, ...
    Raises:
        ValueError: not a YOLOv8-seg model (detection, pose, ...), or shapes that disagree with
            each other or with meta.
    """
    meta = meta or {}
    check_segmentation_model(src, meta)
    channels = tuple(_shape(src, f"model.{i}.conv.weight", 4)[0] for i in (0, 1, 3, 5, 7))
    depths = tuple(_depth(src, layer) for layer in (2, 4, 6, 8))
    neck = {layer: _depth(src, layer) for layer in (12, 15, 18, 21)}
    problems: list[str] = []
    if len(set(neck.values())) != 1:
        problems.append(f"neck C2f layers 12/15/18/21 have different depths {neck}")
    reg_max = _shape(src, "model.22.dfl.conv.weight", 4)[1]
    box_out = _shape(src, "model.22.cv2.0.2.weight", 4)[0]
    if box_out != 4 * reg_max:
        problems.append(
            f"box branch outputs {box_out} channels but dfl has reg_max={reg_max} "
            f"(expected 4 * reg_max = {4 * reg_max})"
        )
    num_classes = _shape(src, "model.22.cv3.0.2.weight", 4)[0]
    num_coeffs = _shape(src, "model.22.proto.cv3.conv.weight", 4)[0]
    coeff_out = _shape(src, "model.22.cv4.0.2.weight", 4)[0]
    if coeff_out != num_coeffs:
        problems.append(f"mask-coefficient branch outputs {coeff_out} but Proto makes {num_coeffs}")
    proto = _shape(src, "model.22.proto.cv1.conv.weight", 4)[0]
    class_hidden = _shape(src, "model.22.cv3.0.0.conv.weight", 4)[0]
    rules = {r: class_hidden_width(channels[2], num_classes, r) for r in CLASS_HIDDEN_RULES}
    if class_hidden not in rules.values():
        problems.append(
            f"class branch hidden width is {class_hidden}, but for P3={channels[2]} channels and "
            f"nc={num_classes} ultralytics builds {rules['current']} (current rule max(P3, "
            f"min(nc, 100))) or {rules['8.0.120']} (8.0.120 rule max(P3, nc))"
        )
    # Only the 8.0.120 rule gives this width (nc > P3 and nc > 100): record it in the config.
    class_hidden_override = None if class_hidden == rules["current"] else class_hidden

    scale = next((s for s in SCALES if _matches_scale(s, channels, depths, neck[12], proto)), None)
    expect = {  # metadata value -> what the shapes say
        "yaml scale": (meta.get("scale"), scale),
        "yaml nc": (meta.get("nc"), num_classes),
        "head nc": (meta.get("head_nc"), num_classes),
        "head reg_max": (meta.get("head_reg_max"), reg_max),
        "yaml reg_max": (meta.get("reg_max"), reg_max),
        "head nm": (meta.get("head_nm"), num_coeffs),
        "head npr": (meta.get("head_npr"), proto),
    }
    shapes = f" (channels {channels}, depths {depths}, neck depth {neck[12]}, proto {proto})"
    for what, (stated, inferred) in expect.items():
        if stated is not None and stated != inferred:
            hint = shapes if what == "yaml scale" else ""
            problems.append(
                f"metadata {what}={stated!r} but the tensor shapes give {inferred!r}{hint}"
            )
    names = meta.get("names")
    class_names: tuple[str, ...] = ()
    if names is not None:
        if len(names) != num_classes:
            problems.append(
                f"metadata names has {len(names)} entries but the class branch has "
                f"{num_classes} outputs"
            )
        elif sorted(names) != list(range(num_classes)):
            problems.append(f"metadata names keys are not 0..{num_classes - 1}")
        else:
            class_names = tuple(str(names[i]) for i in range(num_classes))
    if problems:
        raise ValueError("inconsistent checkpoint: " + "; ".join(problems))

    fields: dict[str, Any] = {
        "channels": channels,
        "depths": depths,
        "neck_depth": neck[12],
        "proto_channels": proto,
        "num_classes": num_classes,
        "reg_max": reg_max,
        "num_mask_coeffs": num_coeffs,
        "scale": scale,
        "class_names": class_names,
        "class_hidden_override": class_hidden_override,
    }
    if isinstance(meta.get("bn_eps"), float) and 0 < meta["bn_eps"] < 1:
        fields["bn_eps"] = meta["bn_eps"]
    imgsz = _imgsz(meta.get("imgsz"))
    if imgsz is not None:
        fields["imgsz"] = imgsz
    if scale is not None:
        return dataclasses.replace(yolov8_seg_config(scale), **fields)
    return YoloSegConfig(**fields)


def class_hidden_rule(cfg: YoloSegConfig) -> str:
    """Which ultralytics rule gives `cfg`'s class-branch width: 'current', '8.0.120' or 'custom'."""
    for rule in CLASS_HIDDEN_RULES:
        if cfg.class_hidden == class_hidden_width(cfg.channels[2], cfg.num_classes, rule):
            return rule
    return "custom"


def _matches_scale(scale: str, channels: tuple, depths: tuple, neck: int, proto: int) -> bool:
    ref = yolov8_seg_config(scale)
    return (ref.channels, ref.depths, ref.neck_depth, ref.proto_channels) == (
        channels,
        depths,
        neck,
        proto,
    )


@functools.lru_cache(maxsize=8)
def _target_shapes(cfg: YoloSegConfig) -> dict[str, tuple[torch.Size, torch.dtype]]:
    # Built on the meta device: no memory, whatever size the (untrusted) shapes ask for.
    with torch.device("meta"):
        model = YoloV8Seg(cfg)
    return {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    more = [f"... and {len(items) - limit} more"] if len(items) > limit else []
    return f"{title} ({len(items)}):\n  " + "\n  ".join(items[:limit] + more)


def convert_state_dict(
    src: dict[str, torch.Tensor], meta: dict[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], YoloSegConfig]:
    """Convert an ultralytics YOLOv8-seg state dict to `YoloV8Seg` names, fp32.

    Args:
        src: upstream tensors keyed 'model.N.*' (spec §1.9), any float dtype.
        meta: optional checkpoint metadata for cross-checks (see `infer_config`).
    Returns:
        (state_dict, cfg): every key of `YoloV8Seg(cfg).state_dict()` exactly once, floats as
        float32, integer buffers unchanged.
    Raises:
        ValueError: not a YOLOv8-seg model, inconsistent metadata, a non-arange DFL weight,
            NaN/Inf weights, or (in one message) every unmapped, duplicate, missing, mis-shaped
            and wrongly typed key.
    """
    from fastsam_core.weights import check_finite

    cfg = infer_config(src, meta)
    dfl = src["model.22.dfl.conv.weight"].float().flatten()
    if not torch.equal(dfl, torch.arange(cfg.reg_max, dtype=torch.float32)):
        raise ValueError(
            f"model.22.dfl.conv.weight must be 0..{cfg.reg_max - 1} (DFL is a fixed "
            f"expectation), got {dfl.tolist()[:30]}; the checkpoint is corrupt"
        )
    targets = _target_shapes(cfg)
    out: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    unmapped, duplicate, unexpected, mis_shaped, mis_typed = [], [], [], [], []
    for key, tensor in src.items():
        if _dropped(key):
            continue
        name = _rename(key)
        if name is None:
            unmapped.append(key)
        elif name in sources:
            duplicate.append(f"{key} and {sources[name]} -> {name}")
        elif name not in targets:
            unexpected.append(f"{key} -> {name}")
        else:
            sources[name] = key
            shape, dtype = targets[name]
            if tensor.shape != shape:
                mis_shaped.append(
                    f"{key} -> {name}: got {tuple(tensor.shape)}, expected {tuple(shape)}"
                )
            # Weights must be real floats, counters integers: never cast int <-> float silently.
            kind_ok = (
                tensor.is_floating_point()
                if dtype.is_floating_point
                else not (tensor.is_floating_point() or tensor.is_complex())
            )
            if not kind_ok or tensor.layout != torch.strided or tensor.dtype == torch.bool:
                expected = "a float tensor" if dtype.is_floating_point else "an integer tensor"
                mis_typed.append(f"{key}: {tensor.dtype} ({tensor.layout}), expected {expected}")
            elif tensor.shape == shape:
                out[name] = tensor.detach().to(dtype).contiguous()
    missing = [name for name in targets if name not in sources]
    report = {
        "source keys with no mapping (not in LAYER_PREFIXES/RENAMES/DROP)": unmapped,
        "source keys mapped twice": duplicate,
        "source keys mapped to names the model lacks": unexpected,
        "model keys not filled": missing,
        "shape mismatches": mis_shaped,
        "wrong dtypes": mis_typed,
    }
    if any(report.values()):
        lines = [_listing(title, items) for title, items in report.items() if items]
        raise ValueError(
            f"state dict does not match YoloV8Seg for the inferred config "
            f"(channels {cfg.channels}, depths {cfg.depths}, reg_max {cfg.reg_max}, "
            f"num_classes {cfg.num_classes}):\n" + "\n".join(lines)
        )
    check_finite(out)
    return {name: out[name] for name in targets}, cfg
