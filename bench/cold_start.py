"""Cold start of `bench/end_to_end.py`: import + load + first call in a fresh process, peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, load_average
from bench.end_to_end_inputs import cache_dir

_WORKER = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
side, weights, image_path, imgsz, retina, threads, spec, conf = sys.argv[1:9]
imgsz, retina, threads, conf = int(imgsz), retina == "1", int(threads), float(conf)
import numpy as np, torch
if side == "oracle":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import FastSAM
torch.set_num_threads(threads)
if side == "ours":
    from fastsam_core.predictor import Predictor
t_import = time.perf_counter() - t0
image = np.load(image_path)
t1 = time.perf_counter()
if side == "ours":
    model = Predictor(weights, conf=conf, iou=0.9, postprocess="ultralytics", bgr=True,
                      **json.loads(spec))
    call = lambda: model(image, imgsz=imgsz, retina_masks=retina)
else:
    model = FastSAM(weights)
    call = lambda: model(image, imgsz=imgsz, retina_masks=retina, conf=conf, iou=0.9,
                         device="cpu", verbose=False)
t_load = time.perf_counter() - t1
t2 = time.perf_counter()
call()
t_first = time.perf_counter() - t2
torch.set_num_threads(threads)  # the oracle's first call sets 1 thread on a 2-core machine
t3 = time.perf_counter()
call()
t_second = time.perf_counter() - t3

def peak_rss_mb():
    # VmHWM: this process image's own high-water mark (ru_maxrss would include the parent's RSS
    # at fork time, which Linux carries across exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import_s": t_import, "load_s": t_load, "first_call_s": t_first,
                  "second_call_s": t_second, "cold_start_s": t_import + t_load + t_first,
                  "peak_rss_mb": peak_rss_mb(),
                  "threads": torch.get_num_threads()}))
"""


def cold_start(
    side: str,
    weights: Path,
    image: np.ndarray,
    imgsz: int,
    retina: bool,
    threads: int,
    variant: str,
    spec: dict[str, Any],
    conf: float,
) -> dict[str, Any]:
    """Import + load + first call in a fresh process; its peak RSS (one side per process).

    `spec` is our variant's Predictor keywords (unused for the oracle), `conf` both sides'.
    """
    path = cache_dir() / f"coldstart-{os.getpid()}.npy"
    np.save(path, image)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "YOLO_CONFIG_DIR": str(cache_dir() / "ultralytics-config"),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_WORKER), side, str(weights), str(path), str(imgsz),
             "1" if retina else "0", str(threads), json.dumps(spec if side == "ours" else {}), str(conf)],
            capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=1800, check=False,
        )  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} cold-start worker failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        side=side, variant=variant if side == "ours" else None, imgsz=imgsz, retina=retina
    )
    result["load_average"] = load_average()
    return result
