"""`fastsam serve`: a local web page to click, box and type prompts (issue 18).

`service.py` does the work (shared Predictor under a lock, per-image LRU cache, prompts, exports),
`server.py` is the HTTP front (standard library only), `payload.py` the JSON, `limits.py` what a
request may ask, `static/` the page (plain HTML/JS, nothing loaded from the network).
"""

from fastsam_core.serve.limits import RequestError, ServeLimits
from fastsam_core.serve.server import FastSAMServer, make_server
from fastsam_core.serve.service import SegmentService

__all__ = ["FastSAMServer", "RequestError", "SegmentService", "ServeLimits", "make_server"]
