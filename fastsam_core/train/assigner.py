"""Task-aligned assigner: which anchors learn which ground-truth instance (spec §6, TOOD).

An anchor is a candidate for a ground truth (gt) when its centre lies strictly inside the gt box.
Each gt keeps the `topk` candidates with the highest alignment metric `score^alpha * CIoU^beta`; an
anchor claimed by several gts goes to the gt it overlaps most. The soft class target of a positive
anchor is its metric rescaled so each gt's best anchor gets that gt's best IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastsam_core.train.ciou import complete_iou


@dataclass
class Assignment:
    """Per-anchor training targets.

    Attributes:
        labels: (B, A) int64 class of the assigned gt (meaningful where `foreground`).
        boxes: (B, A, 4) xyxy of the assigned gt, in input pixels.
        scores: (B, A, nc) soft one-hot class targets (zero for background).
        foreground: (B, A) bool, anchors with a gt.
        gt_index: (B, A) int64 index of the assigned gt within its image.
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    foreground: torch.Tensor
    gt_index: torch.Tensor


class TaskAlignedAssigner:
    """Assign ground truths to anchors with the task-aligned metric.

    Args:
        num_classes: number of classes (nc).
        topk: candidates kept per gt (10 in YOLOv8).
        alpha: exponent of the class score in the metric.
        beta: exponent of the CIoU in the metric.
        eps: numerical floor.
        min_box_side: gt sides shorter than this (pixels) are widened about their centre before
            picking candidate anchors. 0 reproduces ultralytics 8.0.120 (FastSAM's training code);
            8.4.190 uses 16 (its P4 stride), so tiny objects still get anchors.
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        eps: float = 1e-9,
        min_box_side: float = 0.0,
    ) -> None:
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.min_box_side = min_box_side

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_valid: torch.Tensor,
    ) -> Assignment:
        """Assign.

        Args:
            pred_scores: (B, A, nc) sigmoid class scores in [0, 1] (detached).
            pred_boxes: (B, A, 4) predicted xyxy in input pixels (detached).
            anchor_points: (A, 2) anchor centres in input pixels.
            gt_labels: (B, M, 1) class ids, padded.
            gt_boxes: (B, M, 4) xyxy in input pixels, padded with zeros.
            gt_valid: (B, M, 1) bool, False for padding rows.

        Returns:
            An `Assignment`.
        """
        B, A, _ = pred_scores.shape
        M = gt_boxes.shape[1]
        device = pred_scores.device
        if M == 0:
            return Assignment(
                labels=torch.full((B, A), self.num_classes, dtype=torch.long, device=device),
                boxes=torch.zeros_like(pred_boxes),
                scores=torch.zeros_like(pred_scores),
                foreground=torch.zeros(B, A, dtype=torch.bool, device=device),
                gt_index=torch.zeros(B, A, dtype=torch.long, device=device),
            )
        valid = gt_valid.bool()  # (B, M, 1)
        in_gts = self._anchors_inside(anchor_points, gt_boxes, valid)  # (B, M, A)
        metric, overlaps = self._metrics(
            pred_scores, pred_boxes, gt_labels, gt_boxes, in_gts & valid
        )
        in_topk = self._topk(metric, valid)  # (B, M, A)
        positive = in_topk & in_gts & valid  # (B, M, A)

        # An anchor claimed by several gts keeps only the gt it overlaps most.
        claims = positive.sum(1)  # (B, A)
        best_gt = overlaps.max(1).indices  # (B, A)
        best_onehot = torch.zeros_like(positive)
        best_onehot.scatter_(1, best_gt.unsqueeze(1), True)  # (B, M, A)
        positive = torch.where((claims > 1).unsqueeze(1), best_onehot, positive)

        foreground, gt_index = positive.to(torch.uint8).max(1)  # (B, A), (B, A)
        foreground = foreground.bool()
        flat_index = gt_index + torch.arange(B, device=device).unsqueeze(1) * M  # (B, A)
        labels = gt_labels.long().flatten()[flat_index].clamp(0)  # (B, A)
        boxes = gt_boxes.reshape(-1, 4)[flat_index]  # (B*M, 4)[(B, A)] -> (B, A, 4)
        scores = torch.zeros(B, A, self.num_classes, device=device)
        scores.scatter_(2, labels.unsqueeze(-1), 1.0)  # one-hot (B, A, nc)
        scores = scores * foreground.unsqueeze(-1)

        # Soft targets: metric / (best metric of its gt) * (best IoU of its gt).
        metric = metric * positive
        overlaps = overlaps * positive
        best_metric = metric.amax(-1, keepdim=True)  # (B, M, 1)
        best_overlap = overlaps.amax(-1, keepdim=True)  # (B, M, 1)
        normalised = (metric * best_overlap / (best_metric + self.eps)).amax(1)  # (B, A)
        scores = scores * normalised.unsqueeze(-1)
        return Assignment(labels, boxes, scores, foreground, gt_index)

    def _anchors_inside(
        self, anchor_points: torch.Tensor, gt_boxes: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """(B, M, A) True where the anchor centre lies strictly inside the (widened) gt box."""
        boxes = gt_boxes
        if self.min_box_side > 0:
            centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, M, 2)
            size = boxes[..., 2:] - boxes[..., :2]  # (B, M, 2)
            size = torch.where(
                (size < self.min_box_side) & valid, torch.full_like(size, self.min_box_side), size
            )
            boxes = torch.cat((centre - size / 2, centre + size / 2), -1)  # (B, M, 4)
        top_left, bottom_right = boxes.unsqueeze(2).chunk(2, 3)  # (B, M, 1, 2) each
        deltas = torch.cat(
            (anchor_points - top_left, bottom_right - anchor_points), -1
        )  # (B, M, A, 4)
        return deltas.amin(-1) > self.eps

    def _metrics(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        candidates: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alignment metric and CIoU, (B, M, A) each, zero outside `candidates`."""
        B, M, A = candidates.shape
        b, m, a = candidates.nonzero(as_tuple=True)
        class_scores = pred_scores[b, a, gt_labels[b, m, 0].long()]  # (P,)
        ious = complete_iou(gt_boxes[b, m], pred_boxes[b, a]).squeeze(-1).clamp(0)  # (P,)
        overlaps = torch.zeros(B, M, A, dtype=pred_boxes.dtype, device=pred_boxes.device)
        metric = torch.zeros(B, M, A, dtype=pred_scores.dtype, device=pred_scores.device)
        overlaps[b, m, a] = ious
        metric[b, m, a] = class_scores.pow(self.alpha) * ious.pow(self.beta)
        return metric, overlaps

    def _topk(self, metric: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, M, A) True for each valid gt's top-k anchors by metric."""
        k = min(self.topk, metric.shape[-1])
        top_index = metric.topk(k, dim=-1).indices  # (B, M, k)
        top_index = top_index.masked_fill(~valid.expand(-1, -1, k), 0)
        counts = torch.zeros(metric.shape, dtype=torch.int16, device=metric.device)
        counts.scatter_add_(-1, top_index, torch.ones_like(top_index, dtype=torch.int16))
        # Padding rows point k times at anchor 0: a count above 1 marks them, drop it.
        return counts == 1
