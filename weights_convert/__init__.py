"""Safe conversion of ultralytics YOLOv8-seg / FastSAM `.pt` checkpoints to safetensors (spec §2).

Imported as `fastsam_weights_convert`. Never imports ultralytics and never runs pickled code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from fastsam_weights_convert.checkpoint import (
    checkpoint_metadata,
    checkpoint_model,
    flat_state_dict,
)
from fastsam_weights_convert.unpickle import UnsafeCheckpointError, load_checkpoint
from fastsam_weights_convert.yolov8_seg import convert_state_dict, infer_config

from fastsam_core.config import YoloSegConfig

# safetensors header metadata key holding `YoloSegConfig.to_dict()` as JSON.
CONFIG_KEY = "fastsam_config"
FORMAT_KEY = "fastsam_format"
FORMAT_VERSION = "1"

__all__ = [
    "CONFIG_KEY",
    "UnsafeCheckpointError",
    "convert_checkpoint",
    "convert_file",
    "convert_state_dict",
    "infer_config",
    "load_checkpoint",
    "save_converted",
    "sha256_file",
]


def convert_checkpoint(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], YoloSegConfig, dict[str, Any]]:
    """Load an ultralytics `.pt` safely and convert it to `YoloV8Seg` tensors.

    Args:
        path: official FastSAM / YOLOv8-seg checkpoint.
    Returns:
        (state_dict, cfg, info): fp32 tensors named like `YoloV8Seg(cfg).state_dict()`, the
        inferred config, and metadata (slot, version, source dtype, seconds, ...).
    """
    start = time.perf_counter()
    ckpt = load_checkpoint(path)
    model, slot = checkpoint_model(ckpt)
    src = flat_state_dict(model)
    meta = checkpoint_metadata(ckpt, model, slot)
    state_dict, cfg = convert_state_dict(src, meta)
    dtypes = sorted(
        {str(t.dtype).removeprefix("torch.") for t in src.values() if t.is_floating_point()}
    )
    info = {
        **meta,
        "source": str(path),
        "source_dtypes": dtypes,
        "num_params": sum(t.numel() for k, t in state_dict.items() if _is_param(k)),
        "seconds": time.perf_counter() - start,
    }
    return state_dict, cfg, info


def _is_param(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_converted(
    state_dict: dict[str, torch.Tensor],
    cfg: YoloSegConfig,
    out_path: str | Path,
    force: bool = False,
    extra_metadata: dict[str, str] | None = None,
) -> str:
    """Write `state_dict` + `cfg` (JSON in the header) as `.safetensors`, atomically.

    Args:
        state_dict: tensors of `YoloV8Seg(cfg)`.
        cfg: stored under the header metadata key `fastsam_config`.
        out_path: destination; refused if it exists unless `force`.
        extra_metadata: more string entries for the header (e.g. the source file).
    Returns:
        The sha256 hex digest of the written file.
    """
    from safetensors.torch import save_file

    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise FileExistsError(f"{out_path} already exists; pass force=True (--force) to overwrite")
    if out_path.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors, got {out_path.name!r}")
    metadata = {
        **(extra_metadata or {}),
        CONFIG_KEY: json.dumps(cfg.to_dict()),
        FORMAT_KEY: FORMAT_VERSION,
        "format": "pt",
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        digest = sha256_file(tmp)
        os.replace(tmp, out_path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def convert_file(
    in_path: str | Path, out_path: str | Path, force: bool = False
) -> tuple[YoloSegConfig, dict[str, Any]]:
    """`.pt` -> `.safetensors` in one call (what `fastsam convert` runs).

    Returns:
        (cfg, info) where info adds `sha256` and `output` to `convert_checkpoint`'s info.
    """
    out_path = Path(out_path)
    if out_path.exists() and not force:  # fail before the (slow) conversion
        raise FileExistsError(f"{out_path} already exists; pass --force to overwrite")
    state_dict, cfg, info = convert_checkpoint(in_path)
    extra = {"fastsam_source": Path(in_path).name, "fastsam_source_sha256": sha256_file(in_path)}
    digest = save_converted(state_dict, cfg, out_path, force=force, extra_metadata=extra)
    return cfg, {**info, "sha256": digest, "output": str(out_path)}
