"""Read the pickled model of a loaded ultralytics checkpoint: flat tensors + metadata (§2.5 3-4).

Works on the inert objects `unpickle.load_checkpoint` returns; walks `_modules`, `_parameters`
and `_buffers` directly (no module code runs) and checks every value's type on the way.
Layouts (`checkpoint_source`): the released dict (model in 'model'), a trainer's last.pt (model
None, EMA copy in 'ema'), a bare pickled model, and plain state dicts with ultralytics key names
('model.N.*'), bare or under 'model' / 'ema' / 'state_dict'.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

_MODEL_SLOTS = ("ema", "model")
_STATE_DICT_SLOTS = ("ema", "model", "state_dict", "model_state_dict")
_FIX = "convert an official ultralytics/FastSAM .pt checkpoint (e.g. FastSAM-x.pt) instead"
_MAX_DEPTH = 32  # YOLOv8 nests 6 deep (model.22.cv2.0.0.conv); deeper means a forged graph
_MAX_MODULES = 100_000  # FastSAM-x has ~400 modules; a DAG of shared modules must not explode
_MAX_NAMES = 100_000  # class names (LVIS has 1203)
_MAX_TEXT = 256  # characters of a metadata string (class name, version, yaml file)


def _short(obj: Any, limit: int = 60) -> str:
    """A bounded description of untrusted content: strings and ints shown, else the type."""
    if isinstance(obj, str):
        return repr(obj[:limit]) + ("..." if len(obj) > limit else "")
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) < 10**18:
        return str(obj)
    return f"<{type(obj).__name__}>"


def _text(value: Any) -> str | None:
    """A flat, bounded metadata string, or None."""
    return value if isinstance(value, str) and len(value) <= _MAX_TEXT else None


def _small_int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31
    return value if ok else None


def is_state_dict(obj: Any) -> bool:
    """A non-empty dict of str -> tensor."""
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def normalize_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ultralytics names ('model.N.*') for state dicts saved from a DDP wrapper ('module.')
    or from the inner `nn.Sequential` ('N.*')."""
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if all(re.match(r"\d+\.", k) for k in state_dict):
        state_dict = {f"model.{k}": v for k, v in state_dict.items()}
    return state_dict


def _describe_state_dict(state_dict: dict[str, torch.Tensor]) -> str:
    first = next(iter(state_dict))[:80]
    if first.startswith(("backbone.", "neck.", "head.")):
        hint = (
            "these are fastsam_core YoloV8Seg tensors without a config; write them with "
            "fastsam_weights_convert.save_converted(state_dict, cfg, 'model.safetensors')"
        )
    else:
        hint = (
            "not an official ultralytics checkpoint: expected YOLOv8-seg keys such as "
            f"'model.0.conv.weight'; {_FIX}"
        )
    return f"a plain state dict ({len(state_dict)} tensors, first key {first!r}), {hint}"


def checkpoint_source(ckpt: Any) -> tuple[nn.Module | dict[str, torch.Tensor], str]:
    """The model (pickled module or ultralytics-named state dict) and where it was found.

    Returns:
        (model, slot): slot is 'ema' / 'model' / 'state_dict' / 'model_state_dict' for entries
        of the checkpoint dict, '<root>' for a bare model or state dict. The EMA wins when both
        slots hold a model (spec §2.2: `ckpt.get('ema') or ckpt['model']`).
    Raises:
        ValueError: no usable model, saying what the file holds instead.
    """
    if isinstance(ckpt, nn.Module):
        return ckpt, "<root>"
    if is_state_dict(ckpt):
        state_dict = normalize_keys(ckpt)
        if "model.0.conv.weight" in state_dict:
            return state_dict, "<root>"
        raise ValueError(f"holds {_describe_state_dict(ckpt)}")
    if not isinstance(ckpt, dict):  # bad file content, hence ValueError
        raise ValueError(  # noqa: TRY004
            f"holds a {type(ckpt).__name__}, expected the dict of an ultralytics checkpoint; {_FIX}"
        )
    for slot in _MODEL_SLOTS:
        if isinstance(ckpt.get(slot), nn.Module):
            return ckpt[slot], slot
    for slot in _STATE_DICT_SLOTS:
        if is_state_dict(ckpt.get(slot)):
            state_dict = normalize_keys(ckpt[slot])
            if "model.0.conv.weight" in state_dict:
                return state_dict, slot
            raise ValueError(f"holds under {slot!r} {_describe_state_dict(ckpt[slot])}")
    slots = {slot: type(ckpt.get(slot)).__name__ for slot in _STATE_DICT_SLOTS if slot in ckpt}
    keys = sorted(_short(k, 30) for k in list(ckpt)[:12])
    raise ValueError(
        f"is a dict with keys {keys} but neither 'ema' nor 'model' holds a "
        f"pickled model or state dict (found {slots or 'no such keys'}); {_FIX}"
    )


def checkpoint_model(ckpt: dict[str, Any]) -> tuple[nn.Module, str]:
    """The pickled model and the slot it came from: 'ema' when present, else 'model' (spec §2.2)."""
    for slot in _MODEL_SLOTS:
        model = ckpt.get(slot)
        if isinstance(model, nn.Module):
            return model, slot
    keys = sorted(_short(k, 30) for k in list(ckpt)[:12])
    raise ValueError(f"checkpoint has no pickled model in 'ema' or 'model' (keys: {keys})")


def flat_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Persistent parameters and buffers keyed like `state_dict()` ('model.0.conv.weight')."""
    out: dict[str, torch.Tensor] = {}
    ancestors: set[int] = set()  # shared modules are fine (8.0.x shares one SiLU), cycles are not
    visits = [0]

    def entries(module: Any, attr: str, where: str) -> dict:
        value = vars(module).get(attr, {})
        if not isinstance(value, dict):
            raise ValueError(  # noqa: TRY004 (bad file content)
                f"checkpoint entry {where}{attr} is a {type(value).__name__}, expected a dict"
            )
        return value

    def walk(module: Any, prefix: str, depth: int) -> None:
        where = prefix.rstrip(".") or "<root>"
        if not isinstance(module, nn.Module):
            raise ValueError(  # noqa: TRY004 (bad file content)
                f"checkpoint entry {where} is a {type(module).__name__}, expected an nn.Module"
            )
        if id(module) in ancestors or depth > _MAX_DEPTH:  # forged graphs must not recurse forever
            raise ValueError(
                f"checkpoint entry {where} contains itself or nests deeper than {_MAX_DEPTH}; "
                "the module graph is not a YOLO network"
            )
        visits[0] += 1
        if visits[0] > _MAX_MODULES:
            raise ValueError(
                f"checkpoint module graph has more than {_MAX_MODULES} module visits (shared "
                "submodules nested many times); not a YOLO network"
            )
        ancestors.add(id(module))
        skip = vars(module).get("_non_persistent_buffers_set", set())
        skip = skip if isinstance(skip, set) else set()
        tensors = list(entries(module, "_parameters", prefix).items())
        tensors += [(k, v) for k, v in entries(module, "_buffers", prefix).items() if k not in skip]
        for name, tensor in tensors:
            if tensor is None:
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(  # noqa: TRY004 (bad file content)
                    f"checkpoint entry {prefix}{name} is a {type(tensor).__name__}, "
                    "expected a tensor"
                )
            out[f"{prefix}{name}"] = tensor.detach()
        for name, child in entries(module, "_modules", prefix).items():
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)
        ancestors.discard(id(module))

    walk(model, "", 0)
    return out


def _bn_eps(model: nn.Module) -> float | None:
    eps = {float(m.eps) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    if len(eps) > 1:
        raise ValueError(
            f"checkpoint BatchNorm layers use different eps values {sorted(eps)}; "
            "expected one value for the whole network"
        )
    return eps.pop() if eps else None


def _type_name(obj: Any) -> str:
    """'ultralytics.nn.modules.head.Segment' for stubs, the torch class path otherwise."""
    cls = type(obj)
    return getattr(cls, "upstream", f"{cls.__module__}.{cls.__qualname__}")


def checkpoint_metadata(ckpt: Any, model: nn.Module | None, slot: str) -> dict[str, Any]:
    """Metadata used to cross-check the inferred config (spec §2.5 step 4); absent keys omitted.

    `model` is None for state-dict layouts: only the checkpoint dict's own entries are read.
    """
    meta: dict[str, Any] = {"slot": slot}
    ckpt = ckpt if isinstance(ckpt, dict) else {}
    if model is not None:
        attrs = vars(model)
        meta["model_type"] = _type_name(model)
        yaml = attrs.get("yaml")
        if isinstance(yaml, dict):  # only flat, bounded values: they end up in error messages
            meta.update({k: _text(yaml[k]) for k in ("scale",) if k in yaml})
            meta.update({k: _small_int(yaml[k]) for k in ("nc", "reg_max") if k in yaml})
            meta["yaml_file"] = _text(yaml.get("yaml_file"))
        names = _class_names(attrs.get("names"))
        if names is not None:
            meta["names"] = names
        inner = attrs.get("_modules", {}).get("model")
        if isinstance(inner, nn.Module) and vars(inner).get("_modules"):
            layers = list(vars(inner)["_modules"].values())[:1000]
            meta["layer_types"] = [_type_name(m).rsplit(".", 1)[-1][:_MAX_TEXT] for m in layers]
            head_attrs = vars(layers[-1])
            meta["head_type"] = _type_name(layers[-1])[:_MAX_TEXT]
            meta.update(
                {
                    f"head_{k}": head_attrs[k]
                    for k in ("nc", "reg_max", "nm", "npr")
                    if _small_int(head_attrs.get(k)) is not None
                }
            )
        meta["bn_eps"] = _bn_eps(model)
    train_args = ckpt.get("train_args")
    if isinstance(train_args, dict):
        imgsz: Any = train_args.get("imgsz")  # untrusted pickle content
        if _small_int(imgsz) is not None:
            meta["imgsz"] = imgsz
        elif (
            type(imgsz) in (list, tuple)
            and 1 <= len(imgsz) <= 2
            and all(_small_int(v) is not None for v in imgsz)
        ):
            meta["imgsz"] = list(imgsz)
        if _text(train_args.get("task")):
            meta["task"] = train_args["task"]
    for key in ("version", "date"):
        if _text(ckpt.get(key)):
            meta[key] = ckpt[key]
    return meta


def _class_names(names: Any) -> dict[int, str] | None:
    """`names` as {int: str} when it is a flat, bounded list or dict of strings, else None."""
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names)) if len(names) <= _MAX_NAMES else None
    if not isinstance(names, dict) or len(names) > _MAX_NAMES:
        return None
    out: dict[int, str] = {}
    for k, v in names.items():
        if type(k) is not int or not isinstance(v, (str, int, float)) or isinstance(v, bool):
            return None
        text = v if isinstance(v, str) else str(v)
        if len(text) > _MAX_TEXT:
            return None
        out[k] = text
    return out
