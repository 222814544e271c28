"""The demo page in a real browser: the system's headless Chromium (Debian's ``chromium``
package, which ``.ci/run`` installs) driven by Playwright, no browser download.

The first test also takes the README's screenshot: with ``ARCFLOW_SCREENSHOT=docs/images/app.png``
it writes there, otherwise into its temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOT_LIMIT_BYTES = 200_000


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    found = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if found is None:
        pytest.skip(
            "no Chromium on PATH (apt-get install chromium): the page is tested through the "
            "Gradio API only"
        )
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to run as root, which CI is.
        chromium = playwright.chromium.launch(executable_path=found, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser: sync_api.Browser, url: str, width: int = 1000) -> sync_api.Page:
    """A page in its own browser context: its own cookies, so its own Gradio session."""
    page = browser.new_context(viewport={"width": width, "height": 800}).new_page()
    page.goto(url)
    page.locator("#generate").wait_for()
    return page


def request_settings(page: sync_api.Page, prompt: str, seed: int) -> None:
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#seed input").fill(str(seed))


def shown_png(page: sync_api.Page, selector: str) -> tuple[np.ndarray, dict[str, str]]:
    """Pixels and settings of the PNG the page shows at ``selector``, fetched as the browser
    fetched it."""
    source = page.locator(selector).first.get_attribute("src")
    body = page.request.get(source).body()
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image), dict(image.text)


def assert_shows(page: sync_api.Page, selector: str, reference: Path, png) -> None:
    pixels, text = shown_png(page, selector)
    expected_pixels, expected_text = png(reference)
    assert np.array_equal(pixels, expected_pixels)
    assert text == expected_text


# Where the browser draws an <img> with object-fit "contain": its box, less the letterbox bars.
DRAWN_RECT = """img => {
    const box = img.getBoundingClientRect();
    const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
    const width = img.naturalWidth * scale, height = img.naturalHeight * scale;
    return {x: box.left + (box.width - width) / 2, y: box.top + (box.height - height) / 2,
            width: width, height: height};
}"""


def assert_seen_whole(page: sync_api.Page, selector: str, reference: Path, png) -> None:
    """What the user sees of the image at ``selector``: it lies inside its gallery, and a
    screenshot of where it is drawn, sampled at each PNG pixel's centre, is the PNG (an image cut
    off by its box or covered by a label fails both ways)."""
    image = page.locator(selector).first
    image.scroll_into_view_if_needed()
    drawn = image.evaluate(DRAWN_RECT)
    gallery = page.locator("#result").bounding_box()
    assert drawn["y"] >= gallery["y"] - 1 and drawn["x"] >= gallery["x"] - 1
    assert drawn["y"] + drawn["height"] <= gallery["y"] + gallery["height"] + 1
    assert drawn["x"] + drawn["width"] <= gallery["x"] + gallery["width"] + 1
    shot = Image.open(io.BytesIO(page.screenshot(clip=drawn))).convert("RGB")
    expected, _ = png(reference)
    seen = np.asarray(shot.resize(expected.shape[1::-1], Image.Resampling.NEAREST)).astype(int)
    difference = np.abs(seen - expected[..., :3].astype(int))
    # Pixel centres of a non-integer scale land on the drawn pixel, save rounding at the edges.
    assert np.mean(difference.max(axis=-1) <= 8) > 0.99, "the page does not show the whole image"


def test_page_generates_the_cli_image(browser, served, references, png, tmp_path):
    reference = references[0]
    # A wide window: there a lone image is widest, and Gradio's fixed-height gallery cut it off.
    page = open_page(browser, served.url, width=1600)

    request_settings(page, reference.prompt, reference.seed)
    page.locator("#generate").click()
    page.locator("#result img").first.wait_for()
    assert_shows(page, "#result img", reference.student, png)
    assert_seen_whole(page, "#result img", reference.student, png)
    assert "2 NFE" in page.locator("#timing").inner_text()

    page.locator("#compare input").check()
    steps = page.locator("#teacher-steps input[type=number]")
    assert steps.input_value() == str(reference.teacher_steps)  # the page's default
    page.locator("#generate").click()
    page.locator("#result img[src*=_vs_teacher]").first.wait_for()
    assert_shows(page, "#result img", reference.compare, png)
    assert_seen_whole(page, "#result img", reference.compare, png)
    assert f"{reference.teacher_steps} Euler steps" in page.locator("#timing").inner_text()
    assert page.locator("#session img").count() == 2

    screenshot = Path(os.environ.get("ARCFLOW_SCREENSHOT", tmp_path / "app.png"))
    page.screenshot(path=screenshot, full_page=True)
    assert 0 < screenshot.stat().st_size < SCREENSHOT_LIMIT_BYTES

    # A refused request is one message; the panels keep the last images, unmarked.
    page.locator("#prompt textarea").fill(" ")
    page.locator("#generate").click()
    page.get_by_text("the prompt is empty: type what the image should show").wait_for()
    page.locator("#prompt textarea").fill(reference.prompt)
    page.locator("#seed input").fill("-1")
    page.locator("#generate").click()
    page.get_by_text("seed must be from 0 to 4294967295, got -1").wait_for()
    assert "Traceback" not in page.content()
    for panel in ("#result", "#timing", "#session"):
        assert "Error" not in page.locator(panel).inner_text()
    assert_seen_whole(page, "#result img", reference.compare, png)


def test_two_pages_at_once_get_their_own_images(browser, served, references, png):
    pages = [open_page(browser, served.url) for _ in references]
    for page, reference in zip(pages, references):
        request_settings(page, reference.prompt, reference.seed)
    for page in pages:
        page.locator("#generate").click()
    for page, reference in zip(pages, references):
        page.locator("#result img").first.wait_for()
        assert_shows(page, "#result img", reference.student, png)
        assert page.locator("#session img").count() == 1
        assert_shows(page, "#session img", reference.student, png)
