"""The shop page in a real browser (Playwright on Debian's Chromium), at desktop and phone sizes: product
cards and their detail view, filters that follow each other, cropping a region, the match verdicts and
steering, phone photos, and failures worded for shoppers (issue 14, items 1-7).

Screenshots land in ``test-output/`` (CI keeps them as test output).
"""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from web_shop import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DUPLICATE_OF,
    VIEWPORTS,
    result_ids,
    screenshot,
    serving,
    wait_done,
    write_manifest,
)

from lookalike.catalog import open_or_create_catalog
from lookalike.config import Settings
from lookalike.ingest import ingest
from lookalike.sources import open_source

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, lite0) -> Iterator[dict[str, Any]]:
    """The shop catalogue, indexed and calibrated, served with the "Skip" label hidden."""
    from lookalike.confidence.calibrate import calibrate

    root = tmp_path_factory.mktemp("shop")
    rows = write_manifest(root / "catalogue.csv")
    catalog = open_or_create_catalog(root / "index", "efficientnet-lite0", kind="exact")
    report = ingest(open_source(str(root / "catalogue.csv")), catalog.index, catalog.embedder, progress=False)
    assert report.indexed == len(rows) and not report.failed
    calibrate(catalog, samples=40)
    catalog.forget_calibration()
    with serving(catalog, Settings(url_allow=["127.0.0.1"], hide=["label=Skip"])) as (address, app):
        yield {"url": address, "app": app, "rows": {row["id"]: row for row in rows}, "root": root}
    catalog.close()


@pytest.fixture(scope="module")
def image_host(shop: dict[str, Any]) -> Iterator[str]:
    """A second local server: a catalogue photo, and a web page that is not a picture."""
    folder = shop["root"] / "host"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(Path(shop["rows"]["sku-020"]["path"]).read_bytes())
    (folder / "page.html").write_text("<!doctype html><title>A product page</title><p>Not a picture.</p>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(params=list(VIEWPORTS))
def size(request) -> str:
    return request.param


@pytest.fixture
def page(browser, shop: dict[str, Any], size: str) -> Iterator[Any]:
    phone = size == "phone"
    context = browser.new_context(viewport=VIEWPORTS[size], is_mobile=phone, has_touch=phone)
    page = context.new_page()
    page.goto(shop["url"] + "/")
    page.wait_for_selector("body[data-state='idle']")
    page.wait_for_selector("#filters select[data-field='label']", state="attached")
    # On a phone the filters start folded, so the results come into view; the shopper taps to open them.
    assert page.evaluate("document.querySelector('#refine').open") is not phone
    if phone:
        page.click("#refine > summary")
    yield page
    context.close()


def photo_of(shop: dict[str, Any], item_id: str) -> str:
    return shop["rows"][item_id]["path"]


def upload(page: Any, path: str | Path) -> None:
    page.set_input_files("#file-input", str(path))
    wait_done(page)


def params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def no_sideways_scroll(page: Any, size: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORTS[size]["width"], f"the page scrolls sideways ({width}px)"


# ------------------------------------------------------------------------------------------ 1. product cards


def test_cards_show_title_price_brand_and_a_product_link(page, shop, size) -> None:
    upload(page, photo_of(shop, "sku-042"))
    row = shop["rows"]["sku-042"]
    card = page.locator("#results .result").first
    assert card.get_attribute("data-id") == "sku-042"
    assert card.locator(".card-title").inner_text() == row["name"]
    assert card.locator(".card-price").inner_text().replace("\xa0", " ") in (
        f"€{row['price']:.2f}",
        f"{row['price']:.2f} €",
    )
    assert row["brand"] in card.locator(".card-meta").inner_text()
    assert card.locator(".product-link").get_attribute("href") == row["link"]
    # Shoppers do not see scores, ids or timings until they ask.
    assert not card.locator(".card-details").is_visible()
    assert " ms" not in page.inner_text("#status")
    page.evaluate("scrollTo(0, 0)")
    screenshot(page, f"shop-page-{size}.png", full_page=False)  # what a shopper sees first (the README's)
    page.check("#details-toggle")
    assert card.locator(".card-details").is_visible() and "sku-042" in card.locator(".card-details").inner_text()
    assert " ms" in page.inner_text("#status")
    # A field naming one item each (the title) is not a filter; the kinds are.
    assert page.locator("#filters select[data-field='name']").count() == 0
    no_sideways_scroll(page, size)
    screenshot(page, f"shop-results-{size}.png")


def test_a_card_opens_a_detail_view_with_every_field(page, shop, size) -> None:
    upload(page, photo_of(shop, "sku-042"))
    second = page.locator("#results .result").nth(1)
    item_id = second.get_attribute("data-id")
    row = shop["rows"][item_id]
    second.locator(".card-open").click()
    dialog = page.locator("#detail")
    dialog.wait_for(state="visible")
    assert dialog.locator(".detail-title").inner_text() == row["name"]
    fields = dialog.locator(".detail-fields").inner_text()
    for name in ("brand", "label", "price", "link"):
        assert name in fields.lower()
    assert dialog.locator(".detail-product").get_attribute("href") == row["link"]
    page.wait_for_function("() => document.querySelector('#detail .detail-image').naturalWidth > 0")
    screenshot(page, f"shop-detail-{size}.png")
    # "More like this" searches with the item, and back returns to the photo's search.
    first_url = page.url
    dialog.locator(".detail-search").click()
    page.wait_for_function("id => new URLSearchParams(location.search).get('id') === id", arg=item_id)
    wait_done(page)
    assert not dialog.is_visible() and item_id not in result_ids(page)
    page.go_back()
    page.wait_for_function("url => location.href === url", arg=first_url)
    wait_done(page)
    assert result_ids(page)[0] == "sku-042"


# ------------------------------------------------------------------------------------------ 2. filters


def test_facet_counts_follow_the_other_filters_and_hidden_values_are_gone(page, shop) -> None:
    labels = page.eval_on_selector_all("#filters select[data-field='label'] option", "os => os.map(o => o.value)")
    assert "Skip" not in labels and "Skirt" in labels
    page.select_option("#filters select[data-field='label']", "Skirt")
    skirts = [row for row in shop["rows"].values() if row["label"] == "Skirt"]
    page.wait_for_function(
        "n => [...document.querySelectorAll(\"#filters select[data-field='kids'] option\")]"
        ".slice(1).reduce((sum, o) => sum + Number(o.textContent.match(/\\((\\d+)\\)/)[1]), 0) === n",
        arg=len(skirts),
    )
    # The label list itself still counts every kind (its own filter is left out of its counts).
    dresses = sum(row["label"] == "Dress" for row in shop["rows"].values())
    option = page.locator("#filters select[data-field='label'] option[value='Dress']")
    assert option.inner_text() == f"Dress ({dresses})"
    upload(page, photo_of(shop, "sku-042"))  # pants, searched among skirts only
    ids = result_ids(page)
    assert ids and all(shop["rows"][item]["label"] == "Skirt" for item in ids)
    assert params(page)["f.label"] == ["Skirt"]


def test_a_shared_item_link_repeats_the_search(browser, shop) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{shop['url']}/?id=sku-042&k=6")
    wait_done(page)
    ids = result_ids(page)
    assert len(ids) == 6 and "sku-042" not in ids
    assert page.locator("#query-preview").is_visible()
    context.close()


def test_a_price_range_restricts_results_and_lives_in_the_address(page, shop, size) -> None:
    fieldset = page.locator("#filters [data-range='price']")
    prices = [row["price"] for row in shop["rows"].values()]
    assert float(fieldset.locator("input[data-side='low']").get_attribute("placeholder")) == pytest.approx(min(prices))
    upload(page, photo_of(shop, "sku-042"))
    fieldset.locator("input[data-side='high']").fill("30")
    fieldset.locator("input[data-side='high']").dispatch_event("change")
    page.wait_for_function("() => new URLSearchParams(location.search).get('f.price') === '..30'")
    wait_done(page)
    ids = result_ids(page)
    assert ids and all(shop["rows"][item]["price"] <= 30 for item in ids)
    page.reload()
    wait_done(page)
    assert result_ids(page) == ids
    assert page.locator("#filters [data-range='price'] input[data-side='high']").input_value() == "30"
    no_sideways_scroll(page, size)


# ------------------------------------------------------------------------------------------ 3. crop


def side_by_side(shop: dict[str, Any], left: str, right: str, path: Path) -> Path:
    """One outfit photo of two catalogue photos: the shopper wants the right one."""
    images = [Image.open(photo_of(shop, item)).convert("RGB").resize((300, 400)) for item in (left, right)]
    canvas = Image.new("RGB", (600, 400), "white")
    canvas.paste(images[0], (0, 0))
    canvas.paste(images[1], (300, 0))
    canvas.save(path, quality=92)
    return path


def drag_box(page: Any, left: float, top: float, right: float, bottom: float) -> None:
    page.locator("#query-preview").scroll_into_view_if_needed()
    box = page.locator("#query-preview").bounding_box()
    page.mouse.move(box["x"] + left * box["width"], box["y"] + top * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + (left + right) / 2 * box["width"], box["y"] + (top + bottom) / 2 * box["height"])
    page.mouse.move(box["x"] + right * box["width"], box["y"] + bottom * box["height"])
    page.mouse.up()


def test_a_dragged_box_searches_that_region_and_is_shared(page, shop, size, tmp_path: Path) -> None:
    outfit = side_by_side(shop, "sku-100", "sku-150", tmp_path / "outfit.jpg")
    upload(page, outfit)
    page.wait_for_selector("#crop-hint", state="visible")
    with page.expect_request("**/api/search") as request:
        drag_box(page, 0.52, 0.02, 0.98, 0.98)
    assert json.loads(request.value.post_data)["crop"][0] == pytest.approx(0.52, abs=0.02)
    wait_done(page)
    assert result_ids(page)[0] == "sku-150"
    crop = params(page)["crop"][0]
    assert page.locator(".crop-box[data-kind='chosen']").is_visible()
    screenshot(page, f"shop-crop-{size}.png")
    shared = page.url
    page.goto("about:blank")
    page.goto(shared)
    wait_done(page)
    assert result_ids(page)[0] == "sku-150" and params(page)["crop"] == [crop]
    page.click("#crop-clear")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('crop')")
    wait_done(page)
    assert result_ids(page)[0] in ("sku-100", "sku-150")


@pytest.fixture(scope="module")
def focused_server(tmp_path_factory, shipped: Path, lite0, shop) -> Iterator[str]:
    """A small catalogue indexed with the focus stage, whose answers say where the product was found."""
    from lookalike.focus import weights

    root = tmp_path_factory.mktemp("focused")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(weights.ENV_PATH, str(shipped))
        catalog = open_or_create_catalog(root / "index", "efficientnet-lite0", kind="exact", focus="object")
        (root / "photos").mkdir()
        for item in ("sku-100", "sku-150", "sku-200"):
            (root / "photos" / f"{item}.jpg").write_bytes(Path(photo_of(shop, item)).read_bytes())
        ingest(open_source(str(root / "photos")), catalog.index, catalog.embedder, progress=False)
        try:
            with serving(catalog, Settings(cache=root / "cache")) as (address, _):
                yield address
        finally:
            catalog.close()


def test_on_a_focused_index_the_found_product_is_the_starting_crop(browser, focused_server, shop, size) -> None:
    phone = size == "phone"
    context = browser.new_context(viewport=VIEWPORTS[size], is_mobile=phone, has_touch=phone)
    page = context.new_page()
    page.goto(focused_server + "/")
    page.wait_for_selector("body[data-state='idle']")
    upload(page, photo_of(shop, "sku-150"))
    suggested = page.locator(".crop-box[data-kind='suggested']")
    assert suggested.is_visible()
    frame, box = page.locator("#query-preview").bounding_box(), suggested.bounding_box()
    assert box["width"] * box["height"] < 0.95 * frame["width"] * frame["height"]
    assert "crop" not in params(page)  # only offered: the search was of the whole photo
    context.close()


# ------------------------------------------------------------------------------------------ 4. trust and steering


def test_a_catalogue_photo_says_same_item_found(page, shop, size) -> None:
    upload(page, photo_of(shop, "sku-042"))
    assert page.locator("#verdict").is_visible()
    assert "Same item found" in page.inner_text("#verdict")
    assert page.locator("#results .result").first.locator(".badge.same").is_visible()


def test_an_unrelated_picture_says_no_close_match(page, size, tmp_path: Path) -> None:
    from lookalike.confidence.outside import out_of_domain

    path = tmp_path / "unrelated.png"
    path.write_bytes(out_of_domain(1, seed=5)[0])
    upload(page, path)
    assert "No close match" in page.inner_text("#verdict")
    assert not page.locator("#results").is_visible()  # twelve unrelated items would pass for matches
    screenshot(page, f"shop-no-match-{size}.png")
    page.click("#verdict-show")
    assert page.locator("#results .result").first.is_visible()


def test_near_duplicates_are_folded_into_one_card(page, shop) -> None:
    upload(page, photo_of(shop, f"sku-{DUPLICATE_OF:03d}"))
    ids = result_ids(page)
    pair = {f"sku-{DUPLICATE_OF:03d}", f"sku-{DUPLICATE_OF:03d}-copy"}
    assert len(pair & set(ids)) == 1
    assert "near-identical" in page.locator("#results .result").first.locator(".card-copies").inner_text()


def test_the_colour_control_reaches_the_search_and_the_address(page, shop) -> None:
    upload(page, photo_of(shop, "sku-042"))
    with page.expect_request("**/api/search") as request:
        page.locator("#colour-input").fill("1")
    assert json.loads(request.value.post_data)["colour"] == 1
    wait_done(page)
    assert params(page)["colour"] == ["1"]


def test_less_like_this_steers_and_more_results_pages(page, shop, size) -> None:
    upload(page, photo_of(shop, "sku-042"))
    before = result_ids(page)
    target = page.locator("#results .result").nth(2)
    item_id = target.get_attribute("data-id")
    with page.expect_request("**/api/search") as request:
        target.locator(".less-like").click()
    assert json.loads(request.value.post_data)["negative"] == [item_id]
    wait_done(page)
    assert params(page)["less"] == [item_id] and page.locator("#steering").is_visible()
    assert result_ids(page) != before
    with page.expect_request("**/api/search") as request:
        page.locator("#results .result").nth(1).locator(".more-like").click()
    assert len(json.loads(request.value.post_data)["positive"]) == 1
    wait_done(page)
    first_page = result_ids(page)
    page.click("#more-results")
    page.wait_for_function("n => document.querySelectorAll('#results .result').length > n", arg=len(first_page))
    everything = result_ids(page)
    assert everything[: len(first_page)] == first_page and len(set(everything)) == len(everything)
    page.click("#steering-clear")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('less')")


# ------------------------------------------------------------------------------------------ 5. phone photos


def test_a_large_phone_photo_is_downscaled_upright_before_upload(page, shop, size, tmp_path: Path) -> None:
    base = Image.open(photo_of(shop, "sku-042")).convert("RGB")
    # A landscape 8000x6000 sensor image with EXIF orientation 6: shown upright it is portrait.
    sensor = base.transpose(Image.Transpose.ROTATE_90).resize((8000, 6000))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    sensor.save(path, quality=85, exif=exif)
    page.set_input_files("#file-input", str(path))
    wait_done(page)
    ref = params(page)["ref"][0]
    stored = Image.open(io.BytesIO(page.request.get(f"{shop['url']}/api/queries/{ref}/image").body()))
    # What arrived is the browser's copy: at most 2048 pixels, upright as the phone showed it, no EXIF left.
    assert max(stored.size) <= 2048 and stored.height > stored.width
    assert stored.getexif().get(0x0112, 1) == 1
    assert result_ids(page)[0] == "sku-042"


# ------------------------------------------------------------------------------------------ 6. words


def test_a_web_page_link_is_explained_in_plain_words(page, image_host: str) -> None:
    page.fill("#url-input", f"{image_host}/page.html")
    page.dispatch_event("#url-form", "submit")
    page.wait_for_selector("body[data-state='error']")
    assert "That link is a web page, not a picture" in page.inner_text("#error-text")
    page.click(".error-details summary")
    assert "content type" in page.inner_text("#error-detail")  # the API's own message, for the curious


def test_a_failed_upload_leaves_no_earlier_search_in_the_address(page, image_host: str, tmp_path: Path) -> None:
    page.fill("#url-input", f"{image_host}/photo.jpg")
    page.dispatch_event("#url-form", "submit")
    wait_done(page)
    assert "url" in params(page)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("body[data-state='error']")
    assert "not a picture we can read" in page.inner_text("#error-text")
    assert not {"url", "id", "ref"} & set(params(page))


# ------------------------------------------------------------------------------------------ 7. shared links


def test_a_shared_upload_link_works_after_the_server_forgot_it(browser, page, shop) -> None:
    upload(page, photo_of(shop, "sku-077"))
    shared = page.url
    shop["app"].state.lookalike.queries._items.clear()  # a restart: only the on-disk store is left
    context = browser.new_context()
    other = context.new_page()
    other.goto(shared)
    wait_done(other)
    assert result_ids(other)[0] == "sku-077"
    context.close()
