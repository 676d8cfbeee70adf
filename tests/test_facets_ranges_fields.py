"""What the shop page asks of every backend: facets under a filter, numeric ranges, and the refusal of filters
on fields that no item has (issue 14), held to brute force over the items' metadata.

Runs on the embedded index and on OpenSearch through the fake client of test_index_opensearch (which computes
the aggregations it is sent from its documents) always; on Milvus when a server answers on MILVUS_URI
(MILVUS_REQUIRED=1 makes a missing server a failure; scripts/in-private-netns.sh with scripts/milvus-server.sh
starts one), and on a real OpenSearch cluster when OPENSEARCH_URL is set.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from test_index_opensearch import HOST, FakeClient

from lookalike.catalog import Catalog
from lookalike.errors import FilterError
from lookalike.index import EmbeddedIndex, IndexSettings, Item, VectorIndex
from lookalike.index.filters import matches, normalize
from lookalike.index.known import MAX_NAMED, KnownFields, unknown_fields_message
from lookalike.search import search_vector

MILVUS_URI = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")
MILVUS_REQUIRED = os.environ.get("MILVUS_REQUIRED") == "1"
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL")
DIM = 8
LABELS = ["Dress", "Skirt", "Shirt", "Pants", "Shoes"]
COLOURS = ["red", "blue", "green", "black"]
KNOWN = "colour_name, discount, kids, label, price, size, sku, stock, weight"


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("opensearch-fake", id="opensearch-fake"),
    pytest.param(
        "milvus",
        id="milvus",
        marks=pytest.mark.skipif(
            not MILVUS_REQUIRED and not _answers(MILVUS_URI), reason=f"no Milvus server at {MILVUS_URI}"
        ),
    ),
    pytest.param(
        "opensearch",
        id="opensearch",
        marks=pytest.mark.skipif(not OPENSEARCH_URL, reason="OPENSEARCH_URL is not set (no cluster here)"),
    ),
]


def catalogue(n: int = 120, seed: int = 3) -> list[Item]:
    """Shop-like metadata: text, booleans, integers with few and with many values, floats (never whole, which
    OpenSearch, mapping every number as a double, would count as integers), an id per item, fields on some
    items only, and one field holding integers on some items and floats on others."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        metadata: dict[str, Any] = {
            "label": LABELS[i % 5] if i % 7 else rng.choice(LABELS),
            "kids": rng.random() < 0.3,
            "size": rng.choice([36, 38, 40, 42, 44]),
            "price": rng.randint(5, 119) + 0.49,
            "stock": rng.randint(0, 200),
            "sku": f"sku-{i:04d}",
        }
        if i % 3 == 0:
            metadata["discount"] = rng.choice([0.05, 0.15, 0.25])
        if i % 2 == 0:
            metadata["colour_name"] = rng.choice(COLOURS)
        if i % 4 == 0:
            metadata["weight"] = rng.choice([300, 400]) if i % 8 else rng.choice([250.5, 350.5])
        vector = np.asarray([rng.gauss(0, 1) for _ in range(DIM)], dtype=np.float32)
        items.append(Item(f"item-{i:04d}", vector, metadata, f"/img/{i}.jpg"))
    return items


ITEMS = catalogue()
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"label": "Dress"},
    {"kids": True, "price": {"lt": 60}},
    {"size": [36, 38], "colour_name": "red"},
    {"weight": {"gte": 300}},
    {"discount": {"gt": 0.1}},
    {"label": ["Skirt", "Shoes"], "stock": {"gte": 50, "lte": 150}},
    {"label": "Nope"},  # nothing passes
    {"label": 5},  # a value of another type than the field's: nothing passes
]


# ----------------------------------------------------------------------------------------- the reference
def counted(items: list[Item]) -> dict[str, dict[str, int]]:
    """Field -> value -> items, by the facet rules: text, integers and booleans; 1 and "1" share a key."""
    result: dict[str, dict[str, int]] = {}
    for item in items:
        for key, value in item.metadata.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | str):
                text = str(value)
            else:
                continue
            values = result.setdefault(key, {})
            values[text] = values.get(text, 0) + 1
    return result


def passing(items: list[Item], filter: dict[str, Any] | None) -> list[Item]:
    conditions = normalize(filter)
    return [item for item in items if matches(item.metadata, conditions)]


def expected_facets(items: list[Item], filter: dict[str, Any] | None, max_values: int) -> dict[str, dict[str, int]]:
    """The fields with at most ``max_values`` values over *all* items, with the counts of the passing ones."""
    fields = [key for key, values in counted(items).items() if len(values) <= max_values]
    under = counted(passing(items, filter))
    return {key: under.get(key, {}) for key in fields}


def expected_ranges(items: list[Item], filter: dict[str, Any] | None) -> dict[str, tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    for item in passing(items, filter):
        for key, value in item.metadata.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                low, high = spans.get(key, (value, value))
                spans[key] = (min(low, value), max(high, value))
    return {key: (float(low), float(high)) for key, (low, high) in spans.items()}


# ----------------------------------------------------------------------------------------- the backends
class Backend:
    """Makes indexes of one backend, opens second handles on them, and removes them all afterwards."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.made: list[tuple[VectorIndex, Any]] = []

    def new(self, items: list[Item] = ITEMS) -> VectorIndex:
        settings = IndexSettings(dim=DIM, metric="l2", kind="exact")
        name = f"facets_{uuid.uuid4().hex[:12]}"
        if self.kind == "embedded":
            index: VectorIndex = EmbeddedIndex.create(self.tmp_path / name, settings)
            where: Any = self.tmp_path / name
        elif self.kind == "opensearch-fake":
            from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

            where = (OpenSearchConfig(hosts=[HOST]), name, FakeClient())
            index = OpenSearchIndex.create(where[0], name, settings, client=where[2])
        elif self.kind == "opensearch":
            from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

            where = (OpenSearchConfig.from_url(OPENSEARCH_URL or ""), name.replace("_", "-"), None)
            index = OpenSearchIndex.create(where[0], where[1], settings)
        else:
            from lookalike.index.milvus import MilvusIndex

            where = name
            index = MilvusIndex.create(MILVUS_URI, name, settings)
        self.made.append((index, where))
        for start in range(0, len(items), 50):
            index.add(items[start : start + 50])
        if items:
            index.save()
        return index

    def reopen(self, index: VectorIndex) -> VectorIndex:
        """Another object over the same index (as another process would have)."""
        where = next(where for made, where in self.made if made is index)
        if self.kind == "embedded":
            other: VectorIndex = EmbeddedIndex.open(where)
        elif self.kind.startswith("opensearch"):
            from lookalike.index.opensearch import OpenSearchIndex

            other = OpenSearchIndex.open(where[0], where[1], client=where[2])
        else:
            from lookalike.index.milvus import MilvusIndex

            other = MilvusIndex.open(MILVUS_URI, where)
        self.made.append((other, None))
        return other

    def settle(self, index: VectorIndex, item_id: str) -> None:
        """Wait until ``index`` sees an item another handle wrote (Milvus shows other clients' writes within
        its time tick; the others at once)."""
        deadline = time.monotonic() + 10
        while index.get(item_id) is None:
            assert time.monotonic() < deadline, f"{item_id} never became visible"
            time.sleep(0.1)

    def close(self) -> None:
        for index, where in reversed(self.made):
            drop = getattr(index, "drop", None)
            if where is not None and drop is not None:
                drop()
            else:
                index.close()


@pytest.fixture
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    made = Backend(request.param, tmp_path)
    yield made
    made.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def catalog_of(index: VectorIndex) -> Catalog:
    """A catalogue for vector searches: the model only names the answer."""
    return Catalog(index, SimpleNamespace(name="stub"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- fields, facets, ranges
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_fields_are_the_metadata_keys_that_any_item_has(backend) -> None:
    index = backend.new()
    assert index.fields() == {key for item in ITEMS for key in item.metadata}
    assert backend.new([]).fields() == set()


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_facets_under_a_filter_count_the_passing_items_of_the_whole_catalogues_fields(backend) -> None:
    index = backend.new()
    for max_values in (50, 4):
        for filter in FILTERS:
            facets = index.facets(max_values, filter=filter)
            assert facets == expected_facets(ITEMS, filter, max_values), (max_values, filter)
            for values in facets.values():
                assert list(values.values()) == sorted(values.values(), reverse=True)  # highest count first
    assert index.facets() == index.facets(50, None) == expected_facets(ITEMS, None, 50)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_the_fields_offered_do_not_depend_on_the_filter(backend) -> None:
    index = backend.new()
    everything = index.facets()
    assert "stock" not in everything and "sku" not in everything  # over 50 values in the whole catalogue
    assert "price" not in everything and "discount" not in everything  # floats are not counted
    narrow = {"label": "Dress", "size": 36}
    assert len(passing(ITEMS, narrow)) < 50  # under it, stock and sku have few values: still not offered
    under = index.facets(filter=narrow)
    assert list(under) == list(everything)
    assert under["label"] == {"Dress": len(passing(ITEMS, narrow))}
    assert index.facets(filter={"label": "Nope"}) == {key: {} for key in everything}


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_ranges_span_the_numbers_of_the_passing_items(backend) -> None:
    index = backend.new()
    for filter in FILTERS:
        assert index.ranges(filter) == expected_ranges(ITEMS, filter), filter
    spans = index.ranges()
    assert set(spans) == {"size", "price", "stock", "discount", "weight"}  # integers and floats, no booleans
    assert spans["weight"] == (250.5, 400.0)  # integers and floats in one field
    assert index.ranges(filter={"weight": {"gte": 300}})["weight"] == (300.0, 400.0)
    assert index.ranges(filter={"label": "Nope"}) == {}
    assert all(isinstance(bound, float) for span in spans.values() for bound in span)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_facets_ranges_and_fields_follow_writes_through_any_handle(backend) -> None:
    """The embedded index keeps its unfiltered answers until the items change: through this object or another."""
    index = backend.new()
    before = index.facets()
    assert index.ranges()["price"] == expected_ranges(ITEMS, None)["price"]
    other = backend.reopen(index)
    other.add([Item("hat-1", ITEMS[0].vector, {"label": "Hat", "price": 999.5, "brim": True})])
    other.save()
    backend.settle(index, "hat-1")
    assert index.facets()["label"] == {**before["label"], "Hat": 1}
    assert index.ranges()["price"][1] == 999.5
    assert "brim" in index.fields()
    index.delete(["hat-1"])
    assert index.facets() == before
    assert index.ranges()["price"][1] == expected_ranges(ITEMS, None)["price"][1]
    index.add([Item("hat-2", ITEMS[0].vector, {"label": "Hat"})])
    assert index.facets(filter={"label": "Hat"})["label"] == {"Hat": 1}
    assert index.facets()["label"]["Hat"] == 1


# ----------------------------------------------------------------------------------------- unknown fields
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_filter_on_a_field_no_item_has_is_refused_naming_the_known_fields(backend) -> None:
    index = backend.new()
    catalog = catalog_of(index)
    query = ITEMS[0].vector
    with pytest.raises(FilterError) as refused:
        search_vector(catalog, query, 5, filter={"lable": "Dress"})
    assert str(refused.value) == f"unknown filter field 'lable'; known fields: {KNOWN}"
    with pytest.raises(FilterError, match=r"^unknown filter fields 'color', 'lable'; known fields: colour_name, "):
        search_vector(catalog, query, 5, filter={"label": "Dress", "color": "red", "lable": "x"})
    for ask in (lambda f: index.facets(filter=f), lambda f: index.ranges(filter=f)):
        with pytest.raises(FilterError, match=f"^unknown filter field 'color'; known fields: {KNOWN}$"):
            ask({"color": "red"})
    with pytest.raises(FilterError, match="range"):  # a malformed filter is still refused for what it is
        index.facets(filter={"lable": {"between": 1}})
    assert [c.field for c in index.check_filter({"label": "Dress", "price": {"lt": 5}})] == ["label", "price"]
    assert index.known_fields().reads == 1  # one read of the fields for all of the above
    if backend.kind != "opensearch-fake":  # the fake answers no k-NN query it is not given
        hits = search_vector(catalog, query, 5, filter={"label": "Dress"}).results
        assert hits and all(hit.metadata["label"] == "Dress" for hit in hits)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_field_added_by_another_writer_is_accepted_once_a_refresh_is_due(backend) -> None:
    index = backend.new()
    clock = Clock()
    index.known_fields().clock = clock
    index.check_filter({"label": "Dress"})  # fills the cache
    other = backend.reopen(index)
    other.add([Item("new-1", ITEMS[0].vector, {"label": "Dress", "fabric": "silk"})])
    other.save()
    backend.settle(index, "new-1")
    clock.advance(1)  # the last read was a second ago: not read again yet, so still unknown
    with pytest.raises(FilterError, match="unknown filter field 'fabric'; known fields: colour_name, "):
        index.facets(filter={"fabric": "silk"})
    assert index.known_fields().reads == 1
    clock.advance(5)
    assert index.facets(filter={"fabric": "silk"})["label"] == {"Dress": 1}
    assert index.ranges(filter={"fabric": ["silk", "wool"]}) == {}
    assert index.known_fields().reads == 2
    assert "fabric" in index.check_filter({"fabric": "silk"})[0].field


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_an_empty_index_refuses_nothing_and_its_own_writes_teach_the_cache(backend) -> None:
    index = backend.new([])
    assert index.facets(filter={"lable": "Dress"}) == {}  # nothing to know: nothing refused, nothing found
    assert index.ranges(filter={"lable": "Dress"}) == {}
    assert index.known_fields().reads == 1
    index.add(ITEMS[:10])  # written through this object: its fields are known at once, nothing is read
    with pytest.raises(FilterError, match="unknown filter field 'lable'; known fields: colour_name, "):
        index.facets(filter={"lable": "Dress"})
    index.check_filter({"label": "Dress", "weight": 300})
    assert index.known_fields().reads == 1


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_client_spamming_unknown_fields_causes_one_read_per_interval(backend) -> None:
    index = backend.new()
    clock = Clock()
    index.known_fields().clock = clock
    catalog = catalog_of(index)
    for n in range(200):
        with pytest.raises(FilterError):
            search_vector(catalog, ITEMS[0].vector, 3, filter={f"junk{n}": 1})
    assert index.known_fields().reads == 1
    clock.advance(5)
    for n in range(200):
        with pytest.raises(FilterError):
            index.facets(filter={f"junk{n}": 1})
    assert index.known_fields().reads == 2


# ----------------------------------------------------------------------------------------- the cache itself
def test_refreshes_are_rate_limited_whatever_the_rate_and_the_threads() -> None:
    reads: list[float] = []
    clock = Clock()

    def read() -> set[str]:
        reads.append(clock())
        return {"label", "kids"}

    known = KnownFields(read, clock=clock)
    known.check([])  # nothing to check: nothing read
    assert reads == []
    for _ in range(1000):
        with pytest.raises(FilterError, match=r"^unknown filter field 'lable'; known fields: kids, label$"):
            known.check(["lable"])
    assert len(reads) == 1
    clock.advance(4.9)
    with pytest.raises(FilterError):
        known.check(["lable"])
    assert len(reads) == 1
    clock.advance(0.2)
    errors: list[Exception] = []

    def spam() -> None:
        for _ in range(200):
            try:
                known.check(["lable", "label"])
            except FilterError as error:
                errors.append(error)

    threads = [threading.Thread(target=spam) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 1600 and len(reads) == 2  # eight threads, one read between them
    known.check(["label", "kids"])  # known fields never read
    assert len(reads) == 2


def test_a_slow_read_spaces_the_refreshes_out_further() -> None:
    clock = Clock()
    known = KnownFields(lambda: time.sleep(0.05) or {"label"}, min_interval=0.1, clock=clock)
    known.check(["label"])
    clock.advance(0.2)  # past the minimum, but not ten times the 50 ms the read took
    with pytest.raises(FilterError):
        known.check(["lable"])
    assert known.reads == 1
    clock.advance(0.4)
    with pytest.raises(FilterError):
        known.check(["lable"])
    assert known.reads == 2


def test_the_message_lists_known_fields_sorted_and_capped() -> None:
    names = [f"field_{n:02d}" for n in range(MAX_NAMED + 12)]
    message = unknown_fields_message(["colour"], reversed(names))
    assert message.startswith("unknown filter field 'colour'; known fields: field_00, field_01, ")
    assert message.endswith(f"field_{MAX_NAMED - 1:02d} and 12 more")
    many = unknown_fields_message([f"x{n}" for n in range(8)], ["a" * 100])
    assert many == f"unknown filter fields 'x0', 'x1', 'x2', 'x3', 'x4' and 3 more; known fields: {'a' * 37}..."


# ----------------------------------------------------------------------------------------- the API and the CLI
def shop_index(path: Path, embedder: Any) -> EmbeddedIndex:
    """An embedded index of the suite's model with a few shop items (vectors made up, no photos needed)."""
    settings = IndexSettings(dim=embedder.dim, kind="exact", embedding=embedder.descriptor())
    index = EmbeddedIndex.create(path, settings)
    rng = np.random.default_rng(0)
    index.add(
        [
            Item(
                f"item-{i}",
                rng.random(embedder.dim, dtype=np.float32),
                {"label": LABELS[i % 3], "kids": i % 2 == 0, "sender_id": 100 + i},
            )
            for i in range(12)
        ]
    )
    index.save()
    return index


def test_the_api_answers_400_naming_the_known_fields(tmp_path: Path, lite0) -> None:
    from conftest import make_photo
    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.config import Settings

    catalog = Catalog(shop_index(tmp_path / "index", lite0), lite0)
    settings = Settings(cache=tmp_path, api_key=None, url_allow=[], query_cache=16)  # type: ignore[call-arg]
    photo = __import__("base64").b64encode(make_photo(3)).decode()
    try:
        with TestClient(create_app(catalog, settings)) as client:
            for body in ({"id": "item-1"}, {"image_base64": photo}):
                response = client.post("/api/search", json={**body, "filter": {"lable": "Dress"}})
                assert response.status_code == 400, response.text
                assert response.json() == {
                    "error": {
                        "code": "bad_filter",
                        "message": "unknown filter field 'lable'; known fields: kids, label, sender_id",
                    }
                }
            good = client.post("/api/search", json={"id": "item-1", "filter": {"label": "Dress"}, "k": 12})
            assert good.status_code == 200, good.text
            assert {hit["metadata"]["label"] for hit in good.json()["results"]} == {"Dress"}
    finally:
        catalog.close()


def test_the_cli_says_so_in_one_line(tmp_path: Path, cache_dir: Path, lite0) -> None:
    shop_index(tmp_path / "index", lite0).close()
    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))

    def search(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "lookalike.cli", "search", "item-1", "--index", str(tmp_path / "index")]
        return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300)

    refused = search("--filter", "lable=Dress")
    assert refused.returncode == 1, refused
    assert refused.stderr.splitlines() == ["error: unknown filter field 'lable'; known fields: kids, label, sender_id"]
    assert refused.stdout == ""
    found = search("--filter", "label=Dress", "--json")
    assert found.returncode == 0, found.stderr
    assert {hit["metadata"]["label"] for hit in json.loads(found.stdout)["results"]} == {"Dress"}
