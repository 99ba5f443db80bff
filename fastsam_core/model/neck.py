"""PAN-FPN neck (spec §1.2, layers 10-21): top-down, then bottom-up."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastsam_core.config import YoloSegConfig
from fastsam_core.model.layers import C2f, ConvBnAct


class PANNeck(nn.Module):
    """Fuses (p3, p4, p5) into (n3, n4, n5) with the same channels as the backbone outputs."""

    def __init__(self, cfg: YoloSegConfig) -> None:
        super().__init__()
        _, _, c3, c4, c5 = cfg.channels
        n, eps = cfg.neck_depth, cfg.bn_eps
        self.top_down_p4 = C2f(c5 + c4, c4, n, shortcut=False, bn_eps=eps)  # layer 12
        self.top_down_p3 = C2f(c4 + c3, c3, n, shortcut=False, bn_eps=eps)  # layer 15
        self.downsample_p3 = ConvBnAct(c3, c3, 3, stride=2, bn_eps=eps)  # layer 16
        self.bottom_up_p4 = C2f(c3 + c4, c4, n, shortcut=False, bn_eps=eps)  # layer 18
        self.downsample_p4 = ConvBnAct(c4, c4, 3, stride=2, bn_eps=eps)  # layer 19
        self.bottom_up_p5 = C2f(c4 + c5, c5, n, shortcut=False, bn_eps=eps)  # layer 21

    def forward(
        self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        up5 = F.interpolate(p5, scale_factor=2.0, mode="nearest")
        t4 = self.top_down_p4(torch.cat([up5, p4], dim=1))  # (B, c5 + c4, H/16, W/16) -> c4
        up4 = F.interpolate(t4, scale_factor=2.0, mode="nearest")
        n3 = self.top_down_p3(torch.cat([up4, p3], dim=1))  # (B, c4 + c3, H/8, W/8) -> c3
        n4 = self.bottom_up_p4(torch.cat([self.downsample_p3(n3), t4], dim=1))  # c3 + c4 -> c4
        n5 = self.bottom_up_p5(torch.cat([self.downsample_p4(n4), p5], dim=1))  # c4 + c5 -> c5
        return n3, n4, n5
