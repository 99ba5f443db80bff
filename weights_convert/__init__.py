"""Safe conversion of ultralytics YOLOv8-seg / FastSAM `.pt` checkpoints to safetensors (spec §2).

Imported as `fastsam_weights_convert`. Never imports ultralytics and never runs pickled code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from fastsam_core.config import YoloSegConfig
from fastsam_core.weights import CONFIG_KEY, _check_output, sha256_file
from fastsam_core.weights import save_weights as save_converted
from fastsam_weights_convert.checkpoint import (
    checkpoint_metadata,
    checkpoint_source,
    flat_state_dict,
)
from fastsam_weights_convert.unpickle import UnsafeCheckpointError, load_checkpoint
from fastsam_weights_convert.yolov8_seg import class_hidden_rule, convert_state_dict, infer_config

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
    ckpt = load_checkpoint(path)  # names the file in its own errors
    try:
        model, slot = checkpoint_source(ckpt)
        if isinstance(model, dict):  # a plain 'model.N.*' state dict: shapes are all we have
            src, meta = model, checkpoint_metadata(ckpt, None, slot)
        else:
            src = flat_state_dict(model)
            meta = checkpoint_metadata(ckpt, model, slot)
        state_dict, cfg = convert_state_dict(src, meta)
    except UnsafeCheckpointError:
        raise
    except ValueError as err:  # what is wrong with the content; say which file
        raise ValueError(f"{path}: {err}") from None
    except (TypeError, AttributeError, KeyError, IndexError, RuntimeError, MemoryError) as err:
        # Content no ultralytics version writes (odd metadata types, forged tensors).
        raise ValueError(
            f"{path}: unexpected checkpoint content ({type(err).__name__}: {str(err)[:200]}); "
            "expected an ultralytics YOLOv8-seg checkpoint"
        ) from None
    dtypes = sorted(
        {str(t.dtype).removeprefix("torch.") for t in src.values() if t.is_floating_point()}
    )
    info = {
        **meta,
        "source": str(path),
        "source_dtypes": dtypes,
        "class_hidden_rule": class_hidden_rule(cfg),
        "num_params": sum(t.numel() for k, t in state_dict.items() if _is_param(k)),
        "seconds": time.perf_counter() - start,
    }
    return state_dict, cfg, info


def _is_param(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def convert_file(
    in_path: str | Path, out_path: str | Path, force: bool = False
) -> tuple[YoloSegConfig, dict[str, Any]]:
    """`.pt` -> `.safetensors` in one call (what `fastsam convert` runs).

    Nothing is written unless the whole conversion succeeds; an existing output is replaced
    only with `force`.
    Returns:
        (cfg, info) where info adds `sha256` and `output` to `convert_checkpoint`'s info.
    """
    out_path = Path(out_path)
    _check_output(out_path, force, "--force (or --overwrite)")  # before the slow conversion
    if Path(in_path).resolve() == out_path.resolve():
        raise ValueError(f"input and output are the same file: {out_path}")
    state_dict, cfg, info = convert_checkpoint(in_path)
    extra = {"fastsam_source": Path(in_path).name, "fastsam_source_sha256": sha256_file(in_path)}
    digest = save_converted(state_dict, cfg, out_path, force=force, extra_metadata=extra)
    return cfg, {**info, "sha256": digest, "output": str(out_path)}
