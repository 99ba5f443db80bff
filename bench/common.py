"""The one benchmark timer and environment record shared by every `bench/*.py` (STYLE §10).

* `measure(fn, warmup, repeats, device)`: warm-up calls excluded, the device synchronised before
  each clock read (gpt-fast's `device_sync`), median and IQR over the repeats.
* `summarize(samples)`: the same statistics for samples timed elsewhere (e.g. per stage).
* `env_info(device)`: device, CPU model, threads, load average, torch/triton versions, commit.
Compile time is never inside `measure`: time the first call separately (see `fastsam_core.runtime`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


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
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> tuple[float, float, float] | None:
    try:
        return tuple(float(v) for v in Path("/proc/loadavg").read_text().split()[:3])  # type: ignore[return-value]
    except (OSError, ValueError):
        return None


def env_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a benchmark number depends on: device, CPU, threads, load, versions, commit."""
    device = torch.device(device)
    try:
        import triton

        triton_version: str | None = triton.__version__
    except ImportError:
        triton_version = None
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": load_average(),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "commit": _commit(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return info


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as indented JSON (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_memory(fn: Callable[[], Any], device: torch.device | str | None = None) -> int | None:
    """Peak bytes one `fn()` call needs above what was live before it (its result dropped at once).

    CUDA: `torch.cuda.max_memory_allocated` after a reset. CPU: the resident-set high-water mark
    (Linux VmHWM, reset through /proc/self/clear_refs) minus the resident size before the call; it
    includes allocator effects, so read it as "about this much". None where it cannot be measured.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    device_sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        device_sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current VmRSS
    except OSError:
        return None
    rss_kb = _status_kb("VmRSS")
    fn()
    peak_kb = _status_kb("VmHWM")
    return None if rss_kb is None or peak_kb is None else max(peak_kb - rss_kb, 0) * 1024


def release_freed_memory() -> bool:
    """Make glibc hand freed blocks of >= 64 KiB back to the OS (mmap them, never trim-cache them).

    Call once at the start of a benchmark that reports CPU `peak_memory`: otherwise memory freed by an
    earlier, larger run stays resident and hides the next run's peak. Returns False off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter ids from <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 1 << 16)) and bool(libc.mallopt(m_trim_threshold, 0))
