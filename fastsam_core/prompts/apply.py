"""Apply box, point and text prompts to everything-mode `Results` (spec §4; issue #4).

`prompt(results, boxes=..., points=..., labels=..., texts=...)` validates every input first, then
selects masks with the rules of `box.py`, `point.py` and `text.py` and returns `PromptResults`.

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

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.prompts.box import BoxMatch, BoxRule, select_boxes
from fastsam_core.prompts.clip_scorer import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    ClipScorer,
    get_clip_scorer,
)
from fastsam_core.prompts.inputs import BoxFormat, parse_boxes, parse_points, parse_texts
from fastsam_core.prompts.point import PointMode, point_pixels, select_instances, union_mask
from fastsam_core.prompts.prompt_results import PromptResults
from fastsam_core.prompts.text import (
    MIN_CROP_AREA,
    TextRule,
    masked_crops,
    select_texts,
)
from fastsam_core.results import Results

PromptOutput = Literal["per_prompt", "subset"]
BoxNoMatch = Literal["empty", "reference"]


@dataclass(frozen=True)
class PromptOptions:
    """How prompts select masks (every field is a keyword of `prompt` and `Predictor.__call__`).

    Attributes:
        box_format: "xyxy" or "xywh" (top-left corner, width, height) input boxes.
        box_rule: "official" (FastSAM repo) or "ultralytics" pixel rounding (see `box.py`).
        box_no_match: the row of a box overlapping no mask: "empty" (an empty mask, IoU 0) or
            "reference" (the references' argmax pick, mask 0, IoU 0); see the module docstring.
        point_mode: "instances" (each mask under a positive point) or "union" (official: one mask).
        clip: clip boxes/points outside the image instead of rejecting them.
        text_rule: "top1", "topk", "threshold" or "official" (see `text.py`).
        text_threshold: minimum cosine similarity for text_rule="threshold".
        text_top_k: masks per text for text_rule="topk".
        min_text_area: masks with area <= this are not scored against texts (references: 100).
        output: "per_prompt" or "subset" (see the module docstring).
        clip_model, clip_pretrained, clip_cache_dir: the CLIP model (open_clip name), its
            weights (tag or local file) and download cache, used when no scorer is passed.
    """

    box_format: BoxFormat = "xyxy"
    box_rule: BoxRule = "official"
    box_no_match: BoxNoMatch = "empty"
    point_mode: PointMode = "instances"
    clip: bool = False
    text_rule: TextRule = "top1"
    text_threshold: float | None = None
    text_top_k: int | None = None
    min_text_area: int = MIN_CROP_AREA
    output: PromptOutput = "per_prompt"
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_pretrained: str | None = DEFAULT_CLIP_PRETRAINED
    clip_cache_dir: str | None = None

    def validated(self) -> PromptOptions:
        choices: dict[str, tuple[Any, ...]] = {
            "box_format": ("xyxy", "xywh"),
            "box_rule": ("official", "ultralytics"),
            "box_no_match": ("empty", "reference"),
            "point_mode": ("instances", "union"),
            "text_rule": ("top1", "topk", "threshold", "official"),
            "output": ("per_prompt", "subset"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        top_k = self.text_top_k
        if self.text_rule == "topk" and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"text rule 'topk' needs top_k >= 1 (text_top_k=3), got {top_k!r}")
        threshold = self.text_threshold
        if self.text_rule == "threshold" and (threshold is None or not math.isfinite(threshold)):
            raise ValueError(
                f"text rule 'threshold' needs a finite threshold (text_threshold=0.25), got "
                f"{threshold!r}"
            )
        if self.output == "subset" and self.point_mode == "union":
            raise ValueError(
                "output='subset' returns rows of the everything result, but point_mode='union' "
                "builds a new mask; use point_mode='instances' or output='per_prompt'"
            )
        return self


PROMPT_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PromptOptions))


def make_prompt_options(**options: Any) -> PromptOptions:
    """PromptOptions from keywords, rejecting unknown names."""
    unknown = sorted(set(options) - PROMPT_OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown prompt option(s) {unknown}; expected some of {sorted(PROMPT_OPTION_NAMES)}"
        )
    return PromptOptions(**options).validated()


def prompt(
    results: Results,
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: str | list[str] | None = None,
    clip_scorer: ClipScorer | None = None,
    **options: Any,
) -> Results:
    """Select masks of one image's everything-mode result with box, point and/or text prompts.

    Args:
        results: everything-mode Results of one image.
        boxes: (4,) or (M, 4) boxes in original-image pixels (`box_format`).
        points: (2,) or (P, 2) xy points in original-image pixels.
        labels: P labels (1 foreground, 0 background); default all foreground.
        texts: a string or a list of strings.
        clip_scorer: a `ClipScorer` to use; default a shared one from `clip_model`/`clip_pretrained`
            on the masks' device (loaded once, cached).
        **options: `PromptOptions` fields.
    Returns:
        `results` itself when no prompt is given, else `PromptResults` (possibly empty).
    """
    opts = make_prompt_options(**options)
    if labels is not None and points is None:
        raise ValueError("labels were given without points; pass points=(P, 2) with the labels")
    if boxes is None and points is None and texts is None:
        return results
    hw = results.orig_hw
    box_rows = None if boxes is None else parse_boxes(boxes, hw, opts.box_format, opts.clip)
    point_rows = None if points is None else parse_points(points, labels, hw, opts.clip)
    text_list = None if texts is None else parse_texts(texts)
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
            scorer = clip_scorer or get_clip_scorer(
                opts.clip_model,
                opts.clip_pretrained,
                str(results.masks.device),
                opts.clip_cache_dir,
            )
            similarity = scorer.similarity(crops, text_list)  # (T, K)
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
        orig_image=results.orig_image,
        mask_window=results.mask_window,
        prompt_scores=results.scores.cpu()[best : best + 1],
        prompt_ids=torch.tensor([-1]),
        source_ids=torch.tensor([-1]),
        prompt_kinds=("point",),
    )


def _per_image(value: Any, name: str, num_images: int, broadcast_str: bool = False) -> list[Any]:
    """One prompt value per image: as given for one image, else a sequence of length B."""
    if value is None:
        return [None] * num_images
    if num_images == 1:
        return [value]
    if broadcast_str and isinstance(value, str):
        return [value] * num_images  # one text for every image
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != num_images:
        got = len(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        raise ValueError(
            f"{name} for {num_images} images must be a list with one entry per image (None for "
            f"no prompt), got {got!r} entries; e.g. {name}=[[...], None, ...]"
        )
    return list(value)


def prepare_prompts(
    image_hws: list[tuple[int, int]],
    boxes: Any = None,
    points: Any = None,
    labels: Any = None,
    texts: Any = None,
    **options: Any,
) -> list[dict[str, Any]] | None:
    """Split batch prompts into one prompt set per image and validate them all up front.

    For one image the prompts are that image's; for B images each of boxes / points / labels /
    texts is a list of B entries (None for none), and a single text string applies to every
    image. Returns None when no prompt is given.
    """
    make_prompt_options(**options)
    if boxes is None and points is None and labels is None and texts is None:
        return None
    num = len(image_hws)
    columns = {
        "boxes": _per_image(boxes, "boxes", num),
        "points": _per_image(points, "points", num),
        "labels": _per_image(labels, "labels", num),
        "texts": _per_image(texts, "texts", num, broadcast_str=True),
    }
    sets = [{key: column[i] for key, column in columns.items()} for i in range(num)]
    opts = make_prompt_options(**options)
    for hw, item in zip(image_hws, sets):
        if item["labels"] is not None and item["points"] is None:
            raise ValueError("labels were given without points; pass points=(P, 2) with the labels")
        if item["boxes"] is not None:
            parse_boxes(item["boxes"], hw, opts.box_format, opts.clip)
        if item["points"] is not None:
            parse_points(item["points"], item["labels"], hw, opts.clip)
        if item["texts"] is not None:
            parse_texts(item["texts"])
    return sets
