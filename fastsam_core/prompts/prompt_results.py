"""`PromptResults`: the `Results` of a prompt, plus which prompt picked each row and how well."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastsam_core.compact_masks import Index, _normalize_index
from fastsam_core.results import Results


@dataclass
class PromptResults(Results):
    """`Results` whose rows answer prompts (a `Results` subclass: every export works).

    Attributes (besides those of `Results`):
        prompt_scores: (N,) float32 match score: IoU for a box (0 for a box overlapping no
            mask), CLIP similarity (softmax probability for the "official" text rule) for a
            text, the mask confidence for points.
        prompt_ids: (N,) int64 index of the box / text that picked the row; -1 for point prompts
            and for "subset" output (ultralytics style, rows not tied to one prompt).
        source_ids: (N,) int64 row of the everything-mode Results the mask came from; -1 for a
            mask built by the prompt (the "union" of point prompts) and for the empty row of a
            box that overlaps no mask (`box_no_match="empty"`).
        prompt_kinds: N of "box", "point", "text" or "subset".
    """

    prompt_scores: torch.Tensor | None = None
    prompt_ids: torch.Tensor | None = None
    source_ids: torch.Tensor | None = None
    prompt_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.masks)
        self.prompt_scores = (
            self.scores.clone()
            if self.prompt_scores is None
            else torch.as_tensor(self.prompt_scores, dtype=torch.float32).reshape(-1)
        )
        for name in ("prompt_ids", "source_ids"):
            value = getattr(self, name)
            value = torch.full((n,), -1) if value is None else torch.as_tensor(value).reshape(-1)
            setattr(self, name, value.long())
        self.prompt_kinds = tuple(self.prompt_kinds) or ("subset",) * n
        sizes = {
            "prompt_scores": self.prompt_scores.shape[0],
            "prompt_ids": self.prompt_ids.shape[0],  # type: ignore[union-attr]
            "source_ids": self.source_ids.shape[0],  # type: ignore[union-attr]
            "prompt_kinds": len(self.prompt_kinds),
        }
        if any(v != n for v in sizes.values()):
            raise ValueError(f"PromptResults needs one entry per mask ({n} masks), got {sizes}")

    @classmethod
    def wrap(
        cls,
        results: Results,
        prompt_scores: torch.Tensor | None = None,
        prompt_ids: torch.Tensor | None = None,
        source_ids: torch.Tensor | None = None,
        prompt_kinds: tuple[str, ...] = (),
    ) -> PromptResults:
        """Attach prompt information to an existing Results (same masks, no copy)."""
        return cls(
            masks=results.masks,
            boxes=results.boxes,
            scores=results.scores,
            class_ids=results.class_ids,
            orig_hw=results.orig_hw,
            names=results.names,
            path=results.path,
            orig_image=results.orig_image,
            mask_window=results.mask_window,
            prompt_scores=prompt_scores,
            prompt_ids=prompt_ids,
            source_ids=source_ids,
            prompt_kinds=prompt_kinds,
        )

    def __getitem__(self, index: Index) -> PromptResults:
        """Subset, keeping the prompt columns aligned."""
        idx = _normalize_index(index, len(self), torch.device("cpu"))
        base = super().__getitem__(idx)
        assert self.prompt_ids is not None and self.source_ids is not None  # set in __post_init__
        return PromptResults.wrap(
            base,
            self.prompt_scores[idx] if self.prompt_scores is not None else None,
            self.prompt_ids[idx],
            self.source_ids[idx],
            tuple(self.prompt_kinds[i] for i in idx.tolist()),
        )

    def to(self, device: torch.device | str) -> PromptResults:
        return PromptResults.wrap(
            super().to(device),
            self.prompt_scores,
            self.prompt_ids,
            self.source_ids,
            self.prompt_kinds,
        )
