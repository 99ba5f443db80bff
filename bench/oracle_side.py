"""The oracle side of `bench/end_to_end.py` (ultralytics 8.4.190 FastSAM), imported only by bench.

ultralytics is AGPL and a test/bench tool: the product never imports it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from bench.end_to_end_inputs import cache_dir

THREADS = torch.get_num_threads()  # --threads; restored after every oracle call (see oracle_call)


def import_oracle(threads: int) -> Any:
    """ultralytics' FastSAM class; every later thread check expects `threads` (--threads)."""
    global THREADS
    THREADS = threads
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics-config"))
    from ultralytics import FastSAM

    torch.set_num_threads(threads)  # ultralytics sets torch to 1 thread on import
    return FastSAM


def oracle_call(oracle: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the oracle, then restore our thread count: its predictor setup (first call) runs
    `select_device`, which sets torch to min(8, cpu_count - 1) = 1 thread on a 2-core machine,
    and would silently make every later timing (ours and its own) single-threaded."""
    try:
        return oracle(*args, **kwargs)
    finally:
        torch.set_num_threads(THREADS)


def check_threads(where: str) -> None:
    """Fail loudly instead of timing with a thread count other than --threads."""
    if torch.get_num_threads() != THREADS:
        raise RuntimeError(
            f"{where}: torch runs {torch.get_num_threads()} threads, expected --threads {THREADS}"
        )


def rle_encode_dense(masks: torch.Tensor) -> list[dict[str, Any]]:
    """COCO RLE of (N, H, W) bool masks with pycocotools (the oracle's output encoding)."""
    from pycocotools import mask as mask_utils

    if masks.shape[0] == 0:
        return []
    array = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    return mask_utils.encode(array)
