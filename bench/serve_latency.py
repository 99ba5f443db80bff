"""Latency of `fastsam serve` per request over HTTP, in one process (issue 18).

python -m bench.serve_latency [CHECKPOINT] [IMGSZ] [PHOTO]   (run from the repo root; defaults:
the committed tiny checkpoint, 256, the bundled astronaut.jpg). Prints the median and IQR of the
whole HTTP round trip for upload + everything mode (cache miss), a cached re-upload, and point /
box prompts on the cached results.
"""

import http.client
import json
import os
import statistics
import sys
import threading
import time

import numpy as np
import torch

from fastsam_core import Predictor
from fastsam_core.export.rle import decode
from fastsam_core.serve import SegmentService, make_server
from fastsam_core.serve.cache import ImageCache

ckpt = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ul120_tiny_seg_r26.pt"
imgsz = int(sys.argv[2]) if len(sys.argv) > 2 else 256
photo = sys.argv[3] if len(sys.argv) > 3 else "tests/fixtures/images/astronaut.jpg"
REPEATS = 20
service = SegmentService(Predictor(ckpt, imgsz=imgsz, device="cpu"))
service.warm_up()
server = make_server(service, "127.0.0.1", 0)
threading.Thread(target=server.serve_forever, daemon=True).start()
host, port = server.server_address[:2]


def post(path, body):
    c = http.client.HTTPConnection(host, port)
    t = time.perf_counter()
    c.request("POST", path, body=body)
    r = c.getresponse()
    data = r.read()
    dt = time.perf_counter() - t
    c.close()
    assert r.status == 200, data[:200]
    return dt, json.loads(data)


def stats(name, samples):
    ms = sorted(1000 * s for s in samples)
    q1, q3 = np.percentile(ms, [25, 75])
    print(
        f"{name:34s} median {statistics.median(ms):8.1f} ms  IQR {q1:7.1f}-{q3:7.1f}  n={len(ms)}"
    )


data = open(photo, "rb").read()
every = []
for _ in range(5):
    service.cache = ImageCache(8)  # a cache miss each time: everything mode runs
    dt, doc = post("/api/images", data)
    every.append(dt)
stats(f"upload + everything ({len(doc['masks'])} masks)", every)
stats("upload again (cached)", [post("/api/images", data)[0] for _ in range(REPEATS)])
iid = doc["image_id"]
masks = [decode(m["segmentation"]) for m in doc["masks"]]
ys, xs = np.nonzero(masks[int(np.argmax([m.sum() for m in masks]))])
pt = [[int(xs[len(xs) // 2]), int(ys[len(ys) // 2])]]
boxes = [m["bbox_xyxy"] for m in doc["masks"][:4]]
cases = {
    "point (union)": {"points": pt, "options": {"point_mode": "union"}},
    "point (instances)": {"points": pt, "options": {"point_mode": "instances"}},
    "box x1": {"boxes": boxes[:1]},
    "box x4": {"boxes": boxes},
}
for name, body in cases.items():
    samples, rows, server_s = [], 0, []
    for _ in range(REPEATS):
        dt, ans = post(f"/api/images/{iid}/prompt", json.dumps(body).encode())
        samples.append(dt)
        server_s.append(ans["seconds"])
        rows = len(ans["rows"])
    stats(f"{name} -> {rows} row(s), HTTP", samples)
    stats(f"{name}, server prompt+RLE", server_s)
print(
    "torch",
    torch.__version__,
    "threads",
    torch.get_num_threads(),
    "load",
    os.getloadavg(),
    "imgsz",
    imgsz,
    ckpt,
    photo,
)
