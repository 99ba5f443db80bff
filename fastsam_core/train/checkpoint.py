"""Training checkpoints: safetensors weights + a small JSON state; optimizer state in its own file.

Layout of a checkpoint folder:
    model.safetensors   training weights (header holds the YoloSegConfig, loadable by `load_model`)
    ema.safetensors     EMA weights (same format), when EMA is on
    optimizer.pt        optimizer (+ AMP scaler) state, `torch.save` of tensors and plain containers
    state.json          step, epoch, EMA update count, the training config, losses
Files are written to a temporary folder and renamed, so an interrupted save never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig
from fastsam_core.weights import CONFIG_KEY


def save_weights(
    model: nn.Module, cfg: YoloSegConfig, path: str | Path, extra: dict[str, str] | None = None
) -> None:
    """Write a model's state dict as safetensors with its config in the header."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: json.dumps(cfg.to_dict()), **(extra or {})}
    save_file(state, str(path), metadata=metadata)


def load_weights_into(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors state dict into `model`, strictly."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    model.load_state_dict(state, strict=True)


def save_checkpoint(
    folder: str | Path,
    model: nn.Module,
    cfg: YoloSegConfig,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    ema: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Atomically replace `folder` with a checkpoint of the current training state."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(model, cfg, tmp / "model.safetensors")
    if ema is not None:
        save_weights(ema, cfg, tmp / "ema.safetensors")
    opt_state: dict[str, Any] = {"optimizer": optimizer.state_dict()}
    if scaler is not None:
        opt_state["scaler"] = scaler.state_dict()
    torch.save(opt_state, tmp / "optimizer.pt")
    with open(tmp / "state.json", "w") as f:
        json.dump(state, f, indent=1)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def load_checkpoint(
    folder: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any]:
    """Restore weights, EMA, optimizer and scaler from `folder`; returns the JSON state."""
    folder = Path(folder)
    needed = ["model.safetensors", "optimizer.pt", "state.json"] + (
        ["ema.safetensors"] if ema is not None else []
    )
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {folder} is incomplete: missing {missing}")
    load_weights_into(model, folder / "model.safetensors")
    if ema is not None:
        load_weights_into(ema, folder / "ema.safetensors")
    from fastsam_weights_convert.unpickle import load_pickled  # the allow-list loader

    opt_state = load_pickled(folder / "optimizer.pt")
    optimizer.load_state_dict(opt_state["optimizer"])
    if scaler is not None and "scaler" in opt_state:
        scaler.load_state_dict(opt_state["scaler"])
    with open(folder / "state.json") as f:
        return json.load(f)
