"""`Predictor.stream`: segment a long source list one image at a time, with bounded memory.

Images are decoded ahead in a background thread (`io.prefetch`, a bounded queue) and segmented
`batch_size` at a time; each image yields its `Results` (with prompts applied) or an
`ImageError` in its place, so one unreadable file never stops the others. A video yields one
item per kept frame (`vid_stride=N`: frames 0, N, 2N...), each carrying its `frame` index.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from fastsam_core.io.images import ImageSource, LoadedImage, expand_sources
from fastsam_core.io.prefetch import prefetch_images
from fastsam_core.io.video import VideoFrame
from fastsam_core.predict_options import PredictOptions
from fastsam_core.profiling import NullClock
from fastsam_core.prompts.apply import prompt
from fastsam_core.prompts.clip_scorer import ClipScorer
from fastsam_core.prompts.prompt_set import (
    PROMPT_ARGUMENTS,
    PROMPT_OPTION_NAMES,
    Prompts,
    make_prompt_sets,
)
from fastsam_core.results import ImageError, Results

if TYPE_CHECKING:
    from fastsam_core.predictor import Predictor

# Failures of one image (or batch) that are reported in its place; anything else propagates.
_IMAGE_FAILURES = (ValueError, TypeError, RuntimeError, torch.cuda.OutOfMemoryError)


def stream_results(
    predictor: Predictor,
    source: ImageSource | Sequence[ImageSource],
    prompts: Prompts | None,
    timer: NullClock,
    prefetch: int,
    overrides: dict[str, Any],
) -> Generator[Results | ImageError, None, None]:
    """See `Predictor.stream`; `overrides` are its keyword arguments (plus `vid_stride`, the
    step between the video frames kept, which `expand_sources` takes)."""
    overrides = dict(overrides)
    vid_stride = overrides.pop("vid_stride", 1)
    keywords = {
        k: overrides.pop(k)
        for k in list(overrides)
        if k in PROMPT_ARGUMENTS or k in PROMPT_OPTION_NAMES or k == "bboxes"
    }
    clip_scorer = overrides.pop("clip_scorer", None)
    options = predictor.resolve_options(**overrides)  # bad options fail before anything runs
    if keywords:
        if prompts is not None:
            raise TypeError("pass either prompts=Prompts(...) or prompt keywords, not both")
        keywords.setdefault("box_rule", options.postprocess)
        prompt_sets = make_prompt_sets(1, **keywords)
        prompts = None if prompt_sets is None else prompt_sets[0]
    if prompts is not None and prompts.texts and clip_scorer is None:
        clip_scorer = predictor.clip_scorer  # built once, before the first image
    items = expand_sources(source, vid_stride)
    return _generate(predictor, items, options, prompts, clip_scorer, timer, prefetch)


def _generate(
    predictor: Predictor,
    items: list[ImageSource],
    options: PredictOptions,
    prompts: Prompts | None,
    clip_scorer: ClipScorer | None,
    timer: NullClock,
    prefetch: int,
) -> Generator[Results | ImageError, None, None]:
    pending: list[LoadedImage | ImageError] = []
    decoded_items = prefetch_images(items, bgr=options.bgr, depth=prefetch)
    for item, (name, decoded) in zip(items, decoded_items):
        if isinstance(decoded, LoadedImage):
            pending.append(decoded)
        else:
            frame = item.index if isinstance(item, VideoFrame) else None
            pending.append(ImageError(name, str(decoded), frame))
        if sum(isinstance(p, LoadedImage) for p in pending) == options.batch_size:
            yield from _segment(predictor, pending, options, prompts, clip_scorer, timer)
            pending = []
    yield from _segment(predictor, pending, options, prompts, clip_scorer, timer)


def _segment(
    predictor: Predictor,
    pending: list[LoadedImage | ImageError],
    options: PredictOptions,
    prompts: Prompts | None,
    clip_scorer: ClipScorer | None,
    timer: NullClock,
) -> Iterator[Results | ImageError]:
    """Segment the decoded images of `pending` as one batch; yield results and errors in order."""
    images = [p for p in pending if isinstance(p, LoadedImage)]
    outcomes: list[Results | ImageError]
    try:
        outcomes = list(predictor.predict_images(images, options, timer=timer)) if images else []
    except _IMAGE_FAILURES as err:
        outcomes = [ImageError(im.name, str(err), im.frame) for im in images]
    done = iter(outcomes)
    for item in pending:
        if isinstance(item, ImageError):
            yield item
            continue
        outcome = next(done)
        if prompts is not None and isinstance(outcome, Results):
            try:
                with timer.stage("prompt"):
                    outcome = prompt(
                        outcome, prompts=prompts.fit(outcome.orig_hw), clip_scorer=clip_scorer
                    )
            except _IMAGE_FAILURES as err:
                outcome = ImageError(item.name, str(err), item.frame)
        if isinstance(outcome, Results):
            outcome.frame = item.frame  # the predictor and prompt rows leave it unset
        yield outcome
