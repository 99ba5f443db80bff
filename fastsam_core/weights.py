"""One-call model loading from `.safetensors` (converted) or `.pt` (official) files (spec §2.5)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import cast

import torch

from fastsam_core.config import YoloSegConfig
from fastsam_core.model.fuse import fuse_conv_bn
from fastsam_core.model.yolov8_seg import YoloV8Seg

logger = logging.getLogger(__name__)

CONFIG_KEY = "fastsam_config"  # must equal fastsam_weights_convert.CONFIG_KEY
_SUFFIXES = (".pt", ".pth", ".safetensors")


def _check_path(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix not in _SUFFIXES:
        raise ValueError(
            f"unsupported model file {path.name!r}: expected one of {_SUFFIXES} (an official "
            "ultralytics checkpoint or a file from `fastsam convert`)"
        )


def load_config(path: str | Path) -> YoloSegConfig:
    """The `YoloSegConfig` of a model file, without loading its tensors (for `.pt`: converts)."""
    path = Path(path)
    _check_path(path)
    if path.suffix == ".safetensors":
        return _safetensors_config(path)
    return _convert_pt(path)[1]


def _safetensors_config(path: Path) -> YoloSegConfig:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if CONFIG_KEY not in metadata:
        raise ValueError(
            f"{path} has no {CONFIG_KEY!r} entry in its safetensors header (found keys "
            f"{sorted(metadata)}); write it with `fastsam convert IN.pt OUT.safetensors`"
        )
    try:
        return YoloSegConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: invalid {CONFIG_KEY!r} in the header: {err}") from err


def _convert_pt(path: Path) -> tuple[dict[str, torch.Tensor], YoloSegConfig]:
    try:
        import fastsam_weights_convert
    except ImportError as err:  # pragma: no cover - ships with fastsam-core
        raise ImportError(
            "loading .pt files needs fastsam_weights_convert: pip install fastsam-core"
        ) from err
    state_dict, cfg, _ = fastsam_weights_convert.convert_checkpoint(path)
    return state_dict, cfg


def _check_tensors(
    path: Path,
    cfg: YoloSegConfig,
    tensors: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
) -> None:
    """One ValueError naming every missing, unexpected and mis-shaped tensor (first 10 of each)."""
    problems = {
        "missing": [k for k in expected if k not in tensors],
        "unexpected": [k for k in tensors if k not in expected],
        "shape mismatches": [
            f"{k}: file {tuple(v.shape)}, model {tuple(expected[k].shape)}"
            for k, v in tensors.items()
            if k in expected and v.shape != expected[k].shape
        ],
    }
    if not any(problems.values()):
        return
    lines = [
        f"{len(items)} {what}: " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else "")
        for what, items in problems.items()
        if items
    ]
    raise ValueError(
        f"{path}: tensors do not match YoloV8Seg for the config in the file (channels "
        f"{cfg.channels}, depths {cfg.depths}, reg_max {cfg.reg_max}, num_classes "
        f"{cfg.num_classes}):\n  "
        + "\n  ".join(lines)
        + "\nre-create the file with `fastsam convert`"
    )


def load_model(
    path: str | Path, device: str | torch.device = "cpu", fuse: bool = False
) -> YoloV8Seg:
    """Build `YoloV8Seg` from a model file, strictly, in eval mode.

    Args:
        path: `.safetensors` from `fastsam convert` (config in its header) or an official
            ultralytics `.pt` checkpoint (converted in memory, never unpickled unsafely).
        device: where the model lives.
        fuse: fold BatchNorm into the convs (`fuse_conv_bn`, spec §1.10) for inference.
    Returns:
        The model in eval mode with fp32 weights and gradients disabled.
    """
    path = Path(path)
    _check_path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        cfg = _safetensors_config(path)
        state_dict = load_file(str(path))
    else:
        state_dict, cfg = _convert_pt(path)
    model = YoloV8Seg(cfg)  # CPU build: faster than the meta device on first use (see converter)
    _check_tensors(path, cfg, state_dict, model.state_dict())
    model.load_state_dict(state_dict, strict=True)
    model = model.to(device).float().eval().requires_grad_(False)
    if fuse:
        model = cast(YoloV8Seg, fuse_conv_bn(model))
    logger.debug("loaded %s (%s)", path, cfg.scale or "custom")
    return model
