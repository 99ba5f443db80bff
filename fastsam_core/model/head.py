"""SegmentHead (box/DFL, class and mask-coefficient branches) and Proto (spec §1.4, layer 22)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig
from fastsam_core.model.layers import ConvBnAct


@dataclass
class SegOutput:
    """Raw head tensors, identical in train and eval mode; levels are concatenated P3, P4, P5.

    Attributes:
        box_dist: (B, 4 * R, A) DFL logits, side-major (left, top, right, bottom) x R bins.
        class_logits: (B, num_classes, A) pre-sigmoid class scores.
        mask_coeffs: (B, K, A) raw (linear) mask coefficients.
        protos: (B, K, H/4, W/4) mask prototypes.
        feature_sizes: ((H/8, W/8), (H/16, W/16), (H/32, W/32)); A = sum of Hi * Wi.
    """

    box_dist: torch.Tensor
    class_logits: torch.Tensor
    mask_coeffs: torch.Tensor
    protos: torch.Tensor
    feature_sizes: tuple[tuple[int, int], ...]


class Proto(nn.Module):
    """Mask prototype generator: 3x3 conv, 2x transposed-conv upsample, 3x3 conv, 1x1 to K maps."""

    def __init__(self, in_ch: int, hidden: int, num_protos: int, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(in_ch, hidden, 3, bn_eps=bn_eps)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, 2, 0, bias=True)
        self.conv2 = ConvBnAct(hidden, hidden, 3, bn_eps=bn_eps)
        self.conv3 = ConvBnAct(hidden, num_protos, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H/8, W/8) -> (B, K, H/4, W/4)."""
        return self.conv3(self.conv2(self.upsample(self.conv1(x))))


class DFL(nn.Module):
    """Distribution Focal Loss decode: expectation of a softmax over `reg_max` bins per box side.

    Kept as a fixed 1x1 conv with weights 0..R-1 (no gradient) so the state dict and parameter
    count equal the reference's.
    """

    def __init__(self, reg_max: int) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1)
            )

    def forward(self, box_dist: torch.Tensor) -> torch.Tensor:
        """box_dist: (B, 4 * R, A) logits -> (B, 4, A) distances in grid units, in [0, R - 1]."""
        B, _, A = box_dist.shape
        probs = box_dist.view(B, 4, self.reg_max, A).transpose(2, 1).softmax(1)  # (B, R, 4, A)
        return self.conv(probs).view(B, 4, A)  # (B, 1, 4, A) -> (B, 4, A)


def _branch(in_ch: int, hidden: int, out_ch: int, bn_eps: float) -> nn.Sequential:
    """Two 3x3 ConvBnAct then a plain 1x1 Conv2d with bias (one branch of one level)."""
    return nn.Sequential(
        ConvBnAct(in_ch, hidden, 3, bn_eps=bn_eps),
        ConvBnAct(hidden, hidden, 3, bn_eps=bn_eps),
        nn.Conv2d(hidden, out_ch, 1, bias=True),
    )


class SegmentHead(nn.Module):
    """YOLOv8 Segment head: per-level box (DFL logits), class and mask-coefficient branches.

    DFL (distribution focal loss) represents each box side as a softmax over `reg_max` bins; the
    decode (expectation over bins) is a fixed operation and lives in `fastsam_core.ops.anchors`.
    """

    def __init__(self, cfg: YoloSegConfig) -> None:
        super().__init__()
        eps = cfg.bn_eps
        in_chs = cfg.head_in_channels
        self.reg_max = cfg.reg_max
        self.num_classes = cfg.num_classes
        self.box_branch = nn.ModuleList(
            _branch(c, cfg.box_hidden, 4 * cfg.reg_max, eps) for c in in_chs
        )
        self.class_branch = nn.ModuleList(
            _branch(c, cfg.class_hidden, cfg.num_classes, eps) for c in in_chs
        )
        self.dfl = DFL(cfg.reg_max)
        self.proto = Proto(in_chs[0], cfg.proto_channels, cfg.num_mask_coeffs, bn_eps=eps)
        self.coeff_branch = nn.ModuleList(
            _branch(c, cfg.coeff_hidden, cfg.num_mask_coeffs, eps) for c in in_chs
        )

    def forward(self, n3: torch.Tensor, n4: torch.Tensor, n5: torch.Tensor) -> SegOutput:
        feats = (n3, n4, n5)
        box = [b(f).flatten(2) for b, f in zip(self.box_branch, feats)]  # (B, 4R, Hi*Wi)
        cls = [b(f).flatten(2) for b, f in zip(self.class_branch, feats)]  # (B, nc, Hi*Wi)
        coeff = [b(f).flatten(2) for b, f in zip(self.coeff_branch, feats)]  # (B, K, Hi*Wi)
        return SegOutput(
            box_dist=torch.cat(box, dim=2),  # (B, 4R, A)
            class_logits=torch.cat(cls, dim=2),  # (B, nc, A)
            mask_coeffs=torch.cat(coeff, dim=2),  # (B, K, A)
            protos=self.proto(n3),  # (B, K, H/4, W/4)
            feature_sizes=tuple((f.shape[2], f.shape[3]) for f in feats),
        )

    @torch.no_grad()
    def init_biases(self) -> None:
        """Prior biases for training from scratch (spec §1.6): box 1, class ln(5/nc/(640/s)^2)."""
        for box, cls, stride in zip(self.box_branch, self.class_branch, (8, 16, 32)):
            # the last layer of `_branch` is the 1x1 Conv2d that carries the prior bias
            box_out, cls_out = box[-1], cls[-1]  # type: ignore[index]
            assert isinstance(box_out, nn.Conv2d) and isinstance(cls_out, nn.Conv2d)
            assert box_out.bias is not None and cls_out.bias is not None
            box_out.bias.fill_(1.0)
            cls_out.bias.fill_(
                float(torch.log(torch.tensor(5 / self.num_classes / (640 / stride) ** 2)))
            )
