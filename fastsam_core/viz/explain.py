"""`fastsam explain`: what the 32 prototypes and each mask's coefficients do, as pictures.

FastSAM's mask for a detection is sigmoid(coefficients . prototypes) cropped to its box: the
head predicts, for every anchor, a box, a score and K = 32 coefficients; one shared set of K
prototype maps (stride 4) is mixed by those coefficients. `explain` runs the predictor once with
`model.capture(...)` and shows every piece:

* `prototypes.png`: the K prototypes of this photo;
* `mask_NN.png` for the top masks: the coefficient bar chart, the mask rebuilt as
  sigmoid(coefficients . prototypes) cropped to its box, and the predictor's final mask;
* `scores_by_level.png`: the score of every anchor of each level (stride 8 / 16 / 32), over the
  photo: which level found which object;
* `anchors.png`: each top mask with its box and the anchor point that predicted it;
* `explain.json`: the numbers behind the pictures.

Nothing is re-implemented: the masks, boxes, coefficients and prototypes come from the predictor
(`tasks.edges.SoftMaskPredictor`, which keeps each row's coefficients), the per-anchor tensors from
`model.capture`, the rebuilt map from `ops.masks` (`mask_logits`, `scale_masks_ultralytics`,
`crop_masks`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fastsam_core.ops.anchors import make_anchors
from fastsam_core.ops.boxes import scale_boxes
from fastsam_core.ops.letterbox import LetterboxGeometry, letterbox_geometry
from fastsam_core.ops.masks import crop_masks, mask_logits, scale_masks_ultralytics
from fastsam_core.viz import drawing

_CAPTURED = ("head.class_logits", "head.mask_coeffs", "head.protos")


@dataclass
class MaskExplanation:
    """One of the top masks and where it came from.

    Attributes:
        rank: 1 = the highest score.
        score: its confidence.
        box: (4,) xyxy original pixels.
        anchor_index: its anchor in the head output (0..A-1).
        stride: the level of that anchor (8, 16 or 32).
        anchor_xy: (2,) the anchor's cell centre in original pixels.
        coeffs: (K,) its mask coefficients.
        rebuilt: (H0, W0) float sigmoid(coeffs . protos) at the photo size, zero outside the box.
        final: (H0, W0) bool the predictor's mask.
    """

    rank: int
    score: float
    box: torch.Tensor
    anchor_index: int
    stride: int
    anchor_xy: torch.Tensor
    coeffs: torch.Tensor
    rebuilt: torch.Tensor
    final: torch.Tensor

    def agreement(self) -> float:
        """Fraction of photo pixels where `rebuilt > 0.5` equals the final mask.

        1 on photos without letterbox padding; on padded photos the map drops the padding with
        the ultralytics rounding (`ops.masks.scale_masks_ultralytics`), the official masks with
        their own, so the two can be shifted by up to one prototype pixel.
        """
        return float(((self.rebuilt > 0.5) == self.final).float().mean())


@dataclass
class Explanation:
    """Everything `write_explanation` draws.

    Attributes:
        photo: (H0, W0, 3) uint8 RGB.
        geometry: the letterbox of the photo into the (H, W) network input.
        protos: (K, Hp, Wp) prototypes of the photo's own letterbox area.
        level_scores: per stride (8, 16, 32) the (Hi, Wi) best-class score of every anchor.
        masks: the top masks, best first.
        num_masks: masks the predictor returned in all.
    """

    photo: np.ndarray
    geometry: LetterboxGeometry
    protos: torch.Tensor
    level_scores: dict[int, torch.Tensor]
    masks: list[MaskExplanation]
    num_masks: int


def _anchor_of(row_coeffs: torch.Tensor, all_coeffs: torch.Tensor) -> int:
    """Index of the anchor whose coefficients are `row_coeffs` (NMS copies them unchanged)."""
    hits = torch.nonzero((all_coeffs == row_coeffs[None]).all(1)).flatten()  # (A, K) vs (K,)
    if hits.numel() == 0:
        raise ValueError("a detection's coefficients match no anchor of the captured head output")
    return int(hits[0])


def _rebuild(
    protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, orig_hw: tuple[int, int]
) -> torch.Tensor:
    """(k, H0, W0) sigmoid(coeffs . protos) at the photo size, zero outside each box."""
    if coeffs.shape[0] == 0:
        return protos.new_zeros((0, *orig_hw))
    logits = mask_logits(protos, coeffs)  # (k, K) @ (K, Hp*Wp) -> (k, Hp, Wp)
    # resize is linear, so resizing coeffs . protos = coeffs . resized protos; sigmoid after it,
    # as the predictor thresholds resized logits
    probs = scale_masks_ultralytics(logits, orig_hw).sigmoid()  # (k, H0, W0)
    return crop_masks(probs, boxes)  # zero outside each box


def explain(
    source: Any,
    model: Any,
    top_k: int = 4,
    imgsz: int | None = None,
    device: str = "cpu",
    conf: float = 0.4,
) -> Explanation:
    """Run the predictor once on `source` and collect what the pictures show.

    Args:
        source: one image (path, numpy RGB, PIL, tensor; see `io.images`).
        model: a YoloV8Seg, a model file or a weights name ('fastsam-s').
        top_k: how many of the best masks to explain.
        imgsz: letterbox size (default: the model's).
        device: where the model runs.
        conf: score threshold of the predictor.
    """
    from fastsam_core.tasks.edges import SoftMaskPredictor, SoftMaskResults

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    # fast=False: the plain eager forward, so the capture hooks see every pass.
    predictor = SoftMaskPredictor(model, device=device, imgsz=imgsz, conf=conf, fast=False)
    with predictor.model.capture(*_CAPTURED) as feats:
        results = predictor(source)
    if len(results) != 1:
        raise ValueError(f"explain takes one image, got {len(results)}")
    res = results[0]
    assert isinstance(res, SoftMaskResults) and res.orig_image is not None
    assert res.coeffs is not None and res.protos is not None
    logits = feats["head.class_logits"][0]  # (nc, A)
    all_coeffs = feats["head.mask_coeffs"][0].t()  # (K, A) -> (A, K)
    in_h, in_w = (4 * s for s in feats["head.protos"].shape[2:])  # network input (H, W)
    geometry = letterbox_geometry(res.orig_hw, predictor.options.imgsz, stride=32, auto=True)
    if geometry.input_hw != (in_h, in_w):
        raise ValueError(f"letterbox {geometry.input_hw} differs from the input {(in_h, in_w)}")
    strides = tuple(predictor.model.cfg.strides)
    sizes = [(in_h // s, in_w // s) for s in strides]
    points, anchor_strides = make_anchors(sizes, strides)  # (A, 2) grid units, (A, 1)
    scores = logits.sigmoid().max(0).values  # (A,) best-class score of every anchor
    level_scores = {
        s: chunk.view(h, w)
        for s, (h, w), chunk in zip(strides, sizes, scores.split([h * w for h, w in sizes]))
    }
    k = min(top_k, len(res))
    rows = slice(0, k)
    rebuilt = _rebuild(res.protos, res.coeffs[rows], res.boxes[rows], res.orig_hw)
    final = res.masks[rows].to_dense()  # (k, H0, W0) bool
    masks = []
    for i in range(k):
        a = _anchor_of(res.coeffs[i], all_coeffs)
        centre = points[a] * anchor_strides[a]  # (2,) input px
        xy = scale_boxes(torch.cat([centre, centre])[None], geometry, rule="official")[0, :2]
        masks.append(
            MaskExplanation(
                rank=i + 1,
                score=float(res.scores[i]),
                box=res.boxes[i].cpu(),
                anchor_index=a,
                stride=int(anchor_strides[a]),
                anchor_xy=xy.cpu(),
                coeffs=res.coeffs[i].cpu(),
                rebuilt=rebuilt[i].cpu(),
                final=final[i].cpu(),
            )
        )
    return Explanation(
        photo=res.orig_image.cpu().numpy(),
        geometry=geometry,
        protos=res.protos.cpu(),
        level_scores={s: v.cpu() for s, v in level_scores.items()},
        masks=masks,
        num_masks=len(res),
    )


def _on_photo(grid: torch.Tensor, stride: int, geometry: LetterboxGeometry) -> np.ndarray:
    """(Hi, Wi) per-anchor values -> (H0, W0): each cell covers stride x stride input pixels."""
    up = grid.repeat_interleave(stride, 0).repeat_interleave(stride, 1)  # (H, W) input px
    top, left = geometry.pad_top, geometry.pad_left
    h, w = geometry.resized_hw
    content = up[top : top + h, left : left + w]  # the photo's part of the input
    photo = F.interpolate(content[None, None].float(), size=geometry.orig_hw, mode="nearest")
    return photo[0, 0].numpy()  # (1, 1, H0, W0) -> (H0, W0)


def write_explanation(expl: Explanation, out_dir: str | Path) -> list[Path]:
    """Write the PNGs and `explain.json` into `out_dir` (created); returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(img: Any, name: str) -> None:
        img.save(out / name)
        written.append(out / name)

    save(drawing.prototype_grid(expl.protos), "prototypes.png")
    heat = [
        drawing.labelled(
            drawing.heatmap_over(expl.photo, _on_photo(grid, s, expl.geometry)),
            f"stride {s}: {grid.shape[0]}x{grid.shape[1]} anchors, "
            f"max score {float(grid.max()):.2f}",
        )
        for s, grid in expl.level_scores.items()
    ]
    save(drawing.side_by_side(heat), "scores_by_level.png")
    for m in expl.masks:
        pair = drawing.side_by_side(
            [
                drawing.labelled(drawing.gray(m.rebuilt), "sigmoid(coeffs . protos) in box"),
                drawing.labelled(drawing.gray(m.final), "final mask"),
            ]
        )
        title = f"mask #{m.rank}: score {m.score:.3f}, anchor {m.anchor_index} (stride {m.stride})"
        save(drawing.labelled(drawing.stacked([drawing.coefficient_chart(m.coeffs), pair]), title),
             f"mask_{m.rank:02d}.png")  # fmt: skip
    if expl.masks:
        save(
            drawing.anchor_overlay(
                expl.photo,
                torch.stack([m.final for m in expl.masks]),
                torch.stack([m.box for m in expl.masks]),
                torch.stack([m.anchor_xy for m in expl.masks]),
                [m.stride for m in expl.masks],
            ),
            "anchors.png",
        )
    summary = {
        "num_masks": expl.num_masks,
        "input_hw": list(expl.geometry.input_hw),
        "prototypes": list(expl.protos.shape),
        "levels": {str(s): list(g.shape) for s, g in expl.level_scores.items()},
        "masks": [
            {
                "rank": m.rank,
                "score": round(m.score, 6),
                "box": [round(float(v), 2) for v in m.box.tolist()],
                "anchor_index": m.anchor_index,
                "stride": m.stride,
                "anchor_xy": [round(float(v), 2) for v in m.anchor_xy.tolist()],
                "coefficients": [round(float(v), 4) for v in m.coeffs.tolist()],
                "rebuilt_agreement": round(m.agreement(), 4),
            }
            for m in expl.masks
        ],
    }
    (out / "explain.json").write_text(json.dumps(summary, indent=1) + "\n")
    written.append(out / "explain.json")
    return written
