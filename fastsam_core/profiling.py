"""The one timer: device-synced clock reads, median/IQR statistics and per-stage timing hooks.

* `measure(fn, warmup, repeats, device)`: warm-up calls excluded, the device synchronised before
  each clock read (gpt-fast's `device_sync`), median and IQR over the repeats (STYLE §10).
* `summarize(samples)`: the same statistics for samples timed elsewhere (e.g. per stage).
* `StageClock`: pass it as `timer=` to `Predictor.__call__` / `predict_images`; the predictor
  calls `timer.stage(name)` around each of its steps (`STAGES`), so what is measured is what the
  predictor says it does (no patching). Every stage is also a `torch.profiler.record_function`
  range, so a profiler trace shows the same names. No device syncs are added inside a call: on
  CUDA the split between stages is approximate (sync the totals).
Compile time is never inside `measure`: time the first call separately (see `runtime.py`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.profiler import record_function

STAGES = ("preprocess", "forward", "nms", "masks", "prompt")


def device_sync(device: torch.device | str | None = None) -> None:
    """Wait for queued device work so a host clock read covers it (no-op on CPU)."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class Stats:
    """Seconds over repeats: median, inter-quartile range (q3 - q1), min, and every sample."""

    median: float
    iqr: float
    min: float
    samples: tuple[float, ...]

    def ms(self) -> str:
        return f"{self.median * 1e3:.1f} ± {self.iqr * 1e3 / 2:.1f} ms"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Stats:
    """Median and IQR of `samples` (seconds); ValueError when empty."""
    if not samples:
        raise ValueError("summarize() needs at least one sample, got none")
    values = sorted(float(s) for s in samples)
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1, q3 = values[0], values[-1]
    return Stats(statistics.median(values), q3 - q1, values[0], tuple(values))


def measure(
    fn: Callable[[], Any],
    warmup: int = 1,
    repeats: int = 5,
    device: torch.device | str | None = None,
) -> Stats:
    """Time `fn()` `repeats` times after `warmup` untimed calls, syncing `device` around each."""
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}"
        )
    for _ in range(warmup):
        fn()
    device_sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        device_sync(device)
        samples.append(time.perf_counter() - start)
    return summarize(samples)


class NullClock:
    """The default `timer`: stages are profiler ranges only, nothing is accumulated."""

    def stage(self, name: str) -> contextlib.AbstractContextManager[Any]:
        return record_function(f"fastsam.{name}")


class StageClock(NullClock):
    """Accumulates seconds per stage name (a fresh clock per timed call)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            with record_function(f"fastsam.{name}"):
                yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def split(self, total: float) -> dict[str, float]:
        """Seconds per stage of `STAGES` plus "other" = `total` minus their sum."""
        stages = {s: self.seconds.get(s, 0.0) for s in STAGES}
        stages["other"] = max(total - sum(stages.values()), 0.0)
        return stages


NO_CLOCK = NullClock()
