"""Optimizer parameter groups and the learning-rate schedule (warm-up, then cosine/linear decay)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


def build_optimizer(
    model: nn.Module, name: Literal["adamw", "sgd"], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) with three groups: conv/linear weights (decayed), norm weights and
    biases (not decayed). Frozen parameters (requires_grad False) are left out.

    Group order is fixed (decayed weights, norm weights, biases) so warm-up can treat biases apart.
    """
    decayed, norms, biases = [], [], []
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if pname == "bias":
                biases.append(param)
            elif isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm)):
                norms.append(param)
            else:
                decayed.append(param)
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": norms, "weight_decay": 0.0},
        {"params": biases, "weight_decay": 0.0},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, weight_decay=0.0)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {name!r}")


@dataclass(frozen=True)
class LRSchedule:
    """Per-step learning rate and momentum.

    After `warmup_steps` of linear warm-up (biases from `warmup_bias_lr` down, other groups from 0
    up; momentum from `warmup_momentum` up) the rate decays from `lr` to `lr * final_fraction` at
    `total_steps`, with a cosine or a linear shape.
    """

    lr: float
    total_steps: int
    warmup_steps: int = 0
    final_fraction: float = 0.01
    shape: Literal["cosine", "linear"] = "cosine"
    momentum: float = 0.937
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1

    def factor(self, step: int) -> float:
        t = min(step / max(self.total_steps, 1), 1.0)
        if self.shape == "cosine":
            return ((1 - math.cos(math.pi * t)) / 2) * (self.final_fraction - 1) + 1
        if self.shape == "linear":
            return (1 - t) * (1 - self.final_fraction) + self.final_fraction
        raise ValueError(f"schedule shape must be 'cosine' or 'linear', got {self.shape!r}")

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr (and momentum / beta1) for `step`; returns the main lr."""
        target = self.lr * self.factor(step)
        momentum = self.momentum
        warm = step < self.warmup_steps
        if warm:
            w = step / self.warmup_steps
            momentum = self.warmup_momentum + w * (self.momentum - self.warmup_momentum)
        for k, group in enumerate(optimizer.param_groups):
            if warm:
                start = self.warmup_bias_lr if k == 2 else 0.0
                group["lr"] = start + (step / self.warmup_steps) * (target - start)
            else:
                group["lr"] = target
            if "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = momentum
        return optimizer.param_groups[0]["lr"]
