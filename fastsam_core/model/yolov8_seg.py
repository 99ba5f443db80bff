"""YoloV8Seg = backbone (CSPDarknet or timm) + PANNeck + SegmentHead; raw tensors out."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn

from fastsam_core.config import DEFAULT_BACKBONE, FASTSAM_S, FASTSAM_X, YoloSegConfig
from fastsam_core.model.backbone import CSPDarknet
from fastsam_core.model.capture import capture_features
from fastsam_core.model.head import SegmentHead, SegOutput
from fastsam_core.model.neck import PANNeck


class YoloV8Seg(nn.Module):
    """The YOLOv8-seg network used by FastSAM.

    Args:
        cfg: a resolved variant (see `fastsam_core.config`).
    """

    def __init__(self, cfg: YoloSegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        self.neck = PANNeck(cfg)
        self.head = SegmentHead(cfg)

    def forward(self, images: torch.Tensor) -> SegOutput:
        """images: (B, 3, H, W) float RGB in [0, 1], H and W multiples of 32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[2] % 32 or images.shape[3] % 32:
            raise ValueError(
                f"image height and width must be multiples of 32, got {tuple(images.shape[2:])}; "
                "letterbox the input first (fastsam_core.ops.letterbox)"
            )
        p3, p4, p5 = self.backbone(images)
        n3, n4, n5 = self.neck(p3, p4, p5)
        return self.head(n3, n4, n5)

    def capture(self, *names: str) -> AbstractContextManager[dict[str, torch.Tensor]]:
        """Named intermediate tensors of the forward passes run inside a `with` block.

        Example:
            >>> with model.capture("backbone.p5", "neck.n3", "head.protos") as feats:
            ...     model(x)
            >>> feats["neck.n3"].shape  # (B, c3, H/8, W/8)

        Names: `fastsam_core.model.capture.FEATURES` (also `fastsam info MODEL --features`).
        """
        return capture_features(self, names)


def build_backbone(cfg: YoloSegConfig) -> nn.Module:
    """The backbone part named by `cfg.backbone`: CSPDarknet, or a timm model ("timm:<name>")."""
    if cfg.backbone == DEFAULT_BACKBONE:
        return CSPDarknet(cfg)
    from fastsam_core.model.timm_backbone import TimmBackbone  # timm is optional

    return TimmBackbone(cfg)


def build_model(cfg: YoloSegConfig) -> YoloV8Seg:
    """A randomly initialised YoloV8Seg with the training-from-scratch bias priors."""
    model = YoloV8Seg(cfg)
    model.head.init_biases()
    return model


def fastsam_s() -> YoloV8Seg:
    """FastSAM-s architecture (YOLOv8s-seg, 1 class, reg_max 16), random weights."""
    return build_model(FASTSAM_S)


def fastsam_x() -> YoloV8Seg:
    """FastSAM-x architecture (YOLOv8x-seg, 1 class, reg_max 26), random weights."""
    return build_model(FASTSAM_X)


MODEL_REGISTRY = {"fastsam-s": fastsam_s, "fastsam-x": fastsam_x}
