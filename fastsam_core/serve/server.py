"""HTTP front of `fastsam serve` on the standard library's ThreadingHTTPServer.

Routes (JSON answers; errors are {"error": message} with a 4xx/5xx status):

    GET  /                               the page (static/index.html, app.js, app.css)
    GET  /api/info                       model input size, device, limits
    POST /api/images                     body: image file bytes -> image id + everything masks
    GET  /api/images/ID                  the same answer again (cached)
    GET  /api/images/ID/image.png        the decoded image the masks refer to
    POST /api/images/ID/prompt           prompt JSON (serve/payload.py) -> rows
    GET  /api/images/ID/overlay.png      everything-mode overlay; POST with a prompt: its rows
    GET  /api/images/ID/results.json     everything-mode JSON; POST with a prompt: its rows

Safety: no part of a URL or body names a file (static files are a fixed table read at start;
image ids are looked up in the in-memory cache only); bodies are bounded (`ServeLimits`) before
they are read; on a loopback address, requests whose Host header is not a loopback name are
refused (DNS rebinding).
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import logging
import re
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fastsam_core.serve.limits import RequestError
from fastsam_core.serve.service import ID_CHARS, SegmentService

logger = logging.getLogger(__name__)

STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
IMAGE_ROUTE = re.compile(
    rf"^/api/images/([0-9a-f]{{{ID_CHARS}}})(?:/(prompt|overlay\.png|results\.json|image\.png))?$"
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DRAIN_LIMIT = 256 * 1024 * 1024  # larger refused bodies are not read: the connection is closed


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_static() -> dict[str, bytes]:
    folder = importlib.resources.files("fastsam_core.serve").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC_TYPES}


class FastSAMServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the shared `SegmentService` and the page's files."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: SegmentService) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.static = _load_static()
        self.check_host = is_loopback(address[0])
        super().__init__(address, RequestHandler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


class RequestHandler(BaseHTTPRequestHandler):
    """One request: route, read a bounded body, answer JSON, PNG or a static file."""

    server: FastSAMServer
    timeout = 60  # seconds a client may stall mid-request before its thread is freed
    server_version = "fastsam-serve"

    # ------------------------------------------------------------------ verbs
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            self._check_host()
            self._route(method, urlsplit(self.path).path)
        except RequestError as err:
            self._send_json({"error": str(err)}, err.status)
        except (TimeoutError, ConnectionError) as err:  # the client stalled or went away
            logger.debug("fastsam serve: %s %s: %s", method, self.path, err)
            self.close_connection = True
        except Exception as err:  # one bad request must not take the server down
            logger.exception("fastsam serve: %s %s failed", method, self.path)
            self._send_json({"error": f"internal error: {type(err).__name__}: {err}"}, 500)

    def _route(self, method: str, path: str) -> None:
        service = self.server.service
        if method == "GET" and path in ("/", "/index.html"):
            return self._send_static("index.html")
        if method == "GET" and path.startswith("/static/"):
            return self._send_static(path.removeprefix("/static/"))
        if method == "GET" and path == "/api/info":
            return self._send_json(service.info())
        if method == "POST" and path == "/api/images":
            data = self._read_body(service.limits.max_upload_bytes, "image upload")
            return self._send_json(service.upload(data))
        match = IMAGE_ROUTE.match(path)
        if match is None:
            raise RequestError(404, f"no such page or endpoint: {method} {path}")
        image_id, action = match.groups()
        body = self._read_json() if method == "POST" else None
        if action is None and method == "GET":
            return self._send_json(service.entry(image_id).document)
        if action == "image.png" and method == "GET":
            return self._send(service.image_png(image_id), "image/png")
        if action == "prompt" and method == "POST":
            return self._send_json(service.prompt_rows(image_id, body))
        if action == "overlay.png":
            return self._send(service.overlay_png(image_id, body), "image/png")
        if action == "results.json":
            return self._send_json(service.results_json(image_id, body))
        raise RequestError(405, f"{method} is not allowed on {path}")

    # ------------------------------------------------------------------ requests
    def _check_host(self) -> None:
        """On a loopback bind, only loopback Host names (a rebound DNS name is refused)."""
        if not self.server.check_host:
            return
        host = (self.headers.get("Host") or "").strip()
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name.lower() not in LOOPBACK_NAMES and not is_loopback(name):
            raise RequestError(403, f"Host {host!r} refused: this server answers local names only")

    def _read_body(self, limit: int, what: str) -> bytes:
        """The request body, refused (413) before reading when over `limit` bytes."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError(411, "send a Content-Length (chunked bodies are not accepted)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as err:
            raise RequestError(400, "Content-Length is not a number") from err
        if length < 0:
            raise RequestError(400, f"Content-Length must be >= 0, got {length}")
        if length > limit:
            self._discard(length)
            raise RequestError(413, f"{what} is {length:,} bytes; the limit is {limit:,}")
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read and drop a refused body so the client sees the answer instead of a reset."""
        self.close_connection = True
        if length > DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _read_json(self) -> Any:
        data = self._read_body(self.server.service.limits.max_json_bytes, "JSON body")
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(400, f"request body is not valid JSON: {err}") from err

    # ------------------------------------------------------------------ responses
    def _send_static(self, name: str) -> None:
        if name not in STATIC_TYPES:
            raise RequestError(404, f"no such file: /static/{name}")
        self._send(self.server.static[name], STATIC_TYPES[name])

    def _send_json(self, document: Any, status: int = 200) -> None:
        self._send(json.dumps(document).encode(), "application/json", status)

    def _send(self, data: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def make_server(
    service: SegmentService, host: str = "127.0.0.1", port: int = 8000
) -> FastSAMServer:
    """A bound (not yet serving) server; port 0 picks a free port (see `server.url`)."""
    if not is_loopback(host):
        logger.warning(
            "fastsam serve: listening on %s: anyone who can reach this address can use it", host
        )
    return FastSAMServer((host, port), service)
