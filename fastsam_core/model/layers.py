"""Blocks shared by the backbone, neck and head: ConvBnAct, Bottleneck, C2f, SPPF (spec §1.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBnAct(nn.Module):
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> SiLU; YOLOv8's `Conv`.

    After `fuse_conv_bn` the BatchNorm becomes an Identity and the conv carries a bias.
    Without autograd (inference) the SiLU runs in place on the fresh conv/BN output: the same
    values, but no new activation tensor per layer (~8 % of a CPU forward at 1024, what the oracle
    also does); with autograd it stays out of place, as its backward needs the input.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, bn_eps: float = 1e-3
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))  # a new tensor: never the caller's x
        if torch.is_grad_enabled():
            return self.act(y)
        return F.silu(y, inplace=True)


class Bottleneck(nn.Module):
    """Two 3x3 ConvBnAct with an optional residual (used only inside C2f)."""

    def __init__(self, channels: int, shortcut: bool, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(channels, channels, 3, bn_eps=bn_eps)
        self.conv2 = ConvBnAct(channels, channels, 3, bn_eps=bn_eps)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class C2f(nn.Module):
    """CSP bottleneck with two convs, 'faster' variant: split, chain bottlenecks, concat all.

    The 1x1 `expand` conv output is split into two halves; each bottleneck consumes the newest
    tensor and every intermediate is concatenated before the 1x1 `project` conv.
    """

    def __init__(
        self, in_ch: int, out_ch: int, depth: int, shortcut: bool, bn_eps: float = 1e-3
    ) -> None:
        super().__init__()
        self.hidden = int(out_ch * 0.5)
        self.expand = ConvBnAct(in_ch, 2 * self.hidden, 1, bn_eps=bn_eps)
        self.blocks = nn.ModuleList(
            Bottleneck(self.hidden, shortcut, bn_eps=bn_eps) for _ in range(depth)
        )
        self.project = ConvBnAct((2 + depth) * self.hidden, out_ch, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.expand(x).chunk(2, dim=1))  # 2 x (B, c, H, W)
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.project(torch.cat(parts, dim=1))  # (B, (2 + depth) * c, H, W) -> (B, out, H, W)


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools concatenated with the input."""

    def __init__(self, in_ch: int, out_ch: int, pool_size: int = 5, bn_eps: float = 1e-3) -> None:
        super().__init__()
        hidden = in_ch // 2
        self.reduce = ConvBnAct(in_ch, hidden, 1, bn_eps=bn_eps)
        self.pool = nn.MaxPool2d(pool_size, stride=1, padding=pool_size // 2)
        self.project = ConvBnAct(4 * hidden, out_ch, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        y3 = self.pool(y2)
        return self.project(torch.cat([x, y1, y2, y3], dim=1))  # (B, 4 * hidden, H, W)
