"""Exponential moving average of model weights (released FastSAM weights are the EMA, spec §6)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """Keep `ema = d * ema + (1 - d) * weights` after every optimizer step.

    The decay ramps up as `d = decay * (1 - exp(-updates / tau))` so early, poor weights are
    forgotten quickly. Buffers (BatchNorm statistics) are averaged too; integer buffers are copied.

    Args:
        model: the model being trained (not wrapped in DDP).
        decay: asymptotic decay.
        tau: ramp-up length in updates.
        updates: updates already done (when resuming).
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0
    ) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach().to(value.dtype), alpha=1 - d)
            else:
                value.copy_(source[name])
