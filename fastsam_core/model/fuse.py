"""Conv+BatchNorm fusion for inference (spec §1.10)."""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from fastsam_core.model.layers import ConvBnAct

FuseFormula = Literal["v8.0", "current"]


@torch.no_grad()
def _fused_weights(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, formula: FuseFormula
) -> tuple[torch.Tensor, torch.Tensor]:
    w = conv.weight.float()  # (O, I, k, k)
    mean, var = bn.running_mean.float(), bn.running_var.float()  # type: ignore[union-attr]
    gamma, beta = bn.weight.float(), bn.bias.float()
    if formula == "v8.0":
        # 8.0.120: W' = diag(gamma / sqrt(eps + var)) @ W,
        # b' = beta - gamma * mean / sqrt(var + eps).
        scale = gamma.div(torch.sqrt(bn.eps + var))
        weight = torch.mm(torch.diag(scale), w.view(w.shape[0], -1)).view(w.shape)
        bias = beta - gamma.mul(mean).div(torch.sqrt(var + bn.eps))
    elif formula == "current":
        # Current ultralytics: torch.nn.utils.fusion.fuse_conv_bn_weights (rsqrt form).
        r = torch.rsqrt(var + bn.eps)
        weight = w * (gamma * r).reshape(-1, 1, 1, 1)
        bias = (0 - mean) * r * gamma + beta
    else:
        raise ValueError(f"unknown fuse formula {formula!r}; expected 'v8.0' or 'current'")
    return weight, bias


@torch.no_grad()
def fuse_conv_bn(model: nn.Module, formula: FuseFormula = "v8.0") -> nn.Module:
    """Return a copy of `model` whose ConvBnAct blocks have BatchNorm folded into the conv.

    Args:
        model: any module containing ConvBnAct blocks (left untouched).
        formula: "v8.0" (official FastSAM, ultralytics 8.0.120) or "current" (ultralytics 8.4);
            they agree to within an ulp.
    Returns:
        A new module in eval mode with fp32 fused convs (BatchNorm replaced by Identity).
    """
    fused = copy.deepcopy(model).float().eval()
    for module in fused.modules():
        if isinstance(module, ConvBnAct) and isinstance(module.bn, nn.BatchNorm2d):
            weight, bias = _fused_weights(module.conv, module.bn, formula)
            conv = module.conv
            new_conv = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,  # type: ignore[arg-type]
                conv.stride,  # type: ignore[arg-type]
                conv.padding,  # type: ignore[arg-type]
                bias=True,
            ).to(weight.device)
            new_conv.weight.copy_(weight)
            new_conv.bias.copy_(bias)  # type: ignore[union-attr]
            new_conv.requires_grad_(False)
            module.conv = new_conv
            module.bn = nn.Identity()
    return fused
