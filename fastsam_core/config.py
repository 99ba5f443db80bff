"""YOLOv8-seg variant configs for every scale and the FastSAM presets (spec §1.1, §1.4)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

# Channel counts and repeats of the YOLOv8 yaml before scaling (spec §1.2).
_BASE_CHANNELS = (64, 128, 256, 512, 1024)  # stem, P2, P3, P4, P5
_BASE_DEPTHS = (3, 6, 6, 3)  # C2f repeats in stages P2..P5
_BASE_NECK_DEPTH = 3
_BASE_PROTO = 256

# (depth multiple, width multiple, max channels) of each scale (spec §1.1).
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.25, 512),
}


def _make_divisible(x: float, divisor: int = 8) -> int:
    """Round up to a multiple of `divisor` (spec §1.1)."""
    return int(math.ceil(x / divisor) * divisor)


def _scale_channels(c: int, width: float, max_channels: int) -> int:
    return _make_divisible(min(c, max_channels) * width)


def _scale_depth(n: int, depth: float) -> int:
    # Python's round (banker's) as the reference: round(0.99) = 1, round(1.98) = 2.
    return max(round(n * depth), 1) if n > 1 else n


# How ultralytics sizes the class branch (spec §1.4, "c3"); the rule changed after 8.0.120.
ClassHiddenRule = Literal["current", "8.0.120"]
CLASS_HIDDEN_RULES: tuple[ClassHiddenRule, ...] = ("current", "8.0.120")


def class_hidden_width(
    p3_channels: int, num_classes: int, rule: ClassHiddenRule = "current"
) -> int:
    """Hidden width of the class branch under one ultralytics rule (spec §1.4).

    Args:
        p3_channels: channels of the P3 feature (the head's first input).
        num_classes: class-branch outputs.
        rule: "current" (8.1+: `max(P3, min(nc, 100))`) or "8.0.120" (`max(P3, nc)`, the
            FastSAM-era code). They differ only when nc > P3 and nc > 100 (e.g. LVIS, 1203).
    """
    if rule == "current":
        return max(p3_channels, min(num_classes, 100))
    if rule == "8.0.120":
        return max(p3_channels, num_classes)
    raise ValueError(f"unknown class-branch rule {rule!r}; expected one of {CLASS_HIDDEN_RULES}")


_TUPLE_FIELDS = ("channels", "depths", "strides", "class_names")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_tuple(value: Any, length: int) -> bool:
    return isinstance(value, tuple) and len(value) == length and all(_is_int(v) for v in value)


def _in(value: Any, low: int, high: int) -> bool:
    return _is_int(value) and low <= value <= high


# Upper bounds for configs read from files: far above any YOLOv8 scale (x: channels <= 640,
# depths <= 6, proto 320, reg_max 26) yet small enough that building the model skeleton to
# compare shapes is instant; a forged header cannot ask for 100k blocks or 2**40 channels.
MAX_CHANNELS = 8192
MAX_DEPTH = 64
MAX_REG_MAX = 256
MAX_CLASSES = 100_000
MAX_MASK_COEFFS = 1024
MAX_IMGSZ = 8192  # network input side; larger photos are letterboxed down to it
MAX_NAME_CHARS = 256

# The backbone part (issue 17): our CSPDarknet, or a timm model built with features_only=True.
DEFAULT_BACKBONE = "cspdarknet"
TIMM_PREFIX = "timm:"
_TIMM_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")  # timm model names, e.g. resnet18, convnext_atto


def is_valid_backbone(name: Any) -> bool:
    """True for "cspdarknet" and for "timm:<model name>" (name: letters, digits, _ . -)."""
    if not isinstance(name, str):
        return False
    if name == DEFAULT_BACKBONE:
        return True
    return name.startswith(TIMM_PREFIX) and bool(_TIMM_NAME.fullmatch(name[len(TIMM_PREFIX) :]))


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, (tuple, list)) or len(value) < 50 else None
    if text is None or len(text) > limit:
        return (
            f"<{type(value).__name__} of length {len(value)}>"
            if hasattr(value, "__len__")
            else f"<{type(value).__name__}>"
        )
    return text


@dataclass(frozen=True)
class YoloSegConfig:
    """A fully resolved YOLOv8-seg variant."""

    channels: tuple[int, int, int, int, int]  # stem, P2, P3, P4, P5 output channels
    depths: tuple[int, int, int, int]  # C2f repeats in stages P2..P5
    neck_depth: int  # C2f repeats in each neck block
    proto_channels: int  # Proto hidden width (spec §1.1 "npr")
    num_classes: int = 1
    reg_max: int = 16  # the FastSAM-x checkpoint uses 26 (spec §1.4)
    num_mask_coeffs: int = 32
    strides: tuple[int, int, int] = (8, 16, 32)
    bn_eps: float = 1e-3
    scale: str | None = None  # the scale letter this config was derived from, if any
    imgsz: int = 640  # default inference size (FastSAM checkpoints: 1024)
    class_names: tuple[str, ...] = ()
    # Class-branch hidden width when it is not the current ultralytics rule: checkpoints made by
    # 8.0.120 with nc > P3 channels and nc > 100 (e.g. LVIS) use max(P3, nc). None = the rule.
    class_hidden_override: int | None = None
    # "cspdarknet" (YOLOv8's, the default: files without this field) or "timm:<name>", a timm
    # features_only model whose stride 8/16/32 outputs are adapted to channels[2:] (P3, P4, P5);
    # channels[:2] and depths then describe nothing (model/timm_backbone.py).
    backbone: str = DEFAULT_BACKBONE

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:  # lists (JSON, callers) -> tuples: the config stays hashable
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        # Types first: configs also arrive as JSON from file headers (`from_dict`).
        checks = {
            "channels": _is_int_tuple(self.channels, 5)
            and all(_in(c, 1, MAX_CHANNELS) for c in self.channels),
            "depths": _is_int_tuple(self.depths, 4)
            and all(_in(d, 1, MAX_DEPTH) for d in self.depths),
            "neck_depth": _in(self.neck_depth, 1, MAX_DEPTH),
            "proto_channels": _in(self.proto_channels, 1, MAX_CHANNELS),
            "num_classes": _in(self.num_classes, 1, MAX_CLASSES),
            "reg_max": _in(self.reg_max, 2, MAX_REG_MAX),
            "num_mask_coeffs": _in(self.num_mask_coeffs, 1, MAX_MASK_COEFFS),
            "strides": self.strides == (8, 16, 32),
            "bn_eps": isinstance(self.bn_eps, (int, float))
            and not isinstance(self.bn_eps, bool)
            and 0 < self.bn_eps < 1,
            "scale": self.scale is None or self.scale in SCALES,
            "imgsz": _in(self.imgsz, 1, MAX_IMGSZ),
            "class_names": isinstance(self.class_names, tuple)
            and len(self.class_names) <= MAX_CLASSES
            and all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in self.class_names),
            "class_hidden_override": self.class_hidden_override is None
            or _in(self.class_hidden_override, 1, MAX_CHANNELS + MAX_CLASSES),
            "backbone": is_valid_backbone(self.backbone),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={_short_repr(getattr(self, name))}" for name in bad)
            raise ValueError(
                f"invalid YoloSegConfig: {values} (types, or outside the bounds channels <= "
                f"{MAX_CHANNELS}, depths <= {MAX_DEPTH}, reg_max 2..{MAX_REG_MAX}, num_classes <= "
                f"{MAX_CLASSES}, imgsz <= {MAX_IMGSZ}, backbone 'cspdarknet' or "
                "'timm:<name>')"
            )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but num_classes is "
                f"{self.num_classes}"
            )

    # Head widths (spec §1.4); they depend on P3 channels, reg_max and num_classes.
    @property
    def box_hidden(self) -> int:
        return max(16, self.channels[2] // 4, 4 * self.reg_max)

    @property
    def class_hidden(self) -> int:
        if self.class_hidden_override is not None:
            return self.class_hidden_override
        return class_hidden_width(self.channels[2], self.num_classes, "current")

    @property
    def coeff_hidden(self) -> int:
        return max(self.channels[2] // 4, self.num_mask_coeffs)

    @property
    def head_in_channels(self) -> tuple[int, int, int]:
        return (self.channels[2], self.channels[3], self.channels[4])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> YoloSegConfig:
        """Inverse of `to_dict`, also for its JSON form (lists for tuples); validates types."""
        if not isinstance(data, dict):
            raise TypeError(f"YoloSegConfig.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - names))
        if unknown:
            raise ValueError(
                f"unknown YoloSegConfig fields {unknown}; expected a subset of {sorted(names)}"
            )
        return cls(**data)


def yolov8_seg_config(scale: str, **overrides: Any) -> YoloSegConfig:
    """Derive the config of a YOLOv8-seg scale from its (depth, width, max_channels) triple."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    depth, width, max_channels = SCALES[scale]
    channels = tuple(_scale_channels(c, width, max_channels) for c in _BASE_CHANNELS)
    cfg = YoloSegConfig(
        channels=channels,  # type: ignore[arg-type]
        depths=tuple(_scale_depth(n, depth) for n in _BASE_DEPTHS),  # type: ignore[arg-type]
        neck_depth=_scale_depth(_BASE_NECK_DEPTH, depth),
        proto_channels=_scale_channels(_BASE_PROTO, width, max_channels),
        scale=scale,
    )
    return dataclasses.replace(cfg, **overrides)


FASTSAM_S = yolov8_seg_config("s", num_classes=1, reg_max=16, imgsz=1024, class_names=("object",))
FASTSAM_X = yolov8_seg_config("x", num_classes=1, reg_max=26, imgsz=1024, class_names=("object",))
