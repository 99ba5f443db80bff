"""Apply box, point and text prompts to everything-mode `Results` (spec §4; issue #4).

`prompt(results, boxes=..., points=..., labels=..., texts=...)` checks every input first (into one
`Prompts` value, `prompt_set.py`; or takes one with `prompts=`), then selects masks with the rules
of `box.py`, `point.py` and `text.py` and returns `PromptResults`.

Output layouts (`output=`):

* "per_prompt" (default): rows in prompt order: exactly one row per box, in the given order
  (the box's best mask), then the point rows (one union mask, or the selected instances in
  result order), then per text its mask(s), best first. Duplicates are kept.
* "subset": ultralytics 8.4.190's layout: the OR of all selections as a subset of the
  everything-mode rows in their original order, each mask once. For parity this includes a
  box's argmax mask even when its IoU is 0, as ultralytics does. Not available with the
  "union" point mode (the union is a new mask, not a row).

A box that overlaps no mask (or any box when everything mode found no mask) still gets its
row. With `box_no_match="empty"` (default) that row is an empty mask (all False) with box
(0, 0, 0, 0), score and IoU 0, class 0 and source id -1. With `box_no_match="reference"` it is
what both references return, the argmax over all-zero IoUs (the first mask), with IoU 0; with
no masks at all there is nothing to pick and the row is empty as well.
"""

from __future__ import annotations

from typing import Any

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.prompts.box import BoxMatch, select_boxes
from fastsam_core.prompts.clip_scorer import ClipScorer, get_clip_scorer
from fastsam_core.prompts.point import point_pixels, select_instances, union_mask
from fastsam_core.prompts.prompt_results import PromptResults
from fastsam_core.prompts.prompt_set import BoxNoMatch, Prompts, make_prompts
from fastsam_core.prompts.text import masked_crops, select_texts
from fastsam_core.results import Results


def prompt(
    results: Results,
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: str | list[str] | None = None,
    clip_scorer: ClipScorer | None = None,
    *,
    prompts: Prompts | None = None,
    bboxes: Any = None,
    **options: Any,
) -> Results:
    """Select masks of one image's everything-mode result with box, point and/or text prompts.

    Args:
        results: everything-mode Results of one image.
        boxes: (4,) or (M, 4) boxes in original-image pixels (`box_format`); `bboxes` is an
            alias. Boxes and points reaching past the image are clipped to it.
        points: (2,) or (P, 2) xy points in original-image pixels.
        labels: P labels (1 foreground, 0 background); default all foreground.
        texts: a string or a list of strings.
        clip_scorer: the `ClipScorer` for texts; default a shared one (`get_clip_scorer`) on the
            masks' device, built once per process.
        prompts: already checked `Prompts` (from `make_prompts`), used as they are; then pass no
            other prompt or option.
        **options: `PromptOptions` fields.
    Returns:
        `results` itself when no prompt is given, else `PromptResults` (possibly empty).
    """
    if prompts is None:
        prompts = make_prompts(boxes, points, labels, texts, bboxes=bboxes, **options)
        if prompts is None:
            return results
    elif any(v is not None for v in (boxes, points, labels, texts, bboxes)) or options:
        raise TypeError("pass either prompts=Prompts(...) or prompt keywords, not both")
    prompts = prompts.fit(results.orig_hw)
    opts = prompts.options
    hw = results.orig_hw
    box_rows, text_list = prompts.boxes, prompts.texts
    point_rows = None
    if prompts.points is not None and prompts.labels is not None:
        point_rows = (prompts.points, prompts.labels)
    if len(results) == 0:  # nothing to select; each box still gets its (empty) row
        if box_rows is None or opts.output == "subset":
            return PromptResults.wrap(results)
        return _empty_box_rows(results, torch.arange(box_rows.shape[0]))

    pieces: list[PromptResults] = []  # per_prompt rows, in prompt order
    subset = torch.zeros(len(results), dtype=torch.bool)  # "subset" output: OR of selections
    if box_rows is not None:
        masks = results.masks if opts.box_rule == "official" else results.masks_original("bilinear")
        match = select_boxes(masks, box_rows, hw, opts.box_rule)
        subset[match.best[match.best >= 0]] = True  # ultralytics marks the argmax even at IoU 0
        pieces.append(_box_rows(results, match, opts.box_no_match))
    if point_rows is not None:
        coords, point_labels = point_rows
        if opts.point_mode == "union":
            frame_points = point_pixels(coords, hw, results.masks.image_hw)
            pieces.append(
                _union_row(results, *union_mask(results.masks, frame_points, point_labels))
            )
        else:
            selected = select_instances(
                results.masks_original("bilinear"), torch.trunc(coords).long(), point_labels
            )
            subset |= selected
            src = selected.nonzero().flatten()
            pieces.append(
                _rows(results, "point", src, results.scores.cpu()[src], torch.full_like(src, -1))
            )
    if text_list is not None:
        if results.orig_image is None:
            raise ValueError("text prompts need the image: Results.orig_image is None")
        masks = results.masks_original("bilinear")
        crops, keep = masked_crops(results.orig_image, masks, results.boxes, opts.min_text_area)
        similarity = torch.zeros((len(text_list), 0))
        if crops:
            scorer = clip_scorer or get_clip_scorer(device=str(results.masks.device))
            similarity = scorer.similarity(crops, list(text_list))  # (T, K)
        match_t = select_texts(
            similarity, keep, len(results), opts.text_rule, opts.text_threshold, opts.text_top_k
        )
        subset[match_t.indices] = True
        pieces.append(_rows(results, "text", match_t.indices, match_t.scores, match_t.text_ids))

    if opts.output == "subset":
        return PromptResults.wrap(results, source_ids=torch.arange(len(results)))[subset]
    return _concat(results, [p for p in pieces if len(p)])


def _rows(
    results: Results, kind: str, src: torch.Tensor, scores: torch.Tensor, ids: torch.Tensor
) -> PromptResults:
    """Rows `src` of the everything result, tagged with their prompt."""
    rows = PromptResults.wrap(results)[src]
    return PromptResults.wrap(rows, scores.float(), ids.long(), src.long(), (kind,) * len(src))


def _box_rows(results: Results, match: BoxMatch, no_match: BoxNoMatch) -> PromptResults:
    """Exactly one row per box, in box order; boxes without a mask to show get an empty row."""
    # "reference": both references' pick, the argmax even at IoU 0 (iou is 0 there already).
    src = match.best if no_match == "reference" else match.indices  # (M,), -1 = no mask
    box_ids = torch.arange(src.shape[0])
    hit = src >= 0
    found = _rows(results, "box", src[hit], match.iou[hit], box_ids[hit])
    if bool(hit.all()):
        return found
    empty = _empty_box_rows(results, box_ids[~hit])
    order = torch.cat([box_ids[hit], box_ids[~hit]]).argsort()  # back to box order
    return _concat(results, [found, empty])[order]


def _empty_box_rows(results: Results, box_ids: torch.Tensor) -> PromptResults:
    """Rows for boxes that matched no mask: empty masks, box (0, 0, 0, 0), score 0, source -1."""
    num = box_ids.shape[0]
    device = results.masks.device
    masks = CompactMasks(
        torch.zeros((num, 4), dtype=torch.int64, device=device),  # empty regions store nothing
        torch.zeros(0, dtype=torch.bool, device=device),
        torch.zeros(num + 1, dtype=torch.int64, device=device),
        results.masks.image_hw,
    )
    return PromptResults(
        masks=masks,
        boxes=torch.zeros((num, 4), device=results.boxes.device),
        scores=torch.zeros(num, device=results.scores.device),
        class_ids=torch.zeros(num, dtype=torch.int64, device=results.class_ids.device),
        orig_hw=results.orig_hw,
        names=results.names,
        path=results.path,
        frame=results.frame,
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=torch.zeros(num),
        prompt_ids=box_ids.long(),
        source_ids=torch.full((num,), -1, dtype=torch.int64),
        prompt_kinds=("box",) * num,
    )


def _concat(results: Results, pieces: list[PromptResults]) -> PromptResults:
    """Concatenate prompt rows (all in the masks' frame of `results`)."""
    if not pieces:
        return PromptResults.wrap(results)[[]]
    if len(pieces) == 1:
        return pieces[0]
    return PromptResults(
        masks=CompactMasks.cat([p.masks for p in pieces]),
        boxes=torch.cat([p.boxes for p in pieces]),
        scores=torch.cat([p.scores for p in pieces]),
        class_ids=torch.cat([p.class_ids for p in pieces]),
        orig_hw=results.orig_hw,
        names=results.names,
        path=results.path,
        frame=results.frame,
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=torch.cat([p.prompt_scores for p in pieces]),  # type: ignore[misc]
        prompt_ids=torch.cat([p.prompt_ids for p in pieces]),  # type: ignore[misc]
        source_ids=torch.cat([p.source_ids for p in pieces]),  # type: ignore[misc]
        prompt_kinds=sum((p.prompt_kinds for p in pieces), ()),
    )


def _union_row(results: Results, mask: CompactMasks, setters: torch.Tensor) -> PromptResults:
    """One row for the official point union: tight box in original px, best setter's score."""
    if len(mask) == 0:
        return PromptResults.wrap(results)[[]]
    x0, y0, x1, y1 = mask.regions[0].tolist()  # tight box in the masks' frame
    box = torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32)
    if results.mask_window is not None:  # letterbox frame -> original pixels
        top, left, win_h, win_w = results.mask_window
        orig_h, orig_w = results.orig_hw
        box = (box - torch.tensor([left, top, left, top])) * torch.tensor(
            [orig_w / win_w, orig_h / win_h, orig_w / win_w, orig_h / win_h]
        )
        box = torch.minimum(box.clamp(min=0), torch.tensor([orig_w, orig_h, orig_w, orig_h]))
    scores = results.scores.cpu()[setters]
    best = int(setters[scores.argmax()])
    return PromptResults(
        masks=mask,
        boxes=box,
        scores=results.scores.cpu()[best : best + 1],
        class_ids=results.class_ids.cpu()[best : best + 1],
        orig_hw=results.orig_hw,
        names=results.names,
        path=results.path,
        frame=results.frame,
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=results.scores.cpu()[best : best + 1],
        prompt_ids=torch.tensor([-1]),
        source_ids=torch.tensor([-1]),
        prompt_kinds=("point",),
    )
