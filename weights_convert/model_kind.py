"""What an ultralytics state dict holds: refuse everything but a YOLOv8-seg, naming the task.

Detection, pose, OBB and classification checkpoints, other segmentation networks (YOLO11, ...)
and fused models all carry 'model.N.*' tensors; this says which one arrived (spec §1.2, §1.4).
"""

from __future__ import annotations

import re
from typing import Any

import torch

_KEY = re.compile(r"model\.(\d+)\.(.+)")

# What a non-segmentation ultralytics model is, by head class (spec §1.4: Segment = Detect +
# Proto + cv4); used to refuse it with a message naming the task.
_OTHER_TASKS = {
    "Detect": "detection",
    "v10Detect": "detection (YOLOv10)",
    "WorldDetect": "open-vocabulary detection (YOLO-World)",
    "YOLOEDetect": "open-vocabulary detection (YOLOE)",
    "RTDETRDecoder": "detection (RT-DETR)",
    "Pose": "pose (keypoint)",
    "Pose26": "pose (keypoint)",
    "OBB": "oriented-box (OBB) detection",
    "OBB26": "oriented-box (OBB) detection",
    "Classify": "classification",
    "SemanticSegment": "semantic segmentation",
    "Depth": "depth estimation",
}
_NEED = "FastSAM needs a YOLOv8-seg checkpoint (FastSAM-s.pt, FastSAM-x.pt, yolov8*-seg.pt)"

# Layer classes of yolov8-seg.yaml (spec §1.2), in order.
YOLOV8_SEG_LAYERS = (
    ("Conv", "Conv", "C2f", "Conv", "C2f", "Conv", "C2f", "Conv", "C2f", "SPPF")
    + ("Upsample", "Concat", "C2f", "Upsample", "Concat", "C2f")
    + ("Conv", "Concat", "C2f", "Conv", "Concat", "C2f", "Segment")
)


def _head_kind(src: dict[str, torch.Tensor]) -> tuple[int, str]:
    """(index of the last layer, what its keys say it is) for a 'model.N.*' state dict."""
    layers = {int(m.group(1)) for k in src if (m := _KEY.fullmatch(k))}
    if not layers:
        shown = ", ".join(list(src)[:3])
        raise ValueError(
            f"no 'model.N.' tensors (first keys: {shown}); expected the state dict of an "
            f"ultralytics YOLOv8-seg model (spec §1.9). {_NEED}"
        )
    head = max(layers)
    inner = {k[len(f"model.{head}.") :] for k in src if k.startswith(f"model.{head}.")}
    if any(k.startswith("proto.") for k in inner):
        return head, "segmentation"
    if any(k.startswith("linear.") for k in inner):
        return head, "classification"
    if any(k.startswith("cv4.") for k in inner):  # extra branch without prototypes
        extra = src.get(f"model.{head}.cv4.0.2.weight")
        is_obb = extra is not None and extra.ndim == 4 and extra.shape[0] == 1  # 1 angle
        return head, "oriented-box (OBB) detection" if is_obb else "pose (keypoint)"
    if any(k.startswith(("cv2.", "cv3.")) for k in inner):
        return head, "detection"
    return head, "unknown"


def check_segmentation_model(
    src: dict[str, torch.Tensor], meta: dict[str, Any] | None = None
) -> None:
    """Refuse anything but a YOLOv8-seg model, saying what it is instead.

    Uses the pickled head and layer classes when `meta` has them (`head_type`, `layer_types`),
    else the key names of the last layer.
    Raises:
        ValueError: "this is a detection model, not segmentation: ..." (or pose, classification,
            OBB, ...), or a segmentation model whose layers are not YOLOv8's (YOLO11, v9, ...).
    """
    meta = meta or {}
    head_type = str(meta.get("head_type") or "")
    head_class = head_type.rsplit(".", 1)[-1]
    if head_class in _OTHER_TASKS:
        raise ValueError(
            f"this is a {_OTHER_TASKS[head_class]} model, not segmentation: its head is "
            f"{head_type} (model {meta.get('model_type', 'unknown')}); {_NEED}"
        )
    head, kind = _head_kind(src)
    if kind != "segmentation":
        names = sorted({k.split(".")[2] for k in src if k.startswith(f"model.{head}.")})
        what = "model of unknown type" if kind == "unknown" else f"{kind} model"
        raise ValueError(
            f"this is a {what}, not segmentation: its last layer (model.{head}) has "
            f"{names} tensors but no mask prototypes ('proto') and coefficients ('cv4'); {_NEED}"
        )
    layer_types = meta.get("layer_types")
    if layer_types is not None and tuple(layer_types) != YOLOV8_SEG_LAYERS:
        first = next(
            (i for i, (a, b) in enumerate(zip(layer_types, YOLOV8_SEG_LAYERS)) if a != b),
            min(len(layer_types), len(YOLOV8_SEG_LAYERS)),
        )
        found = layer_types[first] if first < len(layer_types) else "<end>"
        expected = YOLOV8_SEG_LAYERS[first] if first < len(YOLOV8_SEG_LAYERS) else "<end>"
        raise ValueError(
            f"this segmentation model is not a YOLOv8-seg: layer {first} is {found}, YOLOv8 has "
            f"{expected} ({len(layer_types)} layers, YOLOv8-seg has 23; YOLO11 / YOLOv9 / "
            f"YOLOv5u-seg are different networks). {_NEED}"
        )
    if any(k.endswith(".conv.bias") for k in src) and not any(".bn." in k for k in src):
        raise ValueError(
            "the model was saved after Conv+BatchNorm fusion (model.fuse(): convs carry biases, "
            "no BatchNorm tensors); convert the unfused checkpoint the trainer wrote"
        )
    if head != 22:
        raise ValueError(
            f"this segmentation model is not a YOLOv8-seg: its head is layer {head}, YOLOv8-seg's "
            f"is layer 22 (YOLO11 / YOLOv9 / YOLOv5u-seg are different networks). {_NEED}"
        )
