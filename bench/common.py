"""Environment record and memory probes shared by every `bench/*.py` (STYLE §10).

The timer itself (`measure`, `summarize`, `Stats`, `device_sync`, per-stage `StageClock`) is the
package's one clock, `fastsam_core.profiling` (also behind `fastsam bench`), re-exported here.
* `env_info(device)`: device, CPU model, threads, load average, torch/triton versions, commit.
* `peak_memory(fn, device)`: the extra memory one call needs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fastsam_core.profiling import Stats, device_sync, measure, summarize

__all__ = [  # the timer is re-exported from the package's one clock
    "REPO_ROOT", "Stats", "device_sync", "env_info", "load_average", "measure", "peak_memory",
    "release_freed_memory", "summarize", "write_json",
]  # fmt: skip

REPO_ROOT = Path(__file__).resolve().parents[1]


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
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
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
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else _cpu_model(),
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
