"""A timm `features_only` model as the backbone part (issue 17): strides 8/16/32 -> (p3, p4, p5).

`YoloSegConfig.backbone = "timm:<name>"` selects it. The timm model is always built with
`pretrained=False` (no hub access); weights come from a local file (`load_backbone_weights`).
Where a timm feature width differs from the neck's width (`cfg.channels[2:]`), a 1x1 ConvBnAct
adapts it, so the PAN neck and the head are the same modules as with CSPDarknet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastsam_core.config import TIMM_PREFIX, YoloSegConfig
from fastsam_core.model.layers import ConvBnAct

FEATURE_STRIDES = (8, 16, 32)


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as err:
        raise ImportError(
            "timm backbones need timm: pip install 'timm>=0.9' (or fastsam-core[clip])"
        ) from err
    return timm


def timm_model_name(cfg: YoloSegConfig) -> str:
    """ "timm:resnet18" -> "resnet18"."""
    if not cfg.backbone.startswith(TIMM_PREFIX):
        raise ValueError(f"not a timm backbone: {cfg.backbone!r}; expected 'timm:<name>'")
    return cfg.backbone[len(TIMM_PREFIX) :]


def stride_out_indices(name: str) -> tuple[int, int, int]:
    """Indices into timm's `feature_info` of the deepest feature at strides 8, 16 and 32.

    Probed on the meta device (no memory, no compute).
    """
    timm = _import_timm()
    try:
        with torch.device("meta"):
            probe = timm.create_model(name, pretrained=False)
    except RuntimeError as err:  # timm: "Unknown model (...)"
        raise ValueError(f"timm backbone {name!r}: {err}") from None
    reductions = [int(info["reduction"]) for info in getattr(probe, "feature_info", [])]
    indices = []
    for stride in FEATURE_STRIDES:
        found = [i for i, r in enumerate(reductions) if r == stride]
        if not found:
            raise ValueError(
                f"timm backbone {name!r} has no feature at stride {stride} (its feature "
                f"reductions are {reductions}); pick a CNN with stride 8/16/32 stages, e.g. "
                "resnet18"
            )
        indices.append(found[-1])  # the deepest block at that stride
    return indices[0], indices[1], indices[2]


class TimmBackbone(nn.Module):
    """timm features_only model + 1x1 channel adapters; returns the P3, P4, P5 features.

    Attributes:
        body: the timm feature extractor (`features_only=True`, `out_indices` at strides 8/16/32).
        adapters: per level a ConvBnAct (timm width -> neck width) or Identity (widths equal).
    """

    def __init__(self, cfg: YoloSegConfig) -> None:
        super().__init__()
        timm = _import_timm()
        name = timm_model_name(cfg)
        self.timm_name = name  # e.g. "resnet18", for messages
        self.body = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=stride_out_indices(name)
        )
        widths = self.body.feature_info.channels()  # timm widths at strides 8, 16, 32
        self.adapters = nn.ModuleList(
            nn.Identity() if w == c else ConvBnAct(w, c, 1, bn_eps=cfg.bn_eps)
            for w, c in zip(widths, cfg.head_in_channels)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, 3, H, W) -> p3 (B, c3, H/8, W/8), p4 (B, c4, H/16, W/16), p5 (B, c5, H/32, W/32).

        c3..c5 are `cfg.channels[2:]` (after the adapters), whatever the timm widths.
        """
        f3, f4, f5 = self.body(x)  # timm widths
        return self.adapters[0](f3), self.adapters[1](f4), self.adapters[2](f5)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in (".pt", ".pth", ".bin"):
        raise ValueError(
            f"backbone weights {path.name!r}: expected .safetensors, .pt, .pth or .bin"
        )
    from fastsam_weights_convert.unpickle import load_pickled  # the allow-list loader

    data = load_pickled(path)  # tensors and containers only; nothing in the file runs
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (a timm model checkpoint)")
    return data


def _source_key(key: str, source: dict[str, torch.Tensor]) -> str | None:
    """Key of the full timm model for a features_only key: timm flattens Sequential children,
    so `stages_0.blocks.0.conv.weight` is `stages.0.blocks.0.conv.weight` in the full model."""
    if key in source:
        return key
    first, _, rest = key.partition(".")
    for i, char in enumerate(first):
        if char == "_":
            candidate = f"{first[:i]}.{first[i + 1 :]}" + (f".{rest}" if rest else "")
            if candidate in source:
                return candidate
    return None


def load_backbone_weights(backbone: TimmBackbone, path: str | Path) -> list[str]:
    """Load a local timm checkpoint (the full model's state dict) into `backbone.body`.

    Every tensor of the feature extractor must be in the file with its shape; the file's other
    tensors (the classifier) are ignored. Adapters keep their initialisation.
    Returns:
        The names of the file's tensors that were not used (e.g. ["fc.bias", "fc.weight"]).
    Raises:
        FileNotFoundError: no such file. ValueError: wrong format, missing or mis-shaped tensors.
    """
    path = Path(path)
    source = _read_state_dict(path)
    own = backbone.body.state_dict()
    mapped, missing, mismatched = {}, [], []
    for key, value in own.items():
        src = _source_key(key, source)
        if src is None:
            missing.append(key)
        elif tuple(source[src].shape) != tuple(value.shape):
            mismatched.append(f"{src}: file {tuple(source[src].shape)}, model {tuple(value.shape)}")
        else:
            mapped[key] = source[src]
    if missing or mismatched:
        shown = (missing + mismatched)[:8]
        raise ValueError(
            f"{path}: {len(missing)} missing and {len(mismatched)} mis-shaped backbone tensors "
            f"(first: {shown}); is it a checkpoint of timm's {backbone.timm_name!r}?"
        )
    used = {_source_key(k, source) for k in own}
    unused = sorted(k for k in source if k not in used)
    # Tensors of modules the feature extractor drops (the classifier) are expected; leftovers
    # inside the modules it keeps mean a different model (e.g. resnet34 for resnet18).
    kept_modules = {str(k).split(".")[0] for k in used}
    foreign = [k for k in unused if k.split(".")[0] in kept_modules]
    if foreign:
        raise ValueError(
            f"{path}: {len(foreign)} tensors the backbone does not have (first: {foreign[:4]}); "
            f"is it a checkpoint of timm's {backbone.timm_name!r}?"
        )
    backbone.body.load_state_dict(mapped, strict=True)
    return unused
