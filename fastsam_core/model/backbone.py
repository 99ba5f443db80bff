"""CSPDarknet backbone of YOLOv8 (spec §1.2, layers 0-9)."""

from __future__ import annotations

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig
from fastsam_core.model.layers import SPPF, C2f, ConvBnAct


class CSPStage(nn.Module):
    """A stride-2 ConvBnAct followed by a C2f with residual bottlenecks."""

    def __init__(self, in_ch: int, out_ch: int, depth: int, bn_eps: float) -> None:
        super().__init__()
        self.downsample = ConvBnAct(in_ch, out_ch, 3, stride=2, bn_eps=bn_eps)
        self.c2f = C2f(out_ch, out_ch, depth, shortcut=True, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2f(self.downsample(x))


class CSPDarknet(nn.Module):
    """Stem + 4 CSP stages (P2..P5) + SPPF; returns the P3, P4, P5 features."""

    def __init__(self, cfg: YoloSegConfig) -> None:
        super().__init__()
        stem, c2, c3, c4, c5 = cfg.channels
        eps = cfg.bn_eps
        self.stem = ConvBnAct(3, stem, 3, stride=2, bn_eps=eps)
        self.stages = nn.ModuleList(
            [
                CSPStage(stem, c2, cfg.depths[0], eps),  # P2/4
                CSPStage(c2, c3, cfg.depths[1], eps),  # P3/8
                CSPStage(c3, c4, cfg.depths[2], eps),  # P4/16
                CSPStage(c4, c5, cfg.depths[3], eps),  # P5/32
            ]
        )
        self.sppf = SPPF(c5, c5, bn_eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features at strides 8, 16 and 32.

        x: (B, 3, H, W) -> p3 (B, c3, H/8, W/8), p4 (B, c4, H/16, W/16), p5 (B, c5, H/32, W/32).
        """
        x = self.stem(x)
        p2 = self.stages[0](x)
        p3 = self.stages[1](p2)
        p4 = self.stages[2](p3)
        p5 = self.sppf(self.stages[3](p4))
        return p3, p4, p5
