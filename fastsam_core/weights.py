"""Model files: loading `.safetensors` (converted) or `.pt` (official), writing `.safetensors`.

The one home of our safetensors format (spec §2.5): tensors named like `YoloV8Seg.state_dict()`,
the config as JSON under the header key `CONFIG_KEY`. `save_weights` writes it atomically;
`load_model` / `load_config` read it, checking the header against the config before any module
is built and every value after the cast to fp32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import cast

import torch

from fastsam_core.config import YoloSegConfig
from fastsam_core.export.files import new_temp_file, publish
from fastsam_core.model.fuse import fuse_conv_bn
from fastsam_core.model.yolov8_seg import YoloV8Seg

logger = logging.getLogger(__name__)

CONFIG_KEY = "fastsam_config"  # safetensors header key holding `YoloSegConfig.to_dict()` JSON
FORMAT_KEY = "fastsam_format"
FORMAT_VERSION = "1"
_SUFFIXES = (".pt", ".pth", ".safetensors")


def _read_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError  # bad headers, offsets, dtypes

    return (SafetensorError, OSError, ValueError, RuntimeError, TypeError, MemoryError)


def check_regular_file(path: Path, what: str = "checkpoint") -> int:
    """Size of `path`, refusing missing paths, folders, FIFOs and devices (reading would hang)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except OSError as err:  # symlink loops, permissions
        raise ValueError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path} is a directory; expected a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file (a FIFO, socket or device); refusing it")
    return info.st_size


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_path(path: Path) -> None:
    check_regular_file(path, "model file")
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
    except _read_errors() as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); the file is truncated, corrupt "
            "or not safetensors: re-create it with `fastsam convert IN.pt OUT.safetensors`"
        ) from None
    if CONFIG_KEY not in metadata:
        raise ValueError(
            f"{path} has no {CONFIG_KEY!r} entry in its safetensors header (found keys "
            f"{sorted(metadata)}), so its architecture is unknown; write it with "
            "`fastsam convert IN.pt OUT.safetensors`"
        )
    try:
        return YoloSegConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError, RecursionError) as err:
        raise ValueError(f"{path}: invalid {CONFIG_KEY!r} in the header: {err}") from None


def _convert_pt(path: Path) -> tuple[dict[str, torch.Tensor], YoloSegConfig]:
    try:
        import fastsam_weights_convert
    except ImportError as err:  # pragma: no cover - ships with fastsam-core
        raise ImportError(
            "loading .pt files needs fastsam_weights_convert: pip install fastsam-core"
        ) from err
    state_dict, cfg, _ = fastsam_weights_convert.convert_checkpoint(path)
    return state_dict, cfg


# (shape, kind) of a tensor, kind "float" / "int" / the dtype name for anything else.
TensorSpec = tuple[tuple[int, ...], str]


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "float"
    if dtype.is_complex or dtype == torch.bool:
        return str(dtype).removeprefix("torch.")
    return "int"


def _safetensors_kind(dtype: str) -> str:
    """safetensors dtype names: F16 / BF16 / F32 / F64 / F8_* are floats, I* / U* integers."""
    if dtype.startswith("F") or dtype == "BF16":
        return "float"
    return "int" if dtype.startswith(("I", "U")) else dtype


def _model_specs(cfg: YoloSegConfig) -> dict[str, TensorSpec]:
    with torch.device("meta"):  # shapes only: no memory, whatever size the header asks for
        model = YoloV8Seg(cfg)
    return {k: (tuple(v.shape), _kind(v.dtype)) for k, v in model.state_dict().items()}


def _file_specs(path: Path) -> dict[str, TensorSpec]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {
                k: (
                    tuple(f.get_slice(k).get_shape()),
                    _safetensors_kind(f.get_slice(k).get_dtype()),
                )
                for k in f.keys()  # noqa: SIM118 (safe_open is not a mapping)
            }
    except _read_errors() as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None


def _check_tensors(
    path: Path,
    cfg: YoloSegConfig,
    tensors: dict[str, TensorSpec],
    expected: dict[str, TensorSpec],
) -> None:
    """One ValueError naming every missing, unexpected, mis-shaped and mis-typed tensor."""
    problems = {
        "missing": [k for k in expected if k not in tensors],
        "unexpected": [k for k in tensors if k not in expected],
        "shape mismatches": [
            f"{k}: file {shape}, model {expected[k][0]}"
            for k, (shape, _) in tensors.items()
            if k in expected and shape != expected[k][0]
        ],
        "dtype mismatches": [
            f"{k}: file {kind}, model {expected[k][1]}"
            for k, (_, kind) in tensors.items()
            if k in expected and kind != expected[k][1]
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


def check_finite(tensors: dict[str, torch.Tensor], source: str = "") -> None:
    """Refuse NaN / Inf weights, naming them; an infinite BatchNorm `running_var` only warns.

    A BN channel whose variance overflowed to +inf (fp16 saves) outputs its bias, finite, in
    ultralytics and here, so such files still load; any other non-finite value would spread
    NaN through every mask.
    Raises:
        ValueError: listing the offending tensors (first 10) and how many values are bad.
    """
    bad, warned = [], []
    for key, t in tensors.items():
        if not t.is_floating_point():
            continue
        finite = torch.isfinite(t)
        if bool(finite.all()):
            continue
        if key.endswith("running_var") and bool((finite | (t == float("inf"))).all()):
            warned.append(key)
        else:
            bad.append(f"{key} ({int((~finite).sum())} of {t.numel()})")
    prefix = f"{source}: " if source else ""
    if warned:
        logger.warning(
            "%sBatchNorm running_var is +inf in %s; those channels output their bias",
            prefix,
            ", ".join(warned[:10]),
        )
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ValueError(
            f"{prefix}{len(bad)} tensors hold NaN or Inf values: {shown}; the weights are "
            "corrupt (or training diverged) and would give NaN masks"
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
    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix; unreadable / truncated file; no or invalid config in the
            header; tensors missing, unexpected, mis-shaped, of the wrong dtype or non-finite;
            for `.pt`, everything `fastsam_weights_convert.convert_checkpoint` refuses.
    """
    path = Path(path)
    _check_path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        cfg = _safetensors_config(path)
        # Compare the header with the config before building anything: a forged config must
        # not make us allocate a huge model.
        _check_tensors(path, cfg, _file_specs(path), _model_specs(cfg))
        try:
            state_dict = load_file(str(path))
        except _read_errors() as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
        # fp32 first, then the finite check: float64 values beyond fp32's range become inf.
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
        check_finite(state_dict, str(path))
    else:
        state_dict, cfg = _convert_pt(path)
    try:
        model = YoloV8Seg(cfg)  # sizes already checked against the tensors, so this is bounded
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, MemoryError) as err:
        raise ValueError(f"{path}: the weights do not load into YoloV8Seg ({err})") from None
    model = model.to(device).float().eval().requires_grad_(False)
    if fuse:
        model = cast(YoloV8Seg, fuse_conv_bn(model))
    logger.debug("loaded %s (%s)", path, cfg.scale or "custom")
    return model


# ---------------------------------------------------------------------------------------------
# Writing.


def _check_output(out_path: Path, force: bool, how: str) -> None:
    if out_path.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors, got {out_path.name!r}")
    if out_path.is_dir():
        raise ValueError(f"{out_path} is a directory; give a file name ending in .safetensors")
    if out_path.exists() and not force:
        raise FileExistsError(f"{out_path} already exists; pass {how} to overwrite it")


def _owned_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared ones)."""
    seen: set[int] = set()
    out = {}
    for key, value in state_dict.items():
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def save_weights(
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
        cfg: stored under the header metadata key `CONFIG_KEY`.
        out_path: destination; refused if it exists unless `force`.
        extra_metadata: more string entries for the header (e.g. the source file).
    Returns:
        The sha256 hex digest of the written file.
    Raises:
        FileExistsError: `out_path` exists (also if it appeared while writing) and not `force`.
        ValueError: `out_path` does not end in .safetensors, or is a directory.
        OSError: the file could not be written (disk full, permissions), nothing left behind.
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
    tensors = _owned_tensors(state_dict)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_file(out_path.parent, out_path.name)
    mode = tmp.stat().st_mode  # 0o666 minus the umask
    try:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except Exception as err:  # noqa: BLE001 (safetensors reports ENOSPC as its own errors)
            raise OSError(f"{out_path}: could not write the weights ({err})") from None
        os.chmod(tmp, mode)  # safetensors may replace the file with its own 0600 temp file
        digest = sha256_file(tmp)
        publish(tmp, out_path, overwrite=force)
    finally:
        tmp.unlink(missing_ok=True)
    return digest
