"""fastsam_core.hub: cache dir, names, and the real download code against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fastsam_core import hub

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB, several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"  # set per test: ok | truncated | error500
    payload = PAYLOAD

    def do_GET(self) -> None:  # http.server API name
        self.requests.append(self.path)
        if self.mode == "error500":
            self.send_error(500, "Internal Server Error")
            return
        body = self.payload
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header(
            "Content-Length", str(len(body) + (1000 if self.mode == "truncated" else 0))
        )
        self.end_headers()
        self.wfile.write(body)  # truncated: Content-Length promises 1000 bytes more than sent
        self.close_connection = True

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FASTSAM_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "fastsam"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "fastsam"
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "fh"))
    assert hub.cache_dir() == tmp_path / "fh"


def test_names_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.canonical_name("FastSAM.pt") == "fastsam-x"
    assert hub.canonical_name("FASTSAM-S") == "fastsam-s"
    assert hub.canonical_name("yolov8n.pt") is None
    monkeypatch.delenv("FASTSAM_WEIGHTS_URL", raising=False)
    assert hub.weights_url("FastSAM-s.pt").startswith("https://github.com/ultralytics/assets/")
    monkeypatch.setenv("FASTSAM_WEIGHTS_URL", "http://mirror/x/")
    assert hub.weights_url("FastSAM-s.pt") == "http://mirror/x/FastSAM-s.pt"


def test_download_success(server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "w" / "file.pt"
    assert (
        hub.download_file(f"{url}/file.pt", dest, sha256=PAYLOAD_SHA, progress=False) == PAYLOAD_SHA
    )
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["file.pt"]


def test_download_wrong_checksum(server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "file.pt"
    with pytest.raises(
        ValueError, match="checksum mismatch .* expected sha256 0+, got " + PAYLOAD_SHA
    ):
        hub.download_file(f"{url}/file.pt", dest, sha256="0" * 64, progress=False)
    assert _leftovers(tmp_path) == []


def test_download_truncated(server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    url, handler = server
    handler.mode = "truncated"
    with pytest.raises(ConnectionError, match="truncated|interrupted"):
        hub.download_file(f"{url}/file.pt", tmp_path / "file.pt", progress=False)
    assert _leftovers(tmp_path) == []


def test_download_server_error(server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    url, handler = server
    handler.mode = "error500"
    with pytest.raises(ConnectionError, match="HTTP 500"):
        hub.download_file(f"{url}/file.pt", tmp_path / "file.pt", progress=False)
    assert _leftovers(tmp_path) == []


def test_download_interrupted_midstream(
    server: tuple[str, type[_Handler]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or any exception) after the first chunk leaves neither the file nor a temp file."""
    url, _ = server

    class InterruptingBar:
        def __init__(self, **_: object) -> None:
            pass

        def __enter__(self) -> InterruptingBar:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(hub, "tqdm", InterruptingBar)
    dest = tmp_path / "file.pt"
    dest_existing = tmp_path / "keep.pt"
    dest_existing.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        hub.download_file(f"{url}/file.pt", dest, progress=False)
    assert _leftovers(tmp_path) == ["keep.pt"]
    with pytest.raises(KeyboardInterrupt):
        hub.download_file(f"{url}/file.pt", dest_existing, progress=False)
    assert dest_existing.read_bytes() == b"old"  # an existing file is untouched until the rename


def test_checkpoint_by_name_downloads_and_pins_unknown_hash(
    server: tuple[str, type[_Handler]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = server
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path))
    monkeypatch.setenv("FASTSAM_WEIGHTS_URL", url)
    monkeypatch.delenv("FASTSAM_OFFLINE", raising=False)
    path = hub.checkpoint_path("fastsam-s", progress=False)
    assert path == tmp_path / "FastSAM-s.pt" and path.read_bytes() == PAYLOAD
    assert (tmp_path / "FastSAM-s.pt.sha256").read_text().split()[0] == PAYLOAD_SHA
    path.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="recorded " + PAYLOAD_SHA):
        hub.checkpoint_path("fastsam-s", progress=False)
    # x has a published hash: our payload does not match it, so nothing is kept.
    with pytest.raises(ValueError, match="checksum mismatch"):
        hub.checkpoint_path("FastSAM.pt", progress=False)
    assert not (tmp_path / "FastSAM-x.pt").exists()


def test_offline_error_names_file_and_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, type[_Handler]]
) -> None:
    url, handler = server
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FASTSAM_WEIGHTS_URL", url)
    handler.mode = "error500"
    expected_place = str(tmp_path / "cache" / "FastSAM-x.pt")
    with pytest.raises(FileNotFoundError, match=f"place it at {expected_place}"):
        hub.resolve_weights("fastsam-x", progress=False)
    monkeypatch.setenv("FASTSAM_OFFLINE", "1")
    with pytest.raises(
        FileNotFoundError, match=f"downloads are off.*{url}/FastSAM-x.pt.*{expected_place}"
    ):
        hub.resolve_weights("fastsam-x", progress=False)
    with pytest.raises(FileNotFoundError, match="weights file not found: nope.pt"):
        hub.resolve_weights("nope.pt")
    with pytest.raises(ValueError, match="unknown weights name"):
        hub.checkpoint_path("yolov8n")


def test_resolve_by_name_downloads_converts_once_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, type[_Handler]]
) -> None:
    """The whole chain on a real (small, oracle-made) checkpoint: download, pin, convert, reuse."""
    cached = _oracle_checkpoint("s")  # FastSAM-s's architecture: YOLOv8s-seg, 1 class
    url, handler = server
    handler.payload = cached.read_bytes()
    requests = handler.requests
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path))
    monkeypatch.setenv("FASTSAM_WEIGHTS_URL", url + "/mirror")
    monkeypatch.delenv("FASTSAM_OFFLINE", raising=False)

    path = hub.resolve_weights("FastSAM-s.pt", progress=False)
    assert path == tmp_path / "FastSAM-s.safetensors" and requests == ["/mirror/FastSAM-s.pt"]
    assert (tmp_path / "FastSAM-s.pt").read_bytes() == cached.read_bytes()
    assert hub.resolve_weights("fastsam-s", progress=False) == path and len(requests) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "FastSAM-s.pt",
        "FastSAM-s.pt.sha256",
        "FastSAM-s.safetensors",
    ]

    from fastsam_core import Predictor

    predictor = Predictor("fastsam-s", imgsz=64)
    (result,) = predictor(np.zeros((48, 64, 3), np.uint8))
    assert predictor.model.cfg.scale == "s" and result.orig_hw == (48, 64)


def _oracle_checkpoint(scale: str) -> Path:
    from tests.support.checkpoints import CheckpointRecipe, oracle_checkpoints

    return oracle_checkpoints([CheckpointRecipe(scale=scale)])[0]  # fp16, released layout


def test_a_mirror_cannot_substitute_another_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, type[_Handler]]
) -> None:
    """FastSAM-s has no pinned hash: a first download of the wrong network is refused after the
    safe conversion (its architecture is checked) and nothing converted is kept."""
    url, handler = server
    handler.payload = _oracle_checkpoint("n").read_bytes()
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path))
    monkeypatch.setenv("FASTSAM_WEIGHTS_URL", url)
    monkeypatch.delenv("FASTSAM_OFFLINE", raising=False)
    with pytest.raises(ValueError, match="converts to scale n.*official file is scale s"):
        hub.resolve_weights("fastsam-s", progress=False)
    assert not (tmp_path / "FastSAM-s.safetensors").exists()
