"""YOLOv8-seg training loss: CIoU + DFL box loss, BCE class loss, prototype mask loss (spec §6).

Defaults reproduce ultralytics 8.0.120 as used by FastSAM's training code (overlap_mask False,
gains box 7.5 / cls 0.5 / dfl 1.5). Two switches select the 8.4.190 behaviour instead:
`seg_normalization="per_anchor"` and `min_box_side=16` (see `TaskAlignedAssigner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fastsam_core.model.head import SegOutput
from fastsam_core.ops.anchors import dist2bbox, make_anchors
from fastsam_core.train.assigner import Assignment, TaskAlignedAssigner
from fastsam_core.train.ciou import complete_iou

LOSS_NAMES = ("box_loss", "seg_loss", "cls_loss", "dfl_loss")


@dataclass
class SegTargets:
    """Ground truth of one batch, instances of all images stacked.

    Attributes:
        batch_idx: (N,) int64 image index of each instance, in [0, B).
        classes: (N,) int64 class ids in [0, num_classes).
        boxes: (N, 4) float xyxy in network-input pixels.
        masks: (N, Hm, Wm) float/uint8 {0, 1} instance masks, normally at the prototype
            resolution (H/4, W/4); other sizes are nearest-resized to it.
    """

    batch_idx: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor

    def to(self, device: torch.device | str) -> SegTargets:
        return SegTargets(
            *(t.to(device) for t in (self.batch_idx, self.classes, self.boxes, self.masks))
        )


@dataclass
class LossOutput:
    """`total` is what to backpropagate: (box + seg + cls + dfl) * batch size, as the reference.

    `items` holds the four gained terms (box, seg, cls, dfl), detached, shape (4,).
    """

    total: torch.Tensor
    items: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(LOSS_NAMES, self.items)}


def bbox2dist(anchor_points: torch.Tensor, boxes: torch.Tensor, max_dist: float) -> torch.Tensor:
    """xyxy boxes -> (left, top, right, bottom) distances from anchor points, clamped for DFL.

    Args:
        anchor_points: (..., 2) in grid units.
        boxes: (..., 4) xyxy in grid units.
        max_dist: largest bin index (reg_max - 1); distances are clamped to [0, max_dist - 0.01] so
            the right-hand DFL bin `floor(t) + 1` exists.

    Returns:
        (..., 4) ltrb distances.
    """
    top_left, bottom_right = boxes.chunk(2, -1)
    dist = torch.cat((anchor_points - top_left, bottom_right - anchor_points), -1)  # (..., 4)
    return dist.clamp(0, max_dist - 0.01)


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL: cross-entropy to the two bins around a continuous target, weighted by proximity.

    Args:
        logits: (P, 4, R) bin logits per side.
        target: (P, 4) distances in [0, R - 1.01].

    Returns:
        (P, 1) loss averaged over the four sides.
    """
    left = target.long()  # floor, target >= 0
    right = left + 1
    weight_left = right - target
    weight_right = 1 - weight_left
    log_probs = logits.log_softmax(-1)  # (P, 4, R)
    loss_left = -log_probs.gather(-1, left.unsqueeze(-1)).squeeze(-1)  # (P, 4)
    loss_right = -log_probs.gather(-1, right.unsqueeze(-1)).squeeze(-1)  # (P, 4)
    return (loss_left * weight_left + loss_right * weight_right).mean(-1, keepdim=True)


def crop_to_boxes(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero every pixel outside its box; pixel (x, y) is kept when x1 <= x < x2 and y1 <= y < y2.

    Args:
        maps: (N, H, W).
        boxes: (N, 4) xyxy in pixels of `maps`.

    Returns:
        (N, H, W), a new tensor.
    """
    _, H, W = maps.shape
    x1, y1, x2, y2 = boxes[:, :, None].unbind(1)  # 4 x (N, 1)
    cols = torch.arange(W, device=maps.device, dtype=boxes.dtype)[None, None, :]  # (1, 1, W)
    rows = torch.arange(H, device=maps.device, dtype=boxes.dtype)[None, :, None]  # (1, H, 1)
    inside = (
        (cols >= x1[:, :, None])
        & (cols < x2[:, :, None])
        & (rows >= y1[:, :, None])
        & (rows < y2[:, :, None])
    )
    return maps * inside


class YoloSegLoss(nn.Module):
    """The YOLOv8-seg criterion.

    Args:
        num_classes: classes predicted by the head.
        reg_max: DFL bins per box side (16, or 26 for FastSAM-x).
        strides: feature strides of P3, P4, P5.
        box_gain, cls_gain, dfl_gain: loss gains; the seg loss reuses `box_gain` (spec §6).
        topk, alpha, beta: assigner settings (spec §6).
        seg_normalization: "per_image" (8.0.120: mean over an image's positive anchors, summed over
            images, divided by the batch size) or "per_anchor" (8.4.190: mean over all positive
            anchors of the batch).
        min_box_side: see `TaskAlignedAssigner` (0 for 8.0.120, 16 for 8.4.190).
    """

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 16,
        strides: tuple[int, int, int] = (8, 16, 32),
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        seg_normalization: Literal["per_image", "per_anchor"] = "per_image",
        min_box_side: float = 0.0,
    ) -> None:
        super().__init__()
        if seg_normalization not in ("per_image", "per_anchor"):
            raise ValueError(
                f"seg_normalization must be 'per_image' or 'per_anchor', got {seg_normalization!r}"
            )
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = strides
        self.box_gain, self.cls_gain, self.dfl_gain = box_gain, cls_gain, dfl_gain
        self.seg_normalization = seg_normalization
        self.assigner = TaskAlignedAssigner(
            num_classes, topk, alpha, beta, min_box_side=min_box_side
        )

    def forward(
        self,
        out: SegOutput,
        targets: SegTargets,
        world_size: int = 1,
        all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LossOutput:
        """Loss of one batch, or of one DDP rank's share of a global batch.

        Args:
            out: the network's `SegOutput` for images of shape (B, 3, H, W).
            targets: the batch's `SegTargets`.
            world_size: number of ranks sharing the global batch (B per rank).
            all_sum: sums a tensor over ranks (e.g. `torch.distributed.all_reduce`). With it the
                normalisers (target-score sum, positive-anchor count, batch size) are global, and
                `items` are this rank's share: their sum over ranks equals the single-process loss
                of the global batch, and so does the gradient once DDP's gradient mean is undone
                (multiply `total` by `world_size`).
        """
        B, _, A = out.box_dist.shape
        R, nc = self.reg_max, self.num_classes
        if out.box_dist.shape[1] != 4 * R or out.class_logits.shape[1] != nc:
            raise ValueError(
                f"loss built for reg_max={R}, num_classes={nc} but the model gives box_dist "
                f"{tuple(out.box_dist.shape)} and class_logits {tuple(out.class_logits.shape)}; "
                "build YoloSegLoss from the model's config"
            )
        device = out.box_dist.device
        dtype = out.class_logits.dtype
        pred_dist = out.box_dist.permute(0, 2, 1)  # (B, A, 4R)
        pred_logits = out.class_logits.permute(0, 2, 1)  # (B, A, nc)
        points, stride = make_anchors(
            out.feature_sizes, self.strides, device=device, dtype=dtype
        )  # (A,2), (A,1)
        image_hw = (
            torch.tensor(out.feature_sizes[0], device=device, dtype=dtype) * self.strides[0]
        )  # (H, W)

        bins = torch.arange(R, device=device, dtype=dtype)
        dist = out.box_dist.view(B, 4, R, A).softmax(2)  # (B, 4, R, A)
        dist = (dist * bins.view(1, 1, R, 1)).sum(2)  # (B, 4, A) expected distance, grid units
        pred_boxes = dist2bbox(dist, points, xywh=False).permute(
            0, 2, 1
        )  # (B, A, 4) xyxy, grid units

        gt_labels, gt_boxes, gt_valid = self._pad_targets(
            targets, B, device
        )  # (B,M,1), (B,M,4), (B,M,1)
        assigned = self.assigner(
            pred_logits.detach().sigmoid(),
            (pred_boxes.detach() * stride).to(gt_boxes.dtype),
            points * stride,
            gt_labels,
            gt_boxes,
            gt_valid,
        )
        reduce = all_sum if all_sum is not None else (lambda t: t)
        score_sum = reduce(assigned.scores.sum()).clamp(min=1)

        cls_loss = F.binary_cross_entropy_with_logits(
            pred_logits, assigned.scores.to(dtype), reduction="sum"
        )
        cls_loss = cls_loss / score_sum

        fg = assigned.foreground  # (B, A)
        weight = assigned.scores.sum(-1)[fg].unsqueeze(-1)  # (P, 1)
        target_grid = assigned.boxes / stride  # (B, A, 4) grid units
        iou = complete_iou(pred_boxes[fg], target_grid[fg])  # (P, 1)
        box_loss = ((1.0 - iou) * weight).sum() / score_sum
        target_ltrb = bbox2dist(points, target_grid, R - 1)  # (B, A, 4)
        dfl = distribution_focal_loss(pred_dist[fg].view(-1, 4, R), target_ltrb[fg])  # (P, 1)
        dfl_loss = (dfl * weight).sum() / score_sum

        seg_loss = self._mask_loss(out, targets, assigned, image_hw, B * world_size, reduce)

        items = torch.stack(
            (
                box_loss * self.box_gain,
                seg_loss * self.box_gain,
                cls_loss * self.cls_gain,
                dfl_loss * self.dfl_gain,
            )
        )
        return LossOutput(total=items.sum() * B * world_size, items=items.detach())

    def _pad_targets(
        self, targets: SegTargets, batch_size: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stacked instances -> per-image padded labels, boxes and valid flags.

        Returns (B, M, 1) labels, (B, M, 4) boxes, (B, M, 1) valid.
        """
        batch_idx = targets.batch_idx.to(device).long()
        N = batch_idx.numel()
        if N and (int(batch_idx.min()) < 0 or int(batch_idx.max()) >= batch_size):
            raise ValueError(
                f"targets.batch_idx must lie in [0, {batch_size}), got "
                f"{batch_idx.unique().tolist()}"
            )
        if N and (int(targets.classes.min()) < 0 or int(targets.classes.max()) >= self.num_classes):
            raise ValueError(
                f"target class ids must lie in [0, {self.num_classes}), got "
                f"{targets.classes.unique().tolist()}; "
                "remap the dataset's categories or set num_classes"
            )
        counts = torch.bincount(batch_idx, minlength=batch_size)  # (B,)
        M = int(counts.max()) if N else 0
        labels = torch.zeros(batch_size, M, 1, device=device)
        boxes = torch.zeros(batch_size, M, 4, device=device)
        if N:
            # Slot of each instance within its image, in order of appearance.
            order = torch.argsort(batch_idx, stable=True)
            starts = counts.cumsum(0) - counts  # (B,)
            slot = torch.empty_like(batch_idx)
            slot[order] = torch.arange(N, device=device) - starts[batch_idx[order]]
            labels[batch_idx, slot, 0] = targets.classes.to(device).float()
            boxes[batch_idx, slot] = targets.boxes.to(device).float()
        valid = boxes.sum(-1, keepdim=True) > 0  # zero rows are padding (reference rule)
        return labels, boxes, valid

    def _mask_loss(
        self,
        out: SegOutput,
        targets: SegTargets,
        assigned: Assignment,
        image_hw: torch.Tensor,
        global_batch: int,
        reduce: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Per-anchor BCE of `coeffs @ protos` against the assigned gt mask, cropped to its box."""
        protos, coeffs = out.protos, out.mask_coeffs  # (B, K, Hp, Wp), (B, K, A)
        B, _, Hp, Wp = protos.shape
        fg, gt_index, boxes = assigned.foreground, assigned.gt_index, assigned.boxes
        num_fg = reduce(fg.sum())  # before any early return: every rank must join the reduction
        if not bool(fg.any()):
            # Keep the mask branch in the graph (DDP needs every parameter to get a gradient).
            return (protos * 0).sum() + (coeffs * 0).sum()
        masks = targets.masks.to(protos.device).float()
        if tuple(masks.shape[-2:]) != (Hp, Wp):
            masks = F.interpolate(masks[None], (Hp, Wp), mode="nearest")[0]
        batch_idx = targets.batch_idx.to(protos.device).long()
        boxes_norm = boxes / image_hw[[1, 0, 1, 0]]  # (B, A, 4) in [0, 1]
        areas = (boxes_norm[..., 2] - boxes_norm[..., 0]) * (
            boxes_norm[..., 3] - boxes_norm[..., 1]
        )  # (B, A)
        boxes_proto = boxes_norm * torch.tensor(
            [Wp, Hp, Wp, Hp], device=protos.device, dtype=boxes.dtype
        )

        total = protos.new_zeros(())
        for b in range(B):
            fg_b = fg[b]
            if not bool(fg_b.any()):
                continue
            gt_masks = masks[batch_idx == b][gt_index[b][fg_b]]  # (P, Hp, Wp)
            logits = torch.einsum(
                "kp,khw->phw", coeffs[b][:, fg_b], protos[b]
            )  # (K, P) x (K, Hp, Wp) -> (P, Hp, Wp)
            bce = F.binary_cross_entropy_with_logits(logits, gt_masks, reduction="none")
            per_anchor = (
                crop_to_boxes(bce, boxes_proto[b][fg_b]).mean((1, 2)) / areas[b][fg_b]
            )  # (P,)
            total = total + (
                per_anchor.mean() if self.seg_normalization == "per_image" else per_anchor.sum()
            )
        if self.seg_normalization == "per_image":
            return total / global_batch
        return total / num_fg
