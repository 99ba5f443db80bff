"""Per-stage wall-clock timing of one `Predictor` call (`fastsam bench`, `bench/end_to_end.py`).

Stages: preprocess (letterbox + input conversion), forward, nms, masks, prompt; the caller
derives "other" as the end-to-end time minus their sum. Timing wraps the predictor's steps for
the duration of a `with instrumented(predictor, clock):` block and restores them on exit. No
device syncs are added: on CUDA the split between stages is approximate (sync the totals).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

STAGES = ("preprocess", "forward", "nms", "masks", "prompt")


class StageClock:
    """Accumulates seconds per stage name (a fresh clock per timed call)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` with its time added to stage `name`."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return fn(*args, **kwargs)

        return timed


class _TimedRunner:
    """Proxy of `Predictor.runner`: `to_input` counts as preprocess, the call as forward."""

    def __init__(self, runner: Any, clock: StageClock) -> None:
        self.runner, self.clock = runner, clock

    def to_input(self, batch: Any) -> Any:
        with self.clock.stage("preprocess"):
            return self.runner.to_input(batch)

    def __call__(self, x: Any) -> Any:
        with self.clock.stage("forward"):
            return self.runner(x)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)


@contextlib.contextmanager
def instrumented(predictor: Any, clock: StageClock) -> Iterator[None]:
    """Time `predictor`'s steps into `clock` inside the block (module globals restored on exit)."""
    import fastsam_core.predictor as module

    saved = {
        name: getattr(module, name)
        for name in ("non_max_suppression", "get_mask_backend", "prompt")
    }
    module.non_max_suppression = clock.wrap("nms", saved["non_max_suppression"])  # type: ignore[assignment]
    module.get_mask_backend = lambda name: clock.wrap("masks", saved["get_mask_backend"](name))  # type: ignore[assignment]
    module.prompt = clock.wrap("prompt", saved["prompt"])  # type: ignore[assignment]
    runner = predictor.runner
    predictor.runner = _TimedRunner(runner, clock)
    predictor._letterbox_batch = clock.wrap("preprocess", predictor._letterbox_batch)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)
        predictor.runner = runner
        del predictor._letterbox_batch  # back to the class's staticmethod
