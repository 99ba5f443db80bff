"""Text prompts: crop every mask, score crops against texts with CLIP, pick masks (spec §4).

Crops follow ultralytics 8.4.190 (the 2026 upstream fix of the official crop): for each mask with
area > 100 pixels, the original image inside the mask's box (coordinates truncated to int), with
the pixels outside the mask set to black. Scoring is `ClipScorer.similarity` (cosine, batched).

Selection rules, given the (T, K) similarity of T texts with the K kept crops:

* "top1": per text the best crop, mapped back to its mask (ultralytics; the default).
* "topk": per text the `top_k` best crops, best first.
* "threshold": per text every crop with similarity >= `threshold`, best first.
* "official": the FastSAM repo's rule: softmax over crops of 100 * similarity, argmax, then its
  index remap `idx += count(filtered_id <= idx)` evaluated once in the compressed index space,
  which can land on a filtered (small) mask or on the wrong neighbour (spec §4.1 step 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fastsam_core.compact_masks import CompactMasks

TextRule = Literal["top1", "topk", "threshold", "official"]
MIN_CROP_AREA = 100  # both references skip masks with area <= 100 pixels


@dataclass(frozen=True)
class TextMatch:
    """Masks chosen for texts.

    Attributes:
        indices: (R,) int64 mask indices, grouped by text in text order, best first.
        scores: (R,) float32 cosine similarity (softmax probability for the "official" rule).
        text_ids: (R,) int64 index of the text each row answers.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    text_ids: torch.Tensor


def masked_crops(
    image: torch.Tensor,
    masks: CompactMasks,
    boxes: torch.Tensor,
    min_area: int = MIN_CROP_AREA,
) -> tuple[list[np.ndarray], torch.Tensor]:
    """Crop each large-enough mask's box from the image, black outside the mask.

    Args:
        image: (H0, W0, 3) uint8 RGB.
        masks: N masks in the original (H0, W0) frame.
        boxes: (N, 4) float xyxy original px (the result boxes).
        min_area: masks with area <= min_area are skipped (as both references).
    Returns:
        crops: K arrays (h, w, 3) uint8 RGB; keep: (K,) int64 mask index of each crop.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    if masks.image_hw != (height, width):
        raise ValueError(
            f"text crops need masks in the image's {(height, width)} frame, got {masks.image_hw}"
        )
    pixels = image.cpu().numpy()
    areas = masks.areas().tolist()
    regions = masks.regions.tolist()
    crops, keep = [], []
    for i, box in enumerate(boxes.tolist()):
        if areas[i] <= min_area:
            continue
        x1, y1, x2, y2 = (int(v) for v in box)  # truncation, as ultralytics
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 <= x1 or y2 <= y1:
            continue
        inside = np.zeros((y2 - y1, x2 - x1), dtype=bool)  # mask pixels inside the box
        rx0, ry0, rx1, ry1 = regions[i]
        ix0, iy0, ix1, iy1 = max(rx0, x1), max(ry0, y1), min(rx1, x2), min(ry1, y2)
        if ix1 > ix0 and iy1 > iy0:
            crop = masks.crop(i).cpu().numpy()
            inside[iy0 - y1 : iy1 - y1, ix0 - x1 : ix1 - x1] = crop[
                iy0 - ry0 : iy1 - ry0, ix0 - rx0 : ix1 - rx0
            ]
        crops.append(pixels[y1:y2, x1:x2] * inside[:, :, None])  # (h, w, 3) uint8, black outside
        keep.append(i)
    return crops, torch.tensor(keep, dtype=torch.int64)


def official_text_index(
    similarity: torch.Tensor, keep: torch.Tensor, num_masks: int
) -> tuple[int, float]:
    """The FastSAM repo's text selection for one text, with its index-remap bug.

    Args:
        similarity: (K,) cosine similarity of the text with the kept crops.
        keep: (K,) int64 mask index of each crop (the others are the repo's `filter_id`).
        num_masks: N, the number of masks before filtering.
    Returns:
        (mask index after the repo's remap, softmax probability of the chosen crop).
    """
    probs = (100.0 * similarity.float()).softmax(dim=0)  # softmax over crops (images)
    idx = int(probs.argmax())
    kept = set(keep.tolist())
    filtered = [i for i in range(num_masks) if i not in kept]
    remapped = idx + sum(1 for f in filtered if f <= idx)  # evaluated once: the repo's bug
    return remapped, float(probs[idx])


def select_texts(
    similarity: torch.Tensor,
    keep: torch.Tensor,
    num_masks: int,
    rule: TextRule = "top1",
    threshold: float | None = None,
    top_k: int | None = None,
) -> TextMatch:
    """Choose masks for each text from CLIP similarities.

    Args:
        similarity: (T, K) cosine similarity of T texts with K kept crops.
        keep: (K,) int64 mask index of each crop.
        num_masks: N masks in the result the crops came from.
        rule: "top1", "topk" (needs top_k >= 1), "threshold" (needs threshold) or "official".
    Returns:
        TextMatch rows grouped by text; a text with no crop (K = 0) or no crop over the
        threshold contributes no row.
    """
    if rule == "topk" and (top_k is None or isinstance(top_k, bool) or int(top_k) < 1):
        raise ValueError(f"text rule 'topk' needs top_k >= 1, got {top_k!r}")
    if rule == "threshold" and (threshold is None or not np.isfinite(threshold)):
        raise ValueError(f"text rule 'threshold' needs a finite threshold, got {threshold!r}")
    if rule not in ("top1", "topk", "threshold", "official"):
        raise ValueError(f"text rule must be top1, topk, threshold or official, got {rule!r}")
    indices: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    text_ids: list[torch.Tensor] = []
    num_crops = similarity.shape[1]
    for t in range(similarity.shape[0]):
        row = similarity[t].float().cpu()  # (K,)
        if num_crops == 0:
            continue
        if rule == "official":
            index, prob = official_text_index(row, keep, num_masks)
            chosen, chosen_scores = torch.tensor([index]), torch.tensor([prob])
        else:
            order = torch.sort(
                row, descending=True, stable=True
            ).indices  # best first, ties by index
            if rule == "top1":
                order = row.argmax()[None]  # first maximum, as torch.argmax in ultralytics
            elif rule == "topk":
                order = order[: int(top_k)]  # type: ignore[arg-type]
            else:
                order = order[row[order] >= float(threshold)]  # type: ignore[arg-type]
            chosen, chosen_scores = keep[order], row[order]
        indices.append(chosen)
        scores.append(chosen_scores)
        text_ids.append(torch.full((chosen.numel(),), t, dtype=torch.int64))
    if not indices:
        empty = torch.zeros(0, dtype=torch.int64)
        return TextMatch(empty, torch.zeros(0), empty.clone())
    return TextMatch(torch.cat(indices).long(), torch.cat(scores).float(), torch.cat(text_ids))
