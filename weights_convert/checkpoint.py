"""Read the pickled model of a loaded ultralytics checkpoint: flat tensors + metadata (spec §2.5 3-4).

Works on the inert objects `unpickle.load_checkpoint` returns; walks `_modules`, `_parameters`
and `_buffers` directly (no module code runs) and checks every value's type on the way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def checkpoint_model(ckpt: dict[str, Any]) -> tuple[nn.Module, str]:
    """The pickled model and the slot it came from: 'ema' when present, else 'model' (spec §2.2)."""
    for slot in ("ema", "model"):
        model = ckpt.get(slot)
        if isinstance(model, nn.Module):
            return model, slot
    raise ValueError(
        f"checkpoint has no pickled model in 'ema' or 'model' (keys: {sorted(map(str, ckpt))})"
    )


def flat_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Persistent parameters and buffers keyed like `state_dict()` ('model.0.conv.weight')."""
    out: dict[str, torch.Tensor] = {}

    def walk(module: Any, prefix: str) -> None:
        if not isinstance(module, nn.Module):
            raise ValueError(  # noqa: TRY004 (bad file content)
                f"checkpoint entry {prefix.rstrip('.') or '<root>'} is a "
                f"{type(module).__name__}, expected an nn.Module"
            )
        skip: set[str] = getattr(module, "_non_persistent_buffers_set", set())
        tensors = list(vars(module).get("_parameters", {}).items())
        tensors += [(k, v) for k, v in vars(module).get("_buffers", {}).items() if k not in skip]
        for name, tensor in tensors:
            if tensor is None:
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(  # noqa: TRY004 (bad file content)
                    f"checkpoint entry {prefix}{name} is a {type(tensor).__name__}, "
                    "expected a tensor"
                )
            out[prefix + name] = tensor.detach()
        for name, child in vars(module).get("_modules", {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.")

    walk(model, "")
    return out


def _bn_eps(model: nn.Module) -> float | None:
    eps = {float(m.eps) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    if len(eps) > 1:
        raise ValueError(
            f"checkpoint BatchNorm layers use different eps values {sorted(eps)}; "
            "expected one value for the whole network"
        )
    return eps.pop() if eps else None


def checkpoint_metadata(ckpt: dict[str, Any], model: nn.Module, slot: str) -> dict[str, Any]:
    """Metadata used to cross-check the inferred config (spec §2.5 step 4); absent keys omitted."""
    attrs = vars(model)
    meta: dict[str, Any] = {"slot": slot}
    yaml = attrs.get("yaml")
    if isinstance(yaml, dict):
        meta.update({k: yaml[k] for k in ("scale", "nc", "reg_max") if k in yaml})
        meta["yaml_file"] = yaml.get("yaml_file")
    names = attrs.get("names")
    if isinstance(names, dict):
        meta["names"] = dict(names)
    elif isinstance(names, (list, tuple)):
        meta["names"] = dict(enumerate(names))
    train_args = ckpt.get("train_args")
    if isinstance(train_args, dict) and "imgsz" in train_args:
        meta["imgsz"] = train_args["imgsz"]
    inner = attrs.get("_modules", {}).get("model")
    if inner is not None:
        head = list(vars(inner).get("_modules", {}).values())[-1]
        head_attrs = vars(head)
        meta["head_type"] = getattr(type(head), "upstream", type(head).__name__)
        meta.update(
            {
                f"head_{k}": head_attrs[k]
                for k in ("nc", "reg_max", "nm", "npr")
                if isinstance(head_attrs.get(k), int)
            }
        )
    meta["bn_eps"] = _bn_eps(model)
    for key in ("version", "date"):
        if isinstance(ckpt.get(key), str):
            meta[key] = ckpt[key]
    return meta
