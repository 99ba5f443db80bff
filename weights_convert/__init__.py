"""Safe conversion of ultralytics YOLOv8-seg / FastSAM `.pt` checkpoints to safetensors (spec §2).

Imported as `fastsam_weights_convert`. Never imports ultralytics and never runs pickled code.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import torch
from fastsam_weights_convert.checkpoint import (
    checkpoint_metadata,
    checkpoint_source,
    flat_state_dict,
)
from fastsam_weights_convert.unpickle import UnsafeCheckpointError, load_checkpoint
from fastsam_weights_convert.yolov8_seg import class_hidden_rule, convert_state_dict, infer_config

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
    except (TypeError, AttributeError, KeyError, IndexError, RuntimeError) as err:
        # Content no ultralytics version writes (odd metadata types, forged tensors).
        raise ValueError(
            f"{path}: unexpected checkpoint content ({type(err).__name__}: {err}); expected an "
            "ultralytics YOLOv8-seg checkpoint"
        ) from err
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


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_output(out_path: Path, force: bool, how: str) -> None:
    if out_path.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors, got {out_path.name!r}")
    if out_path.is_dir():
        raise ValueError(f"{out_path} is a directory; give a file name ending in .safetensors")
    if out_path.exists() and not force:
        raise FileExistsError(f"{out_path} already exists; pass {how} to overwrite it")


def _new_temp_file(directory: Path, name: str) -> Path:
    """An empty file beside the output, created with the umask's permissions (mkstemp's are
    0600, which the renamed output would keep)."""
    for _ in range(100):
        tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file in {directory}")


def save_converted(
    state_dict: dict[str, torch.Tensor],
    cfg: YoloSegConfig,
    out_path: str | Path,
    force: bool = False,
    extra_metadata: dict[str, str] | None = None,
) -> str:
    """Write `state_dict` + `cfg` (JSON in the header) as `.safetensors`, atomically.

    The file is written under a temporary name beside `out_path` and renamed into place, so a
    failure or Ctrl-C leaves no partial output (and an existing file untouched).

    Args:
        state_dict: tensors of `YoloV8Seg(cfg)`.
        cfg: stored under the header metadata key `fastsam_config`.
        out_path: destination; refused if it exists unless `force`.
        extra_metadata: more string entries for the header (e.g. the source file).
    Returns:
        The sha256 hex digest of the written file.
    Raises:
        FileExistsError: `out_path` exists (also if it appeared while writing) and not `force`.
        ValueError: `out_path` does not end in .safetensors, or is a directory.
    """
    from safetensors.torch import save_file

    out_path = Path(out_path)
    _check_output(out_path, force, "force=True (--force / --overwrite)")
    metadata = {
        **(extra_metadata or {}),
        CONFIG_KEY: json.dumps(cfg.to_dict()),
        FORMAT_KEY: FORMAT_VERSION,
        "format": "pt",
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(out_path.parent, out_path.name)
    mode = tmp.stat().st_mode  # 0o666 minus the umask
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)  # safetensors may replace the file with its own 0600 temp file
        digest = sha256_file(tmp)
        if force:
            os.replace(tmp, out_path)  # atomic on POSIX: readers see the old file or the new one
        else:
            _publish_new(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _publish_new(tmp: Path, out_path: Path) -> None:
    """Move `tmp` to `out_path` only if nothing is there, even if a file appeared meanwhile."""
    try:
        os.link(tmp, out_path)  # atomic create-if-absent
    except FileExistsError:
        raise FileExistsError(
            f"{out_path} appeared while converting; pass --force (--overwrite) to overwrite it"
        ) from None
    except OSError:  # no hard links on this filesystem: check, then rename
        if out_path.exists():
            raise FileExistsError(f"{out_path} already exists; pass --force to overwrite") from None
        os.replace(tmp, out_path)


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
