"""`fastsam serve` in a real headless browser (issue 18): Debian's chromium + chromedriver driven
by Selenium. Upload a bundled photo, click a point, drag a box, right-click a background point:
the page draws exactly the masks the JSON API returns for the prompts it sent; a bad upload shows
its error. With FASTSAM_SCREENSHOT=1 the page is saved to docs/images/serve.png (README).

Needs: apt-get install -y chromium chromium-driver; pip install selenium (the `test` extra).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fastsam_core import Predictor
from fastsam_core.export.rle import decode
from fastsam_core.prompts import ClipSettings
from fastsam_core.serve import SegmentService, make_server
from tests.support.photos import photo

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs selenium: pip install -e '.[test]'"
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"
PHOTO = photo("astronaut.jpg")  # 512x512: shown at 1:1 in the 1280 px wide window
SCREENSHOT = REPO / "docs" / "images" / "serve.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromedriver: apt-get install -y chromium chromium-driver",
)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    no_clip = ClipSettings(weights=str(REPO / "missing-clip-weights.pt"))  # never downloads
    predictor = Predictor(CHECKPOINT, imgsz=256, device="cpu", clip=no_clip)
    server = make_server(SegmentService(predictor), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url.rstrip("/")
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    options.add_argument("--force-device-scale-factor=1")
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def api(base: str, path: str, document: Any = None, data: bytes | None = None) -> Any:
    body = data if data is not None else None if document is None else json.dumps(document).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}{path}", data=body)) as response:
        return json.loads(response.read())


def settle(driver: Any) -> None:
    """Wait until the page has no request in flight."""
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return window.fastsam.pending === 0")
    )


def canvas_rgba(driver: Any, expression: str) -> np.ndarray:
    """(H, W, 4) uint8 pixels of a canvas, read back through toDataURL (exact, PNG)."""
    url = driver.execute_script(f"return {expression}.toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def union(rows: list[dict[str, Any]], hw: tuple[int, int]) -> np.ndarray:
    out = np.zeros(hw, dtype=bool)
    for row in rows:
        out |= decode(row["segmentation"])
    return out


def interior_point(mask: np.ndarray, margin: int = 6) -> tuple[int, int]:
    """(x, y) of the pixel of `mask` nearest its centroid among those `margin` px from its edge."""
    core = mask.copy()
    for _ in range(margin):
        padded = np.pad(core, 1)
        core &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    assert core.any(), "no mask thick enough to click inside"
    ys, xs = np.nonzero(core)
    best = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(xs[best]), int(ys[best])


def at_pixel(driver: Any, canvas: Any, x: int, y: int) -> ActionChains:
    """Actions with the pointer over image pixel (x, y) (Selenium offsets are from the centre)."""
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas
    )
    scale = rect[0] / int(canvas.get_attribute("width"))
    dx, dy = (x + 0.5) * scale - rect[0] / 2, (y + 0.5) * scale - rect[1] / 2
    return ActionChains(driver).move_to_element_with_offset(canvas, round(dx), round(dy))


def last_prompt(driver: Any) -> dict[str, Any]:
    return driver.execute_script("return window.fastsam.lastPrompt")


def assert_page_shows_api_answer(driver: Any, base: str, image_id: str) -> np.ndarray:
    """The prompt layer equals, pixel for pixel, the API's answer to the prompt the page sent."""
    sent = last_prompt(driver)
    answer = api(base, f"/api/images/{image_id}/prompt", sent["body"])
    assert answer["rows"] == sent["rows"]
    layer = canvas_rgba(driver, "window.fastsam.layers.prompt")
    expected = union(answer["rows"], layer.shape[:2])
    np.testing.assert_array_equal(layer[..., 3] > 0, expected)
    return expected


def test_click_box_and_errors_in_the_browser(
    base: str, browser: Any, downloads: Path, tmp_path: Path
) -> None:
    driver = browser
    driver.get(f"{base}/")
    assert driver.title == "FastSAM"
    driver.find_element(By.ID, "file").send_keys(str(PHOTO))
    WebDriverWait(driver, 120).until(
        lambda d: d.execute_script("return window.fastsam.state.imageId !== null")
    )
    settle(driver)
    everything = api(base, "/api/images", data=PHOTO.read_bytes())  # cached: the page's answer
    image_id, masks = everything["image_id"], everything["masks"]
    assert driver.execute_script("return window.fastsam.state.imageId") == image_id
    assert f"{len(masks)} masks" in driver.find_element(By.ID, "status").text
    drawn = canvas_rgba(driver, "window.fastsam.layers.everything")[..., 3] > 0
    np.testing.assert_array_equal(drawn, union(masks, drawn.shape))  # every mask is drawn

    # One positive point inside the largest mask: the view changes exactly where its mask is.
    driver.find_element(By.ID, "show-everything").click()  # masks off: the photo alone
    view = driver.find_element(By.ID, "view")
    before = canvas_rgba(driver, "document.getElementById('view')")
    biggest = decode(max(masks, key=lambda m: m["area"])["segmentation"])
    x, y = interior_point(biggest)
    at_pixel(driver, view, x, y).click().perform()
    WebDriverWait(driver, 60).until(lambda d: last_prompt(d) is not None)
    settle(driver)
    sent = last_prompt(driver)
    assert sent["body"]["labels"] == [1]
    # Selenium moves the pointer in whole CSS px from a possibly fractional canvas position.
    assert np.abs(np.subtract(sent["body"]["points"], [[x, y]])).max() <= 1, sent["body"]
    x, y = sent["body"]["points"][0]
    mask = assert_page_shows_api_answer(driver, base, image_id)
    assert mask[y, x], "the clicked pixel is not in the mask drawn for it"
    after = canvas_rgba(driver, "document.getElementById('view')")
    changed = (after[..., :3] != before[..., :3]).any(-1)
    marker = np.zeros_like(mask)
    marker[max(y - 12, 0) : y + 13, max(x - 12, 0) : x + 13] = True  # the point's dot
    assert changed[mask].mean() > 0.95, "the mask is not drawn over the photo"
    assert not changed[~mask & ~marker].any(), "pixels outside the mask changed"

    # A dragged box and a right-click background point are sent and drawn as the API answers.
    x0, y0, x1, y1 = (round(v) for v in masks[0]["bbox_xyxy"])
    x0, y0, x1, y1 = x0 + 2, y0 + 2, min(x1, 511) - 2, min(y1, 511) - 2
    at_pixel(driver, view, x0, y0).click_and_hold().perform()
    at_pixel(driver, view, x1, y1).release().perform()
    WebDriverWait(driver, 60).until(lambda d: "boxes" in last_prompt(d)["body"])
    settle(driver)
    assert np.abs(np.subtract(last_prompt(driver)["body"]["boxes"], [[x0, y0, x1, y1]])).max() <= 1
    assert_page_shows_api_answer(driver, base, image_id)
    if os.environ.get("FASTSAM_SCREENSHOT"):  # the README's picture: a point and a box
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))
    at_pixel(driver, view, x, y).context_click().perform()
    WebDriverWait(driver, 60).until(lambda d: len(last_prompt(d)["body"]["labels"]) == 2)
    settle(driver)
    assert last_prompt(driver)["body"]["labels"] == [1, 0]
    assert_page_shows_api_answer(driver, base, image_id)
    error = driver.find_element(By.ID, "error")
    assert error.get_attribute("hidden") is not None

    # Save JSON downloads the API's document for the prompts on the page.
    driver.find_element(By.ID, "download-json").click()
    saved = downloads / f"fastsam-{image_id}.json"
    WebDriverWait(driver, 60).until(lambda d: saved.is_file() and saved.stat().st_size > 0)
    expected = api(base, f"/api/images/{image_id}/results.json", last_prompt(driver)["body"])
    assert json.loads(saved.read_text()) == expected

    # A text prompt without CLIP weights: the reason is shown, the drawn masks stay.
    driver.find_element(By.ID, "text").send_keys("an astronaut")
    driver.find_element(By.ID, "text-go").click()
    WebDriverWait(driver, 60).until(lambda d: error.get_attribute("hidden") is None)
    assert error.text.startswith("text prompts are unavailable: CLIP weights file"), error.text
    assert_page_shows_api_answer(driver, base, image_id)  # the last answered prompt

    # A file that is not an image: the server's message is shown in the page.
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    driver.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(driver, 60).until(lambda d: error.text.startswith("Upload failed"))
    assert error.text.startswith("Upload failed: the upload is not an image"), error.text
    assert driver.execute_script("return window.fastsam.state.imageId") == image_id  # kept
