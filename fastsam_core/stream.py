"""`Predictor.stream` and `OnnxPredictor.stream`: segment a long source list one image at a
time, with bounded memory.

Images are decoded ahead in a background thread (`io.prefetch`, a bounded queue) and segmented
`batch_size` at a time; each image yields its results (with prompts applied) or an `ImageError`
in its place, so one unreadable file never stops the others. A video yields one item per kept
frame (`vid_stride=N`: frames 0, N, 2N...), each carrying its `frame` index. The loop
(`stream_decoded`) imports no torch: the torch-free runtime `fastsam_core.onnxrt` runs it too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastsam_core.io.images import ImageSource, LoadedImage, expand_sources
from fastsam_core.io.prefetch import prefetch_images
from fastsam_core.io.video import VideoFrame

if TYPE_CHECKING:
    from fastsam_core.predictor import Predictor
    from fastsam_core.profiling import NullClock
    from fastsam_core.prompts.clip_scorer import ClipScorer
    from fastsam_core.prompts.prompt_set import Prompts
    from fastsam_core.results import Results

# Failures of one image (or batch) that are reported in its place; anything else propagates.
# torch.cuda.OutOfMemoryError is a RuntimeError.
IMAGE_FAILURES: tuple[type[Exception], ...] = (ValueError, TypeError, RuntimeError)


@dataclass(frozen=True)
class ImageError:
    """What `Predictor.stream` / `OnnxPredictor.stream` yield for a source that could not be
    read or segmented."""

    path: str  # the file, or "image<i>" for an in-memory source
    message: str  # the one-line error
    frame: int | None = None  # the frame index when `path` is a video

    def __str__(self) -> str:
        where = self.path if self.frame is None else f"{self.path} frame {self.frame}"
        return f"{where}: {self.message}"


class _HasFrame(Protocol):
    frame: int | None


R = TypeVar("R", bound=_HasFrame)


def stream_decoded(
    items: list[ImageSource],
    *,
    segment: Callable[[list[LoadedImage]], Sequence[R]],
    finish: Callable[[R, LoadedImage], R] | None = None,
    bgr: bool = False,
    batch_size: int = 1,
    prefetch: int = 2,
    array: bool = False,
    failures: tuple[type[Exception], ...] = IMAGE_FAILURES,
) -> Generator[R | ImageError, None, None]:
    """Decode `items` `prefetch` ahead and segment them `batch_size` at a time.

    Args:
        items: single-image sources (`io.images.expand_sources`).
        segment: decoded images -> one result per image (the predictor's `predict_images`).
        finish: applied to each image's result (prompts), or None.
        bgr, array: as `io.images.load_image` (array=True: numpy images, no torch).
        failures: exceptions reported as an `ImageError` for the image (or the whole batch)
            instead of propagating.
    Yields:
        Each item's result (its `frame` set from the source) or an `ImageError`, in order.
    """
    pending: list[LoadedImage | ImageError] = []
    decoded_items = prefetch_images(items, bgr=bgr, depth=prefetch, array=array)
    for item, (name, decoded) in zip(items, decoded_items):
        if isinstance(decoded, LoadedImage):
            pending.append(decoded)
        else:
            frame = item.index if isinstance(item, VideoFrame) else None
            pending.append(ImageError(name, str(decoded), frame))
        if sum(isinstance(p, LoadedImage) for p in pending) == batch_size:
            yield from _segment(pending, segment, finish, failures)
            pending = []
    yield from _segment(pending, segment, finish, failures)


def _segment(
    pending: list[LoadedImage | ImageError],
    segment: Callable[[list[LoadedImage]], Sequence[R]],
    finish: Callable[[R, LoadedImage], R] | None,
    failures: tuple[type[Exception], ...],
) -> Iterator[R | ImageError]:
    """Segment the decoded images of `pending` as one batch; yield results and errors in order."""
    images = [p for p in pending if isinstance(p, LoadedImage)]
    outcomes: list[R | ImageError]
    try:
        outcomes = list(segment(images)) if images else []
    except failures as err:
        outcomes = [ImageError(im.name, str(err), im.frame) for im in images]
    done = iter(outcomes)
    for item in pending:
        if isinstance(item, ImageError):
            yield item
            continue
        outcome = next(done)
        if not isinstance(outcome, ImageError):
            if finish is not None:
                try:
                    outcome = finish(outcome, item)
                except failures as err:
                    yield ImageError(item.name, str(err), item.frame)
                    continue
            outcome.frame = item.frame  # the predictor and prompt rows leave it unset
        yield outcome


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
    from fastsam_core.prompts.prompt_set import (
        PROMPT_ARGUMENTS,
        PROMPT_OPTION_NAMES,
        make_prompt_sets,
    )

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
    return stream_decoded(
        items,
        segment=lambda images: predictor.predict_images(images, options, timer=timer),
        finish=None if prompts is None else _prompter(prompts, clip_scorer, timer),
        bgr=options.bgr,
        batch_size=options.batch_size,
        prefetch=prefetch,
    )


def _prompter(
    prompts: Prompts, clip_scorer: ClipScorer | None, timer: NullClock
) -> Callable[[Results, LoadedImage], Results]:
    """Apply `prompts` (clipped to each image) to one image's everything-mode `Results`."""
    from fastsam_core.prompts.apply import prompt

    def finish(results: Results, image: LoadedImage) -> Results:
        with timer.stage("prompt"):
            return prompt(results, prompts=prompts.fit(results.orig_hw), clip_scorer=clip_scorer)

    return finish
