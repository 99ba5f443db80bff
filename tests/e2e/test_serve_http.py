"""`fastsam serve` over plain HTTP (issue 18): every endpoint against the Python API, refusals,
the cache, concurrent requests and the CLI. Server in a thread on port 0, tiny checkpoint."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from fastsam_core import Predictor
from fastsam_core.export.rle import decode
from fastsam_core.io.images import load_image
from fastsam_core.prompts import ClipSettings, make_prompts, prompt
from fastsam_core.serve import SegmentService, ServeLimits, make_server
from fastsam_core.serve.cache import CachedImage, ImageCache
from tests.support.photos import photo
from tests.support.tiny_clip import register_tiny_clip

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"
IMGSZ = 256
PHOTO = photo("astronaut.jpg")  # 512x512; the random-weight tiny net finds masks on it
PHOTO_2 = photo("coffee.jpg")


@contextmanager
def serving(service: SegmentService) -> Iterator[str]:
    """Serve `service` on 127.0.0.1:<free port> in a thread; yields the base URL."""
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one raw request (the path is sent exactly as given)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        connection.request(method, parts.path or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_json(url: str, document: Any) -> tuple[int, Any]:
    status, _, data = request(url, "POST", json.dumps(document).encode())
    return status, json.loads(data)


def masks_of(records: list[dict[str, Any]]) -> list[np.ndarray]:
    return [decode(r["segmentation"]) for r in records]


def assert_same_masks(records: list[dict[str, Any]], expected: Any) -> None:
    """JSON rows equal a Results (masks pixel for pixel, boxes and scores)."""
    assert len(records) == len(expected)
    got = masks_of(records)
    for mask, rle in zip(got, expected.to_rle()):
        np.testing.assert_array_equal(mask, decode(rle))
    np.testing.assert_allclose([r["bbox_xyxy"] for r in records], expected.boxes.reshape(-1, 4))
    np.testing.assert_allclose([r["score"] for r in records], expected.scores)


def inside_point(mask: np.ndarray, margin: int = 3) -> tuple[int, int]:
    """An (x, y) pixel of `mask` at least `margin` pixels from its border (its most central one)."""
    core = mask.copy()
    for _ in range(margin):  # erode by one pixel per step (4-neighbourhood)
        padded = np.pad(core, 1)
        core &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    ys, xs = np.nonzero(core if core.any() else mask)
    centre = np.array([ys.mean(), xs.mean()])
    best = np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2)
    return int(xs[best]), int(ys[best])


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    clip = ClipSettings(model=register_tiny_clip(), weights=None)  # random tiny CLIP, no download
    return Predictor(CHECKPOINT, imgsz=IMGSZ, device="cpu", clip=clip)


@pytest.fixture(scope="module")
def service(predictor: Predictor) -> SegmentService:
    return SegmentService(predictor, ServeLimits(cache_images=4))


@pytest.fixture(scope="module")
def base(service: SegmentService) -> Iterator[str]:
    with serving(service) as url:
        yield url


@pytest.fixture(scope="module")
def uploaded(base: str) -> dict[str, Any]:
    status, headers, data = request(f"{base}/api/images", "POST", PHOTO.read_bytes())
    assert status == 200, data
    assert headers["Content-Type"] == "application/json"
    return json.loads(data)


@pytest.fixture(scope="module")
def everything(predictor: Predictor) -> Any:
    return predictor(PHOTO)[0]


def test_page_and_static_files(base: str) -> None:
    status, headers, data = request(f"{base}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<canvas id="view"' in data and b'src="/static/app.js"' in data
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert b"http" not in data.replace(b"http-equiv", b"")  # nothing loads from the network
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, data = request(f"{base}/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind), name
        assert b"http://" not in data and b"https://" not in data, name


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../pyproject.toml",
        "/static/%2e%2e/%2e%2e/setup.py",
        "/static//etc/passwd",
        "/static/server.py",
        "/../setup.py",
        "/api/images/../../setup.py",
        "/api/images/0123456789abcdef/../../../setup.py",
    ],
)
def test_no_client_path_reaches_the_file_system(base: str, path: str) -> None:
    status, _, data = request(f"{base}{path}")
    assert status == 404, (path, data)
    assert b"[build-system]" not in data and b"root:" not in data


def test_upload_returns_everything_mode(
    base: str, uploaded: dict[str, Any], everything: Any
) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", uploaded["image_id"])
    assert (uploaded["height"], uploaded["width"]) == everything.orig_hw == (512, 512)
    assert len(uploaded["masks"]) == len(everything) > 0
    assert_same_masks(uploaded["masks"], everything)
    for record, mask in zip(uploaded["masks"], masks_of(uploaded["masks"])):
        assert record["area"] == int(mask.sum())
    # The same answer again: by id, and for a re-upload of the same bytes (cached, not re-run).
    status, _, data = request(f"{base}/api/images/{uploaded['image_id']}")
    assert status == 200 and json.loads(data) == uploaded
    status, _, data = request(f"{base}/api/images", "POST", PHOTO.read_bytes())
    assert status == 200 and json.loads(data) == uploaded


def test_info(base: str) -> None:
    status, _, data = request(f"{base}/api/info")
    info = json.loads(data)
    assert status == 200 and info["imgsz"] == [IMGSZ, IMGSZ] and info["device"] == "cpu"
    assert info["limits"]["cache_images"] == 4


@pytest.mark.parametrize("point_mode", ["union", "instances"])
def test_point_prompt_matches_the_api(
    base: str, uploaded: dict[str, Any], everything: Any, point_mode: str
) -> None:
    masks = masks_of(uploaded["masks"])
    x, y = inside_point(masks[int(np.argmax([m.sum() for m in masks]))])
    body = {"points": [[x, y]], "labels": [1], "options": {"point_mode": point_mode}}
    status, answer = post_json(f"{base}/api/images/{uploaded['image_id']}/prompt", body)
    assert status == 200, answer
    expected = prompt(everything, points=[[x, y]], labels=[1], point_mode=point_mode)
    assert len(answer["rows"]) >= 1  # the point lies on a mask
    assert_same_masks(answer["rows"], expected)
    assert {r["prompt_kind"] for r in answer["rows"]} == {"point"}
    assert all(m[y, x] for m in masks_of(answer["rows"]))
    assert answer["seconds"] >= 0


def test_negative_point_clears_the_union(
    base: str, uploaded: dict[str, Any], everything: Any
) -> None:
    x, y = inside_point(masks_of(uploaded["masks"])[0])
    body = {"points": [[x, y], [x, y]], "labels": [1, 0], "options": {"point_mode": "union"}}
    status, answer = post_json(f"{base}/api/images/{uploaded['image_id']}/prompt", body)
    assert status == 200, answer
    expected = prompt(everything, points=[[x, y], [x, y]], labels=[1, 0], point_mode="union")
    assert answer["rows"] == [] and len(expected) == 0  # the last point on a mask decides


def test_box_prompts_one_row_per_box(base: str, uploaded: dict[str, Any], everything: Any) -> None:
    boxes = [uploaded["masks"][i]["bbox_xyxy"] for i in (1, 0)]
    status, answer = post_json(f"{base}/api/images/{uploaded['image_id']}/prompt", {"boxes": boxes})
    assert status == 200, answer
    assert [r["prompt_id"] for r in answer["rows"]] == [0, 1]
    assert [r["prompt_kind"] for r in answer["rows"]] == ["box", "box"]
    assert_same_masks(answer["rows"], prompt(everything, boxes=boxes))


def test_text_prompt_with_clip(
    base: str, uploaded: dict[str, Any], everything: Any, predictor: Predictor
) -> None:
    status, answer = post_json(
        f"{base}/api/images/{uploaded['image_id']}/prompt", {"texts": "an astronaut"}
    )
    assert status == 200, answer
    expected = prompt(everything, texts=["an astronaut"], clip_scorer=predictor.clip_scorer)
    assert len(answer["rows"]) == 1 and answer["rows"][0]["prompt_kind"] == "text"
    assert_same_masks(answer["rows"], expected)


def test_text_prompt_without_clip_is_a_clear_503(predictor: Predictor) -> None:
    missing = ClipSettings(model="ViT-B-32", weights="/nonexistent/clip-weights.pt")
    no_clip = Predictor(predictor.model, imgsz=IMGSZ, device="cpu", fuse=False, clip=missing)
    with serving(SegmentService(no_clip)) as url:
        status, _, data = request(f"{url}/api/images", "POST", PHOTO.read_bytes())
        image_id = json.loads(data)["image_id"]
        status, answer = post_json(f"{url}/api/images/{image_id}/prompt", {"texts": ["a cup"]})
    assert status == 503
    assert answer["error"].startswith("text prompts are unavailable: CLIP weights file")


def test_overlay_png_and_image_png(base: str, uploaded: dict[str, Any], everything: Any) -> None:
    image_id = uploaded["image_id"]
    status, headers, data = request(f"{base}/api/images/{image_id}/image.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(data))), load_image(PHOTO).image.numpy()
    )
    status, headers, data = request(f"{base}/api/images/{image_id}/overlay.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), everything.plot())
    box = [uploaded["masks"][0]["bbox_xyxy"]]
    x, y = inside_point(masks_of(uploaded["masks"])[0])
    body = {"boxes": box, "points": [[x, y]], "labels": [0]}
    status, _, data = request(
        f"{base}/api/images/{image_id}/overlay.png", "POST", json.dumps(body).encode()
    )
    prompts = make_prompts(boxes=box, points=[[x, y]], labels=[0])
    expected = prompt(everything, prompts=prompts).plot(prompts=prompts)  # masks, box and point
    assert status == 200
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), expected)


def test_results_json(base: str, uploaded: dict[str, Any], everything: Any) -> None:
    image_id = uploaded["image_id"]
    status, _, data = request(f"{base}/api/images/{image_id}/results.json")
    document = json.loads(data)
    assert status == 200
    assert document["image"] == {"path": image_id, "height": 512, "width": 512}
    assert document["annotations"] == everything.to_json()["annotations"]
    x, y = inside_point(masks_of(uploaded["masks"])[0])
    status, document = post_json(f"{base}/api/images/{image_id}/results.json", {"points": [[x, y]]})
    assert status == 200 and document["annotations"]
    assert {a["prompt_kind"] for a in document["annotations"]} == {"point"}


def _encoded(width: int, height: int, fmt: str = "PNG") -> bytes:
    """An image of that size encoded as `fmt`: flat red PNG (small file), noise JPEG."""
    if fmt == "PNG":
        image = Image.new("RGB", (width, height), (200, 30, 30))
    else:
        noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(noise)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"just some text, not an image", 415, "the upload is not an image"),
        (b"", 415, "the upload is empty"),
        (_encoded(150, 150, "JPEG")[:3000], 415, "the image cannot be decoded"),
        (_encoded(300, 300), 413, "image is 300x300 = 90,000 pixels; the limit is 40,000"),
        (PHOTO.read_bytes(), 413, "image upload is 66,489 bytes; the limit is 50,000"),
    ],
    ids=["text", "empty", "truncated", "pixels", "bytes"],
)
def test_bad_uploads_are_refused(
    predictor: Predictor, body: bytes, status: int, message: str
) -> None:
    limits = ServeLimits(max_upload_bytes=50_000, max_pixels=200 * 200)
    with serving(SegmentService(predictor, limits)) as url:
        got, _, data = request(f"{url}/api/images", "POST", body)
        assert (got, json.loads(data)["error"][: len(message)]) == (status, message)
        got, _, _ = request(f"{url}/api/images", "POST", _encoded(100, 100))  # still serving
        assert got == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/images/0123456789abcdef/prompt", {"points": [[1, 1]]}, 404, "unknown image id"),
        ("/prompt", b"{not json", 400, "request body is not valid JSON"),
        ("/prompt", [1, 2], 400, "prompt request must be a JSON object"),
        ("/prompt", {"clip_scorer": 1}, 400, "unknown prompt key(s) ['clip_scorer']"),
        ("/prompt", {}, 400, "give at least one prompt"),
        ("/prompt", {"points": [[1, 1]], "options": {"prompts": 1}}, 400, "unknown prompt option"),
        ("/prompt", {"points": [[1, 1]], "options": {"point_mode": "x"}}, 400, "bad prompt: point"),
        ("/prompt", {"points": [[1, 2, 3]]}, 400, "bad prompt: "),
        ("/prompt", {"boxes": "0,0,5,5"}, 400, "boxes must be a JSON list"),
        ("/prompt", {"points": [[1, 1]] * 65}, 400, "points has 65 entries; at most 64"),
        ("/prompt", {"texts": ["x" * 201]}, 400, "texts must be strings of at most 200"),
        ("", {}, 405, "POST is not allowed"),
        ("/api/nothing", {}, 404, "no such page or endpoint"),
    ],
)
def test_bad_requests_get_one_line_errors(
    base: str, uploaded: dict[str, Any], path: str, body: Any, status: int, message: str
) -> None:
    if not path.startswith("/api/"):
        path = f"/api/images/{uploaded['image_id']}{path}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, _, answer = request(f"{base}{path}", "POST", data)
    error = json.loads(answer)["error"]
    assert got == status and error.startswith(message) and "\n" not in error, error


def test_foreign_host_header_is_refused(base: str) -> None:
    status, _, data = request(f"{base}/api/info", headers={"Host": "rebound.example.com"})
    assert status == 403 and "local names only" in json.loads(data)["error"]
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        assert request(f"{base}/api/info", headers={"Host": host})[0] == 200, host


def test_cache_is_bounded_lru(predictor: Predictor) -> None:
    with serving(SegmentService(predictor, ServeLimits(cache_images=1))) as url:
        first = json.loads(request(f"{url}/api/images", "POST", PHOTO.read_bytes())[2])
        request(f"{url}/api/images", "POST", PHOTO_2.read_bytes())
        status, _, data = request(f"{url}/api/images/{first['image_id']}")
    assert status == 404 and "upload the image again" in json.loads(data)["error"]
    cache = ImageCache(2)
    entries = [CachedImage(str(i), None, {}) for i in range(3)]  # type: ignore[arg-type]
    cache.put(entries[0])
    cache.put(entries[1])
    assert cache.get("0") is entries[0]  # "0" is now the most recently used
    cache.put(entries[2])
    assert ("0" in cache, "1" in cache, "2" in cache, len(cache)) == (True, False, True, 2)


def test_concurrent_requests_share_one_model(predictor: Predictor) -> None:
    photos = [PHOTO, PHOTO_2] * 3
    expected = {p: predictor(p)[0] for p in (PHOTO, PHOTO_2)}
    with serving(SegmentService(predictor)) as url:

        def job(path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
            document = json.loads(request(f"{url}/api/images", "POST", path.read_bytes())[2])
            status, answer = post_json(
                f"{url}/api/images/{document['image_id']}/prompt", {"boxes": [[0, 0, 200, 200]]}
            )
            assert status == 200, answer
            return path, document, answer

        with ThreadPoolExecutor(max_workers=6) as pool:
            done = list(pool.map(job, photos))
    for path, document, answer in done:
        assert_same_masks(document["masks"], expected[path])
        assert_same_masks(answer["rows"], prompt(expected[path], boxes=[[0, 0, 200, 200]]))


def test_serve_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="serve limit max_pixels must be a positive integer"):
        ServeLimits(max_pixels=0).validated()


def test_cli_serves_until_stopped() -> None:
    """`fastsam serve --port 0` prints its URL, answers, and stops on SIGINT with exit code 0."""
    # -X faulthandler: if the server does not stop, SIGABRT makes it print where it is stuck.
    # Python's SIGINT handler re-installed: a runner started in the background (nohup, &) ignores
    # SIGINT, and a child inheriting that would install no KeyboardInterrupt handler.
    main = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from fastsam_core.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-X", "faulthandler", "-c", main, "serve"]
    command += ["--model", str(CHECKPOINT), "--imgsz", str(IMGSZ), "--device", "cpu"]
    command += ["--port", "0", "--cache-images", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(r"fastsam serve: (http://127\.0\.0\.1:\d+)/ ", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        status, _, data = request(f"{match.group(1)}/api/info")
        assert status == 200 and json.loads(data)["limits"]["cache_images"] == 2
        port = match.group(1).rsplit(":", 1)[1]  # taken now: a second server says so
        taken = [*command[:-4], "--port", port]
        done = subprocess.run(taken, check=False, capture_output=True, text=True, cwd=REPO, env=env)
        assert done.returncode == 1 and done.stderr.startswith(
            f"fastsam serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        ), done.stderr
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack
            out, err = process.communicate(timeout=30)
            raise AssertionError(f"the server did not stop on SIGINT:\n{err[-6000:]}") from None
        assert process.returncode == 0 and "stopped" in out, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_bad_arguments_before_loading() -> None:
    command = [sys.executable, "-m", "fastsam_core", "serve", "--model", "missing.pt"]
    done = subprocess.run(
        [*command, "--port", "70000"],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "fastsam serve: error: --port must be in 0..65535, got 70000"
