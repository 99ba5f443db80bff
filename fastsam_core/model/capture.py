"""Named intermediate tensors of one forward pass: `with model.capture("neck.n3") as feats:`.

Names are part-level and stable (`FEATURES`), never module paths: the hooks sit on the three
parts `backbone`, `neck` and `head` and pick their named outputs, so a researcher's backbone swap
or a student's question ("what does the neck hand the head?") needs no knowledge of submodules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from fastsam_core.model.head import SegOutput

# name -> (part, which output, what it is). Shapes for an input (B, 3, H, W); c3..c5 = channels[2:]
# (CSPDarknet: p5 after SPPF; timm backbones: after the channel adapters).
FEATURES: dict[str, tuple[str, int | str, str]] = {
    "backbone.p3": ("backbone", 0, "(B, c3, H/8, W/8) backbone feature, stride 8"),
    "backbone.p4": ("backbone", 1, "(B, c4, H/16, W/16) backbone feature, stride 16"),
    "backbone.p5": ("backbone", 2, "(B, c5, H/32, W/32) backbone feature, stride 32"),
    "neck.n3": ("neck", 0, "(B, c3, H/8, W/8) PAN output, stride 8"),
    "neck.n4": ("neck", 1, "(B, c4, H/16, W/16) PAN output, stride 16"),
    "neck.n5": ("neck", 2, "(B, c5, H/32, W/32) PAN output, stride 32"),
    "head.box_dist": ("head", "box_dist", "(B, 4R, A) DFL logits, A = sum of Hi*Wi"),
    "head.class_logits": ("head", "class_logits", "(B, nc, A) pre-sigmoid class scores"),
    "head.mask_coeffs": ("head", "mask_coeffs", "(B, K, A) mask coefficients per anchor"),
    "head.protos": ("head", "protos", "(B, K, H/4, W/4) mask prototypes"),
}


def _pick(output: Any, which: int | str) -> torch.Tensor:
    if isinstance(which, int):  # backbone / neck return (level 3, level 4, level 5)
        return output[which]
    assert isinstance(output, SegOutput)
    return getattr(output, which)


def capture_features(
    model: nn.Module, names: tuple[str, ...]
) -> AbstractContextManager[dict[str, torch.Tensor]]:
    """Fill a dict with the named tensors of every forward run inside the `with` block.

    Args:
        model: a YoloV8Seg (any module with `backbone`, `neck` and `head` parts).
        names: keys of `FEATURES`, e.g. ("backbone.p5", "neck.n3", "head.protos").
    Returns:
        A context manager yielding a dict, empty until the model runs; each forward overwrites
        it with that pass's tensors (the tensors themselves, not copies: gradients flow through
        them in training mode). The hooks are removed when the block exits.
    Raises:
        ValueError: an unknown name (the message lists the valid ones), raised at the call.
    """
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown feature names {unknown}; expected some of {list(FEATURES)}")
    return _hooked(model, tuple(dict.fromkeys(names)))  # de-duplicated, order kept


@contextmanager
def _hooked(model: nn.Module, names: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
    feats: dict[str, torch.Tensor] = {}
    by_part: dict[str, list[str]] = {}
    for name in names:
        by_part.setdefault(FEATURES[name][0], []).append(name)

    def hook_for(wanted: list[str]) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            for name in wanted:
                feats[name] = _pick(output, FEATURES[name][1])

        return hook

    handles = [
        getattr(model, part).register_forward_hook(hook_for(wanted))
        for part, wanted in by_part.items()
    ]
    try:
        yield feats
    finally:
        for handle in handles:
            handle.remove()
