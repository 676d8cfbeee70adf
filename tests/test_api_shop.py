"""What the shop page asks of the API: how items are shown (display), filter choices that follow each other
(facets under a filter, price ranges, hidden values), and searching with a region of the picture (crop)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import make_photo
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.catalog import open_or_create_catalog
from lookalike.cli import app as cli_app
from lookalike.config import Settings
from lookalike.crop import parse_crop
from lookalike.display import Display, from_note, parse_assignments, parse_hidden
from lookalike.errors import LookalikeError
from lookalike.ingest import ingest
from lookalike.sources import open_source

LABELS = ("Dress", "Skirt", "Shoes", "Skip")


def rows(folder: Path) -> list[dict[str, Any]]:
    out = []
    for number in range(16):
        path = folder / f"photo-{number}.jpg"
        path.write_bytes(make_photo(number))
        out.append(
            {
                "id": f"sku-{number}",
                "path": str(path),
                "name": f"Item {number}",
                "price": 10 + number * 2.5,
                "link": f"https://shop.example/p/{number}",
                "brand": "Kestrel" if number % 2 else "Alder",
                "label": LABELS[number % 4],
                "kids": number % 3 == 0,
                "sender_id": 100 + number,
            }
        )
    return out


@pytest.fixture(scope="module")
def shop(tmp_path_factory, lite0) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("api-shop")
    (root / "photos").mkdir()
    catalogue = rows(root / "photos")
    with (root / "catalogue.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(catalogue[0]))
        writer.writeheader()
        writer.writerows(catalogue)
    catalog = open_or_create_catalog(root / "index", "efficientnet-lite0", kind="exact")
    ingest(open_source(str(root / "catalogue.csv")), catalog.index, catalog.embedder, progress=False)
    yield {"root": root, "catalog": catalog, "rows": {row["id"]: row for row in catalogue}}
    catalog.close()


def client_of(shop: dict[str, Any], **settings: Any) -> TestClient:
    values = {"cache": shop["root"] / "cache", "api_key": None, "url_allow": []} | settings
    return TestClient(create_app(shop["catalog"], Settings(**values)))


# ------------------------------------------------------------------------------------------ display


def test_info_names_each_role_from_the_usual_field_names(shop) -> None:
    display = client_of(shop).get("/api/info").json()["display"]
    assert display["fields"] == {
        "title": "name",
        "price": "price",
        "url": "link",
        "brand": "brand",
        "category": "label",
    }
    assert display["currency_code"] is None


def test_a_server_setting_overrides_the_index_note(shop) -> None:
    index = shop["catalog"].index
    index.write_note("display", Display({"title": "brand"}, "USD").to_note())
    try:
        stored = client_of(shop).get("/api/info").json()["display"]
        assert stored["fields"]["title"] == "brand" and stored["currency_code"] == "USD"
        served = client_of(shop, display="title=name,currency=EUR").get("/api/info").json()["display"]
        assert served["fields"]["title"] == "name" and served["currency_code"] == "EUR"
    finally:
        index.write_note("display", None)


def test_display_settings_are_parsed_or_refused_by_name() -> None:
    display = parse_assignments("title=name, price=cost,currency=EUR").merged(parse_hidden(["label=Not sure", "sku"]))
    assert display.fields == {"title": "name", "price": "cost"} and display.currency_code == "EUR"
    assert display.hide == {"label": ("Not sure",)} and display.hide_fields == ("sku",)
    assert from_note(display.to_note()) == display
    assert parse_assignments("currency=price_currency").fields == {"currency": "price_currency"}
    with pytest.raises(LookalikeError, match="unknown display role 'colour'"):
        parse_assignments("colour=tint")
    with pytest.raises(LookalikeError, match="ROLE=FIELD"):
        parse_assignments("title")
    with pytest.raises(LookalikeError, match="FIELD=VALUE"):
        parse_hidden(["label="])
    assert from_note({"fields": {"title": 3, "nope": "x", "price": "cost"}, "hide": "x"}) == Display({"price": "cost"})


def test_the_display_command_stores_the_setting_in_the_index(shop, tmp_path: Path) -> None:
    index_path = shop["root"] / "index"
    runner = CliRunner()
    try:
        result = runner.invoke(
            cli_app, ["display", "--index", str(index_path), "--set", "title=brand", "--hide", "label=Skip"]
        )
        assert result.exit_code == 0, result.output
        assert "title     brand" in result.output and "label: Skip" in result.output
        assert from_note(shop["catalog"].index.notes()["display"]).fields == {"title": "brand"}
        bad = runner.invoke(cli_app, ["display", "--index", str(index_path), "--set", "colour=x"])
        assert bad.exit_code != 0 and "unknown display role" in str(bad.exception)  # one line, by cli.main
    finally:
        runner.invoke(cli_app, ["display", "--index", str(index_path), "--reset"])
    assert from_note(shop["catalog"].index.notes().get("display")) == Display()


# ------------------------------------------------------------------------------------------ facets


def brute_counts(shop, field: str, where: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in shop["rows"].values():
        if all(row[key] == value for key, value in where.items()):
            value = str(row[field]).lower() if isinstance(row[field], bool) else str(row[field])
            counts[value] = counts.get(value, 0) + 1
    return counts


def test_facets_leave_out_item_naming_fields_and_offer_a_price_range(shop) -> None:
    body = client_of(shop).get("/api/facets").json()
    assert set(body["fields"]) == {"brand", "label", "kids"}  # not name, link, price or sender_id
    prices = [row["price"] for row in shop["rows"].values()]
    assert body["ranges"] == {"price": {"min": min(prices), "max": max(prices)}}


def test_each_field_counts_under_the_other_filters(shop) -> None:
    client = client_of(shop)
    chosen = {"label": "Dress", "brand": "Alder"}
    body = client.get("/api/facets", params={"filter": json.dumps(chosen)}).json()
    fields = body["fields"]
    # kids: under both filters; label: under brand only; brand: under label only. Absent values count 0.
    assert {k: v for k, v in fields["kids"].items() if v} == brute_counts(shop, "kids", chosen)
    assert {k: v for k, v in fields["label"].items() if v} == brute_counts(shop, "label", {"brand": "Alder"})
    assert {k: v for k, v in fields["brand"].items() if v} == brute_counts(shop, "brand", {"label": "Dress"})
    assert set(fields["label"]) == set(LABELS)  # the list does not shrink with the filter
    low = client.get("/api/facets", params={"filter": json.dumps({"price": {"lte": 20}})}).json()
    cheap = [row for row in shop["rows"].values() if row["price"] <= 20]
    assert sum(low["fields"]["brand"].values()) == len(cheap)
    assert low["ranges"]["price"]["max"] == max(row["price"] for row in shop["rows"].values())  # its own: left out


def test_hidden_values_and_fields_are_not_offered(shop) -> None:
    body = client_of(shop, hide=["label=Skip", "brand"]).get("/api/facets").json()
    assert "Skip" not in body["fields"]["label"] and "Dress" in body["fields"]["label"]
    assert "brand" not in body["fields"]


def test_a_facets_filter_on_an_unknown_field_names_the_known_ones(shop) -> None:
    response = client_of(shop).get("/api/facets", params={"filter": json.dumps({"lable": "Dress"})})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_filter"
    assert "label" in response.json()["error"]["message"]
    assert client_of(shop).get("/api/facets", params={"filter": "[1"}).status_code == 400


# ------------------------------------------------------------------------------------------ crop


def outfit(left: int, right: int) -> bytes:
    canvas = Image.new("RGB", (640, 400), "white")
    canvas.paste(Image.open(io.BytesIO(make_photo(left))), (0, 0))
    canvas.paste(Image.open(io.BytesIO(make_photo(right))), (320, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_a_crop_searches_that_region_of_an_upload(shop) -> None:
    client = client_of(shop)
    data = outfit(3, 10)
    right = client.post("/api/search", files={"image": ("o.jpg", data)}, data={"k": "3", "crop": "0.5,0,1,1"})
    assert right.status_code == 200, right.text
    assert right.json()["results"][0]["id"] == "sku-10" and right.json()["query"]["crop"] == [0.5, 0, 1, 1]
    left = client.post("/api/search", files={"image": ("o.jpg", data)}, data={"k": "3", "crop": "0,0,0.5,1"})
    assert left.json()["results"][0]["id"] == "sku-3"
    # The ref names the whole picture: repeating it with another crop, or none, is not the last region's answer.
    ref = left.json()["query"]["ref"]
    again = client.post("/api/search", json={"ref": ref, "k": 3, "crop": [0.5, 0, 1, 1]}).json()
    assert again["results"][0]["id"] == "sku-10"
    whole = client.post("/api/search", json={"ref": ref, "k": 3}).json()
    assert whole["query"]["crop"] is None and whole["results"][0]["score"] < right.json()["results"][0]["score"]


def test_a_crop_of_an_item_searches_with_part_of_its_picture(shop) -> None:
    client = client_of(shop)
    body = client.post("/api/search", json={"id": "sku-5", "k": 3, "crop": [0.1, 0.1, 0.9, 0.9]}).json()
    assert body["query"]["id"] == "sku-5" and body["query"]["crop"] == [0.1, 0.1, 0.9, 0.9]
    assert "sku-5" not in [hit["id"] for hit in body["results"]]  # the item itself is left out, as without crop


@pytest.mark.parametrize(
    ("crop", "words"),
    [
        ([0.1, 0.2, 0.3], "at least 4"),
        ([0.6, 0, 0.5, 1], "left < right"),
        ([0, 0, 2, 1], "from 0 to 1"),
        ([0, 0, 0.02, 1], "at least 0.05"),
    ],
)
def test_a_bad_crop_is_a_400_naming_the_problem(shop, crop: list[float], words: str) -> None:
    response = client_of(shop).post("/api/search", json={"id": "sku-5", "crop": crop})
    assert response.status_code in (400, 422) and words in response.json()["error"]["message"]


def test_parse_crop_reads_text_and_lists() -> None:
    assert parse_crop("0.1,0.2,0.6,0.9").as_list() == [0.1, 0.2, 0.6, 0.9]
    assert parse_crop(None) is None and parse_crop("") is None
    for bad in ("a,b,c,d", "nan,0,1,1", [True, 0, 1, 1], "0,0,1"):
        with pytest.raises(LookalikeError, match="crop"):
            parse_crop(bad)


def test_a_focused_index_answers_where_it_found_the_product(tmp_path: Path, shipped: Path, lite0, monkeypatch) -> None:
    from lookalike.focus import weights

    monkeypatch.setenv(weights.ENV_PATH, str(shipped))
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact", focus="object")
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(4):
        (folder / f"item-{seed}.jpg").write_bytes(make_photo(seed))
    ingest(open_source(str(folder)), catalog.index, catalog.embedder, progress=False)
    try:
        client = TestClient(create_app(catalog, Settings(cache=tmp_path / "cache", api_key=None)))
        assert client.get("/api/info").json()["focus"] is True
        body = client.post("/api/search", files={"image": ("q.jpg", make_photo(2))}, data={"k": "2"}).json()
        left, top, right, bottom = body["query"]["box"]
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1 and (right - left) * (bottom - top) < 0.9
        assert body["results"][0]["id"] == "item-2.jpg"
        # With a crop the shopper chose, no box is suggested.
        cropped = client.post("/api/search", files={"image": ("q.jpg", make_photo(2))}, data={"crop": "0,0,1,1"})
        assert cropped.json()["query"]["box"] is None
    finally:
        catalog.close()
