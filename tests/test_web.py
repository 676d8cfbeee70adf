"""The search page in a real browser: Playwright driving Debian's Chromium against a live server.

Screenshots of the results page land in ``test-output/`` (kept by CI as test output).
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from lookalike.catalog import open_or_create_catalog
from lookalike.config import Settings
from lookalike.ingest import ingest
from lookalike.sources import open_source

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, lite0) -> Path:
    from conftest import make_photo

    root = tmp_path_factory.mktemp("web") / "catalogue"
    for seed in range(16):
        folder = root / ("tops" if seed % 2 else "shoes")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"item-{seed:02d}.jpg").write_bytes(make_photo(seed))
    return root


@pytest.fixture(scope="module")
def server(catalogue: Path, tmp_path_factory) -> Iterator[str]:
    """lookalike's app under uvicorn on 127.0.0.1, in a thread, for the module."""
    import uvicorn

    from lookalike.api import create_app

    catalog = open_or_create_catalog(tmp_path_factory.mktemp("web-index") / "index", "efficientnet-lite0")
    ingest(open_source(str(catalogue)), catalog.index, catalog.embedder, progress=False)
    app = create_app(catalog, Settings(url_allow=["127.0.0.1"]))
    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)
    catalog.close()


@pytest.fixture(scope="module")
def image_host(catalogue: Path) -> Iterator[str]:
    """A second local server holding the catalogue's photos, for searching by URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(catalogue), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server + "/")
    page.wait_for_selector("body[data-state='idle']")
    yield page
    context.close()


def wait_done(page) -> None:
    page.wait_for_selector("body[data-state='done'], body[data-state='error']", timeout=30_000)


def result_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results .result", "nodes => nodes.map(n => n.dataset.id)")


def test_upload_a_catalogue_photo_finds_it_first(page, catalogue: Path) -> None:
    page.select_option("#k-select", "6")
    page.set_input_files("#file-input", str(catalogue / "tops" / "item-05.jpg"))
    wait_done(page)
    assert page.get_attribute("body", "data-state") == "done"
    ids = result_ids(page)
    assert ids[0] == "tops/item-05.jpg" and len(ids) == 6
    assert float(page.get_attribute("#results .result >> nth=0", "data-score")) > 0.99
    assert page.locator("#query-preview").is_visible()
    assert "ref" in parse_qs(urlsplit(page.url).query)
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "results-page.png"), full_page=True)


def test_search_by_url_served_locally(page, image_host: str) -> None:
    page.fill("#url-input", f"{image_host}/shoes/item-08.jpg")
    page.dispatch_event("#url-form", "submit")
    wait_done(page)
    assert result_ids(page)[0] == "shoes/item-08.jpg"
    assert parse_qs(urlsplit(page.url).query)["url"] == [f"{image_host}/shoes/item-08.jpg"]


def test_clicking_a_result_searches_with_it_and_back_returns(page, catalogue: Path) -> None:
    page.set_input_files("#file-input", str(catalogue / "tops" / "item-03.jpg"))
    wait_done(page)
    first_url = page.url
    second = result_ids(page)[1]
    page.click("#results .result >> nth=1")
    page.wait_for_function("id => new URLSearchParams(location.search).get('id') === id", arg=second)
    wait_done(page)
    assert second not in result_ids(page)  # "more like this" leaves the item itself out
    page.go_back()
    page.wait_for_function("url => location.href === url", arg=first_url)
    wait_done(page)
    assert result_ids(page)[0] == "tops/item-03.jpg"


def test_a_shared_url_repeats_the_search(browser, server: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/?id=shoes%2Fitem-02.jpg&k=6")
    wait_done(page)
    ids = result_ids(page)
    assert len(ids) == 6 and "shoes/item-02.jpg" not in ids
    context.close()


def test_a_filter_restricts_the_results(page, catalogue: Path) -> None:
    page.wait_for_selector("#filters select[data-field='folder']")
    page.select_option("#filters select[data-field='folder']", "shoes")
    page.set_input_files("#file-input", str(catalogue / "tops" / "item-07.jpg"))
    wait_done(page)
    ids = result_ids(page)
    assert ids and all(item.startswith("shoes/") for item in ids)


def test_a_bad_file_shows_an_error(page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("body[data-state='error']", timeout=30_000)
    assert page.locator("#error").is_visible()
    assert "not an image" in page.inner_text("#error")


def test_phone_width_layout(browser, server: str, catalogue: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(server + "/")
    page.set_input_files("#file-input", str(catalogue / "shoes" / "item-04.jpg"))
    wait_done(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at phone width ({width}px)"
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "results-phone.png"), full_page=True)
    context.close()
