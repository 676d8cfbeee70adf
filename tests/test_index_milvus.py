"""The Milvus backend against a real server: exactness, recall, filters, writes and bad input, held to the same
answers as NumPy brute force and the embedded index.

The whole module skips (one line, in about a second) when no server answers on MILVUS_URI (default
http://127.0.0.1:19530); MILVUS_REQUIRED=1 turns that skip into a failure. The server listens on every
interface, so it runs, with the tests, in a private network namespace that has only loopback:

    scripts/in-private-netns.sh bash -c 'scripts/milvus-server.sh start &&
        MILVUS_REQUIRED=1 .venv/bin/pytest tests/test_index_milvus.py; rc=$?; scripts/milvus-server.sh stop; exit $rc'

Every test works in collections of its own (random names), dropped at the end.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from lookalike.errors import FilterError, IndexError_, VectorSizeError
from lookalike.index import EmbeddedIndex, IndexSettings, Item, SearchResult
from lookalike.index import milvus as milvus_module
from lookalike.index.filters import matches, normalize
from lookalike.index.milvus import MilvusIndex, to_expression

MILVUS_URI = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")
REQUIRED = os.environ.get("MILVUS_REQUIRED") == "1"
KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]
DIM = 32
N = 600


def _unreachable(uri: str) -> str | None:
    """Why no Milvus server can be used at ``uri``, or None: a TCP probe of at most 1 s, then a real connection."""
    if milvus_module._IMPORT_ERROR is not None:
        return f"pymilvus is not installed (pip install -e '.[milvus]'): {milvus_module._IMPORT_ERROR}"
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 19530), timeout=1):
            pass
    except OSError as error:
        return f"no Milvus server at {uri} ({error}); see scripts/milvus-server.sh"
    try:
        MilvusIndex.exists(uri, "lookalike_probe", timeout=2)
    except IndexError_ as error:
        return f"the server at {uri} does not answer as Milvus: {error}"
    return None


_REASON = _unreachable(MILVUS_URI)
if _REASON is not None:
    if REQUIRED:
        pytest.fail(f"MILVUS_REQUIRED=1 but {_REASON}", pytrace=False)
    pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture(scope="module")
def milvus() -> str:
    return MILVUS_URI


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def new_index(milvus: str) -> Iterator[Callable[..., MilvusIndex]]:
    """Makes indexes in fresh collections and drops them all after the test."""
    made: list[MilvusIndex] = []

    def make(metric: str = "l2", kind: str = "exact", dim: int = 16, **settings: Any) -> MilvusIndex:
        index = MilvusIndex.create(
            milvus,
            unique_name(),
            IndexSettings(dim=dim, metric=metric, kind=kind, **settings),  # type: ignore[arg-type]
        )
        made.append(index)
        return index

    yield make
    for index in made:
        _drop(milvus, index.name)


def _drop(uri: str, name: str) -> None:
    """Drop through a connection of its own, whether or not the test closed its index."""
    if MilvusIndex.exists(uri, name):
        index = MilvusIndex.open(uri, name)
        index.drop()


# ----------------------------------------------------------------------------------------- helpers


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    assignment = rng.integers(0, clusters, size=n)
    vectors = centres[assignment] + spread * rng.normal(size=(n, dim))
    return vectors.astype(np.float32), assignment


def distances_to(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    vectors, query = vectors.astype(np.float64), np.asarray(query, dtype=np.float64)
    if metric == "l2":
        return np.sqrt(((vectors - query) ** 2).sum(axis=1))
    similarity = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return 1.0 - similarity


def brute_force(ids: list[str], vectors: np.ndarray, query: np.ndarray, metric: str, k: int) -> list[tuple[str, float]]:
    distances = distances_to(vectors, query, metric)
    order = np.argsort(distances, kind="stable")[:k]
    return [(ids[i], float(distances[i])) for i in order]


def expected_score(distance: float, metric: str) -> float:
    return 1.0 / (1.0 + distance**2) if metric == "l2" else 1.0 - distance


def ids_of(results: list[SearchResult]) -> list[str]:
    return [r.id for r in results]


def recall(found: list[str], truth: list[str]) -> float:
    return len(set(found) & set(truth)) / max(len(truth), 1)


def random_items(n: int, dim: int = 16, seed: int = 0, prefix: str = "item") -> list[Item]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        Item(f"{prefix}-{i}", vectors[i], {"label": f"l{i % 5}", "i": i}, f"/img/{prefix}-{i}.jpg", f"h{i}")
        for i in range(n)
    ]


KIDS_VALUES: list[Any] = [True, False, 1, 0, "1", "true", 1.0]


def catalogue_metadata(i: int, cluster: int, rng: np.random.Generator) -> dict[str, Any]:
    metadata: dict[str, Any] = {"label": f"c{cluster}", "sku": i}
    if rng.random() < 0.9:
        metadata["colour"] = ["red", "blue", "green"][int(rng.integers(0, 3))]
    if rng.random() < 0.85:
        price = int(rng.integers(0, 400)) / 4
        metadata["price"] = int(price) if rng.random() < 0.5 else price
    metadata["kids"] = KIDS_VALUES[i % len(KIDS_VALUES)]
    return metadata


class Catalogue:
    """600 clustered vectors with metadata, indexed once per (kind, metric) for the read-only tests."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.vectors, clusters = clustered(N, DIM, clusters=20, seed=7)
        rng = np.random.default_rng(8)
        self.ids = [f"p{i:04d}" for i in range(N)]
        self.metadata = [catalogue_metadata(i, int(c), rng) for i, c in enumerate(clusters)]
        self.queries = clustered(40, DIM, clusters=20, seed=7, spread=0.6)[0]
        self._built: dict[tuple[str, str], MilvusIndex] = {}

    def index(self, kind: str, metric: str) -> MilvusIndex:
        if (kind, metric) not in self._built:
            index = MilvusIndex.create(
                self.uri,
                unique_name("catalogue"),
                IndexSettings(dim=DIM, metric=metric, kind=kind),  # type: ignore[arg-type]
            )
            self._built[(kind, metric)] = index
            items = [
                Item(i, v, m, f"s3://b/{i}.jpg") for i, v, m in zip(self.ids, self.vectors, self.metadata, strict=True)
            ]
            for start in range(0, N, 250):  # several adds, as ingest does
                index.add(items[start : start + 250])
        return self._built[(kind, metric)]

    def truth(self, query: np.ndarray, metric: str, k: int, where: Callable[[dict], bool] | None = None):
        keep = [i for i, m in enumerate(self.metadata) if where is None or where(m)]
        return brute_force([self.ids[i] for i in keep], self.vectors[keep], query, metric, k)

    def drop(self) -> None:
        for index in self._built.values():
            index.drop()


@pytest.fixture(scope="module")
def catalogue(milvus: str) -> Iterator[Catalogue]:
    built = Catalogue(milvus)
    yield built
    built.drop()


# ----------------------------------------------------------------------------------------- opening and closing


def test_create_open_recovers_settings_and_drop(milvus: str) -> None:
    name = unique_name()
    embedding = {"name": "efficientnet_lite0", "dim": 24, "preprocessing": {"size": 224, "mean": [0.5, 0.5, 0.5]}}
    settings = IndexSettings(
        dim=24, metric="l2", kind="hnsw", hnsw_m=12, ef_construction=77, ef_search=33, embedding=embedding
    )
    assert not MilvusIndex.exists(milvus, name)
    index = MilvusIndex.create(milvus, name, settings)
    try:
        assert MilvusIndex.exists(milvus, name)
        assert index.count() == 0
        assert index.search(np.ones(24), k=5) == []
        assert index.search(np.ones(24), k=5, exact=True) == []
        index.add(random_items(5, dim=24))
        with pytest.raises(IndexError_, match="already exists"):
            MilvusIndex.create(milvus, name, settings)

        reopened = MilvusIndex.open(milvus, name)
        assert reopened.settings == settings
        assert reopened.settings.embedding == embedding
        assert reopened.count() == 5  # another connection sees what the first wrote
        assert reopened.get("item-3") is not None
        reopened.close()
    finally:
        index.drop()
    assert not MilvusIndex.exists(milvus, name)
    with pytest.raises(IndexError_, match="no index"):
        MilvusIndex.open(milvus, name)
    with pytest.raises(IndexError_, match="closed"):
        index.count()


@pytest.mark.parametrize("name", ["with-dash", "1starts_with_digit", "", "has space", "ü", "x" * 256])
def test_bad_collection_names_are_refused(milvus: str, name: str) -> None:
    with pytest.raises(IndexError_, match="bad Milvus index name"):
        MilvusIndex.create(milvus, name, IndexSettings(dim=4))


@pytest.mark.parametrize("dim", [0, -3, 40_000])
def test_bad_dimension_is_refused(milvus: str, dim: int) -> None:
    name = unique_name()
    with pytest.raises(VectorSizeError):
        MilvusIndex.create(milvus, name, IndexSettings(dim=dim))
    assert not MilvusIndex.exists(milvus, name)


def test_a_foreign_collection_is_not_opened(milvus: str) -> None:
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections

    name = unique_name("foreign")
    connections.connect(alias=name, uri=milvus, timeout=5)
    try:
        schema = CollectionSchema(
            [
                FieldSchema("pk", DataType.INT64, is_primary=True),
                FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
            ],
            description="somebody else's",
        )
        Collection(name, schema, using=name)
        with pytest.raises(IndexError_, match="not a lookalike index"):
            MilvusIndex.open(milvus, name)
    finally:
        Collection(name, using=name).drop()
        connections.disconnect(name)


def test_a_collection_made_before_colours_opens_and_works(milvus: str) -> None:
    """The layout of the release before colour descriptors (no colour field): opened, written and read as
    ever, every colour None (2.3 cannot add a field to a collection)."""
    import json

    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections

    from lookalike.index.base import server_record

    name = unique_name("old")
    settings = IndexSettings(dim=16, metric="cosine", kind="exact")
    connections.connect(alias=name, uri=milvus, timeout=5)
    try:
        schema = CollectionSchema(
            [
                FieldSchema("item_id", DataType.VARCHAR, is_primary=True, max_length=512),
                FieldSchema("vector", DataType.FLOAT_VECTOR, dim=16),
                FieldSchema("location", DataType.VARCHAR, max_length=65_535),
                FieldSchema("content_hash", DataType.VARCHAR, max_length=65_535),
                FieldSchema("metadata", DataType.JSON),
            ],
            description=json.dumps({"lookalike": {"format": 1, "settings": server_record(settings)}}),
        )
        old = Collection(name, schema, using=name, shards_num=1)
        old.create_index("vector", {"index_type": "FLAT", "metric_type": "COSINE", "params": {}})
        index = MilvusIndex.open(milvus, name)
        items = random_items(5)
        items[0].colour = np.full(12, 1 / 12, dtype=np.float32)
        index.add(items)
        assert index.count() == 5 and index.search(items[0].vector, k=1)[0].id == items[0].id
        got = index.get(items[0].id)
        assert got is not None and got.colour is None and got.metadata == items[0].metadata
        assert index.colours([items[0].id, "missing"]) == {items[0].id: None, "missing": None}
        assert all(item.colour is None for batch in index.iter_items() for item in batch)
        index.drop()
    finally:
        connections.disconnect(name)
        _drop(milvus, name)


def test_unreachable_server_is_an_index_error() -> None:
    started = time.monotonic()
    with pytest.raises(IndexError_, match="cannot reach Milvus"):
        MilvusIndex.exists("http://127.0.0.1:1", "anything", timeout=1)
    assert time.monotonic() - started < 5


def test_closed_index_refuses_work_and_close_is_idempotent(new_index) -> None:
    index = new_index()
    index.add(random_items(3))
    index.close()
    index.close()
    for call in (index.count, index.content_hashes, lambda: index.search(np.ones(16), 1), lambda: index.get("x")):
        with pytest.raises(IndexError_, match="closed"):
            call()


# ----------------------------------------------------------------------------------------- exactness and recall


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("kind", "exact"), [("exact", False), ("exact", True), ("hnsw", True)])
def test_exact_search_equals_brute_force(catalogue: Catalogue, kind: str, exact: bool, metric: str) -> None:
    index = catalogue.index(kind, metric)
    for query in catalogue.queries[:15]:
        results = index.search(query, k=10, exact=exact)
        truth = catalogue.truth(query, metric, 10)
        assert ids_of(results) == [i for i, _ in truth]
        np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], rtol=1e-4, atol=1e-5)
        for result in results:
            assert result.score == pytest.approx(expected_score(result.distance, metric), abs=1e-9)
            assert result.location == f"s3://b/{result.id}.jpg"
            assert result.metadata == catalogue.metadata[int(result.id[1:])]


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_recall_against_brute_force(catalogue: Catalogue, metric: str) -> None:
    index = catalogue.index("hnsw", metric)
    recalls = [
        recall(ids_of(index.search(q, k=10)), [i for i, _ in catalogue.truth(q, metric, 10)]) for q in catalogue.queries
    ]
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("metric", METRICS)
def test_scores_follow_the_metric(new_index, metric: str) -> None:
    index = new_index(metric, "hnsw", dim=2)
    index.add([Item("a", np.array([3.0, 4.0])), Item("b", np.array([0.0, -2.0]))])
    for exact in (False, True):
        by_id = {r.id: r for r in index.search(np.array([0.0, 1.0]), k=2, exact=exact)}
        if metric == "l2":
            assert by_id["a"].distance == pytest.approx(np.sqrt(9 + 9), rel=1e-6)
            assert by_id["a"].score == pytest.approx(1 / (1 + 18), rel=1e-6)
            assert by_id["b"].distance == pytest.approx(3.0, rel=1e-6)
            assert by_id["b"].score == pytest.approx(0.1, rel=1e-6)
        else:
            assert by_id["a"].score == pytest.approx(0.8, abs=1e-6)  # cosine similarity of (3,4) and (0,1)
            assert by_id["a"].distance == pytest.approx(0.2, abs=1e-6)
            assert by_id["b"].score == pytest.approx(-1.0, abs=1e-6)
            assert by_id["b"].distance == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_results_sorted_best_first(catalogue: Catalogue, kind: str, metric: str) -> None:
    index = catalogue.index(kind, metric)
    for query in catalogue.queries[:6]:
        for filter in (None, {"colour": "red"}, {"label": "c1"}):
            for exact in (False, True):
                results = index.search(query, k=50, filter=filter, exact=exact)
                assert len(results) > 1
                distances = [r.distance for r in results]
                assert distances == sorted(distances)
                assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
                assert len(set(ids_of(results))) == len(results)


@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_count_returns_everything(new_index, kind: str) -> None:
    index = new_index("cosine", kind)
    items = random_items(25)
    index.add(items)
    query = np.ones(16, dtype=np.float32)
    for k in (1000, 20_000):  # 20000 is above Milvus's top-k limit: answered by brute force
        for exact in (False, True):
            results = index.search(query, k=k, exact=exact)
            assert sorted(ids_of(results)) == sorted(item.id for item in items)
            truth = brute_force([i.id for i in items], np.stack([i.vector for i in items]), query, "cosine", 25)
            np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], atol=1e-5)
    assert len(index.search(query, k=1000, filter={"label": "l1"})) == 5


@pytest.mark.parametrize("k", [0, -1, True, False, 2.0, 2.5, "3", None])
def test_invalid_k_is_refused(catalogue: Catalogue, k: Any) -> None:
    with pytest.raises(IndexError_):
        catalogue.index("exact", "l2").search(catalogue.queries[0], k=k)


@pytest.mark.parametrize("kind", KINDS)
def test_query_of_wrong_dimension_or_not_finite(catalogue: Catalogue, kind: str) -> None:
    index = catalogue.index(kind, "l2")
    for query in (np.zeros(DIM - 1), np.zeros(DIM + 1), np.zeros(0)):
        with pytest.raises(VectorSizeError):
            index.search(query, k=3)
    for bad in (np.nan, np.inf):
        query = catalogue.queries[0].copy()
        query[3] = bad
        with pytest.raises(VectorSizeError):
            index.search(query, k=3)


def test_bad_filter_is_a_filter_error(catalogue: Catalogue) -> None:
    index = catalogue.index("exact", "l2")
    for filter in ({"price": {"above": 3}}, {"bad'field": 1}, {"label": []}, {"label": {"gte": "a"}}):
        with pytest.raises(FilterError):
            index.search(catalogue.queries[0], k=3, filter=filter)


# ----------------------------------------------------------------------------------------- filtered search


def _is_int(value: Any, wanted: int) -> bool:
    return type(value) is int and value == wanted


def _number(metadata: dict[str, Any]) -> float | None:
    price = metadata.get("price")
    return price if isinstance(price, int | float) and not isinstance(price, bool) else None


FILTER_CASES: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("equality", {"label": "c3"}, lambda m: m["label"] == "c3"),
    ("one-of", {"label": ["c1", "c4", "c7"]}, lambda m: m["label"] in ("c1", "c4", "c7")),
    ("range", {"price": {"gte": 20, "lt": 60}}, lambda m: (p := _number(m)) is not None and 20 <= p < 60),
    ("range-open", {"price": {"gt": 95.5}}, lambda m: (p := _number(m)) is not None and p > 95.5),
    ("true", {"kids": True}, lambda m: m["kids"] is True),
    ("false", {"kids": False}, lambda m: m["kids"] is False),
    ("int-1-is-not-true", {"kids": 1}, lambda m: m["kids"] == 1 and not isinstance(m["kids"], bool | str)),
    ("float-1-is-int-1", {"kids": 1.0}, lambda m: m["kids"] == 1 and not isinstance(m["kids"], bool | str)),
    ("text-1-is-not-1", {"kids": "1"}, lambda m: m["kids"] == "1"),
    ("mixed-one-of", {"kids": [True, 0]}, lambda m: m["kids"] is True or _is_int(m["kids"], 0)),
    (
        "combined",
        {"label": ["c1", "c2", "c3", "c4", "c5", "c6"], "colour": "red", "price": {"lte": 50}},
        lambda m: (
            m["label"] in ("c1", "c2", "c3", "c4", "c5", "c6")
            and m.get("colour") == "red"
            and (p := _number(m)) is not None
            and p <= 50
        ),
    ),
    ("field-sometimes-missing", {"colour": ["red", "blue", "green"]}, lambda m: "colour" in m),
    ("single-item", {"sku": 123}, lambda m: m["sku"] == 123),
]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("name", "filter", "where"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filtered_exact_search_equals_brute_force_over_matches(
    catalogue: Catalogue, name: str, filter: dict[str, Any], where: Callable, metric: str
) -> None:
    index = catalogue.index("exact", metric)
    conditions = normalize(filter)
    assert [matches(m, conditions) for m in catalogue.metadata] == [bool(where(m)) for m in catalogue.metadata]
    assert sum(map(where, catalogue.metadata)) > 0
    for query in catalogue.queries[:6]:
        truth = catalogue.truth(query, metric, 10, where)
        for exact in (False, True):
            results = index.search(query, k=10, filter=filter, exact=exact)
            assert ids_of(results) == [i for i, _ in truth]
            np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], rtol=1e-4, atol=1e-5)
            assert all(where(r.metadata) for r in results)


@pytest.mark.parametrize(("name", "filter", "where"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filtered_hnsw_search_only_returns_matches(
    catalogue: Catalogue, name: str, filter: dict[str, Any], where: Callable
) -> None:
    index = catalogue.index("hnsw", "cosine")
    matching = sum(map(where, catalogue.metadata))
    recalls = []
    for query in catalogue.queries[:6]:
        results = index.search(query, k=10, filter=filter)
        assert len(results) == min(10, matching)
        assert all(where(catalogue.metadata[int(r.id[1:])]) for r in results)
        truth = [i for i, _ in catalogue.truth(query, "cosine", 10, where)]
        recalls.append(recall(ids_of(results), truth))
        assert ids_of(index.search(query, k=10, filter=filter, exact=True)) == truth
    assert np.mean(recalls) >= 0.9


def test_filter_on_absent_field_or_value_finds_nothing(catalogue: Catalogue) -> None:
    for kind in KINDS:
        index = catalogue.index(kind, "l2")
        for exact in (False, True):
            query = catalogue.queries[0]
            assert index.search(query, k=5, filter={"nope": 1}, exact=exact) == []
            assert index.search(query, k=5, filter={"label": "no-such-label"}, exact=exact) == []
            assert index.search(query, k=5, filter={"price": {"gt": 1e9}}, exact=exact) == []
            with pytest.raises(FilterError, match="finite"):  # the shared contract: no engine compares inf
                index.search(query, k=5, filter={"price": {"gt": float("inf")}}, exact=exact)


ODD_STRINGS = ['quo"te', "apo'strophe", "back\\slash", "new\nline", "tab\t", "Ünïcødé 👗", "", " ", 'a" or true']
TYPED_VALUES: list[Any] = [
    True, False, 1, 0, -3, 1.0, 1.5, 2**53 + 1, 2**63 - 1, "1", "true", "1.0", None, [1, 2], {"a": 1}, *ODD_STRINGS,
]  # fmt: skip


def test_filters_agree_with_matches_for_every_json_type(new_index) -> None:
    """Booleans, integers, floats, text, null, lists and objects: Milvus's answer is filters.matches's."""
    index = new_index("l2", "hnsw", dim=4)
    rng = np.random.default_rng(3)
    metadata = [{"v": value, "w.x-y z": i % 3} for i, value in enumerate(TYPED_VALUES)]
    metadata += [{}, {"w.x-y z": "0"}]  # "v" missing
    items = [Item(f"t{i}", rng.normal(size=4), m) for i, m in enumerate(metadata)]
    index.add(items)
    cases: list[dict[str, Any]] = [
        {"v": value} for value in TYPED_VALUES if value is not None and not isinstance(value, list | dict)
    ]
    cases += [
        {"v": [True, 0]}, {"v": [1, "1"]}, {"v": [1.5, -3, "true", False]}, {"v": ODD_STRINGS}, {"v": [2, 3]},
        {"v": {"gte": 1}}, {"v": {"gt": 0.5, "lte": 1.5}}, {"v": {"lt": 0}}, {"v": {"gte": -1e300}},
        {"v": {"gt": -1e308, "lt": 1}}, {"v": {"lt": -1e308}}, {"v": 2**63 - 1}, {"v": -(2**63) + 1},
        {"v": 2**53}, {"missing": 1}, {"w.x-y z": 1}, {"w.x-y z": "0"},
        {"w.x-y z": [0, 2]}, {"v": 1, "w.x-y z": {"lte": 1}},
    ]  # fmt: skip
    query = np.zeros(4, dtype=np.float32)
    for filter in cases:
        conditions = normalize(filter)
        expected = {item.id for item in items if matches(item.metadata, conditions)}
        for exact in (False, True):
            found = {r.id for r in index.search(query, k=100, filter=filter, exact=exact)}
            assert found == expected, (filter, to_expression(conditions))


def test_expressions_quote_values_safely() -> None:
    assert to_expression(normalize({"label": "Dress"})) == '(metadata["label"] == "Dress")'
    assert to_expression(normalize({"a": 'x" or item_id != "'})) == '(metadata["a"] == "x\\" or item_id != \\"")'
    assert to_expression(normalize({"a": "é\n"})) == '(metadata["a"] == "\\u00e9\\u000a")'
    assert to_expression(normalize({"a": [True, 1, 1.5, "1"]})) == (
        '(metadata["a"] == true or metadata["a"] == 1 or metadata["a"] == 1.5 or metadata["a"] == "1")'
    )
    assert to_expression(normalize({"a": ["x", "y"], "b": {"gte": 1, "lt": 2.5}})) == (
        '(metadata["a"] in ["x", "y"]) and (metadata["b"] >= 1.0 and metadata["b"] < 2.5)'
    )
    with pytest.raises(FilterError):
        normalize({"a": {"gt": float("inf")}})
    with pytest.raises(FilterError):
        normalize({"a": 2**70})
    assert to_expression(normalize(None)) == ""
    with pytest.raises(FilterError):
        to_expression(normalize({"a": "\ud800"}))


@pytest.mark.parametrize("metric", METRICS)
def test_very_selective_filter_on_hnsw_returns_every_match(new_index, metric: str) -> None:
    n = 3000
    vectors, _ = clustered(n, 16, clusters=30, seed=11, spread=0.5)
    rng = np.random.default_rng(12)
    rare = set(rng.choice(n, size=7, replace=False).tolist())
    index = new_index(metric, "hnsw", dim=16, hnsw_m=16, ef_construction=64)
    index.add([Item(f"b{i}", vectors[i], {"rare": i in rare}) for i in range(n)])
    index.save()
    for query in rng.normal(size=(5, 16)).astype(np.float32):
        results = index.search(query, k=10, filter={"rare": True})
        assert {r.id for r in results} == {f"b{i}" for i in rare}
        truth = brute_force([f"b{i}" for i in sorted(rare)], vectors[sorted(rare)], query, metric, 10)
        assert ids_of(results) == [i for i, _ in truth]


# ----------------------------------------------------------------------------------------- writes


@pytest.mark.parametrize(("kind", "metric"), [("hnsw", "l2"), ("exact", "cosine")])
def test_upsert_replaces_vector_and_metadata(new_index, kind: str, metric: str) -> None:
    index = new_index(metric, kind)
    items = random_items(200)
    index.add(items)
    old = items[17]
    new_vector = np.random.default_rng(99).normal(size=16).astype(np.float32)
    index.add([Item(old.id, new_vector, {"label": "new"}, "/new.jpg", "hnew")])

    assert index.count() == 200
    stored = index.get(old.id, with_vector=True)
    assert stored is not None
    np.testing.assert_array_equal(stored.vector, new_vector)
    assert (stored.metadata, stored.location, stored.content_hash) == ({"label": "new"}, "/new.jpg", "hnew")
    assert index.content_hashes()[old.id] == "hnew"
    assert index.search(new_vector, k=3, filter={"label": "new"})[0].id == old.id
    assert [r.id for r in index.search(new_vector, k=3, filter={"label": old.metadata["label"]})][:1] != [old.id]

    for exact in (False, True):
        top = index.search(new_vector, k=1, exact=exact)[0]
        assert top.id == old.id
        assert top.distance == pytest.approx(0.0, abs=1e-5)
        assert top.metadata == {"label": "new"}
        everything = index.search(old.vector, k=500, exact=exact)
        assert len(everything) == 200  # the replaced row takes no result slot
        hits = [r for r in everything if r.id == old.id]
        assert len(hits) == 1
        assert hits[0].distance == pytest.approx(distances_to(new_vector[None], old.vector, metric)[0], abs=1e-4)
        assert index.search(old.vector, k=5, exact=exact)[0].distance > 1e-3  # nothing sits at the old vector


def test_upsert_many_times_keeps_one_row(new_index) -> None:
    index = new_index("l2", "hnsw")
    items = random_items(30)
    for round in range(4):
        index.add([Item(i.id, i.vector + round, {"round": round}, i.location, f"h{round}") for i in items])
    assert index.count() == 30
    assert set(index.content_hashes().values()) == {"h3"}
    assert index.facets()["round"] == {"3": 30}
    assert sum(len(batch) for batch in index.iter_items(batch_size=7)) == 30


def test_delete_counts_what_existed_and_removes_it_everywhere(new_index) -> None:
    index = new_index("cosine", "hnsw")
    items = random_items(40)
    index.add(items)
    gone = [items[3].id, items[5].id]
    assert index.delete([gone[0], gone[1], gone[0], "no-such-id", "", 42, "x" * 600]) == 2  # type: ignore[list-item]
    assert index.delete(gone) == 0
    assert index.delete([]) == 0
    assert index.count() == 38
    assert index.get(gone[0]) is None
    assert set(gone).isdisjoint(index.content_hashes())
    assert set(gone).isdisjoint(item.id for batch in index.iter_items(batch_size=9) for item in batch)
    for exact in (False, True):
        assert set(gone).isdisjoint(ids_of(index.search(items[3].vector, k=40, exact=exact)))
    index.add([items[3]])  # and it can come back
    assert index.count() == 39
    assert index.search(items[3].vector, k=1)[0].id == items[3].id


def test_get_with_and_without_vector(new_index) -> None:
    index = new_index("l2", "hnsw")
    vector = np.random.default_rng(1).normal(size=16).astype(np.float32)
    index.add(
        [
            Item("full", vector, {"a": 1, "nested": {"b": [1, 2.5, None, "x"]}}, "/f.jpg", "hf"),
            Item("bare", vector * 2),
        ]
    )
    full = index.get("full", with_vector=True)
    assert full is not None
    assert full.vector is not None and full.vector.dtype == np.float32
    np.testing.assert_array_equal(full.vector, vector)
    assert (full.metadata, full.location, full.content_hash) == (
        {"a": 1, "nested": {"b": [1, 2.5, None, "x"]}},
        "/f.jpg",
        "hf",
    )
    assert index.get("full").vector is None  # type: ignore[union-attr]
    bare = index.get("bare")
    assert bare is not None
    assert (bare.metadata, bare.location, bare.content_hash) == ({}, None, None)
    assert index.get("nope") is None
    assert index.get("") is None
    assert index.get("x" * 600) is None


def test_count_content_hashes_and_iter_items(new_index) -> None:
    index = new_index("l2", "exact")
    items = random_items(230)
    for start in range(0, 230, 100):
        index.add(items[start : start + 100])
        if start == 0:
            index.save()  # a sealed segment beside the growing one: paging must merge them in id order
    assert index.count() == 230
    assert index.content_hashes() == {item.id: item.content_hash for item in items}
    by_id = {item.id: item for item in items}
    for batch_size in (1, 37, 230, 5000):
        batches = list(index.iter_items(batch_size=batch_size, with_vectors=True))
        assert all(0 < len(batch) <= batch_size for batch in batches)
        seen = [item.id for batch in batches for item in batch]
        assert sorted(seen) == sorted(by_id) and len(seen) == len(set(seen))
        for item in (it for batch in batches for it in batch):
            original = by_id[item.id]
            np.testing.assert_array_equal(item.vector, original.vector)
            assert (item.metadata, item.location, item.content_hash) == (
                original.metadata,
                original.location,
                original.content_hash,
            )
    assert all(item.vector is None for batch in index.iter_items(with_vectors=False) for item in batch)
    with pytest.raises(IndexError_):
        next(index.iter_items(batch_size=0))


def test_facets_equal_the_embedded_index(new_index, tmp_path: Path) -> None:
    index = new_index("cosine", "hnsw")
    rng = np.random.default_rng(5)
    items = []
    for i in range(120):
        metadata: dict[str, Any] = {"label": ["Dress", "Shirt", "Pants"][i % 3], "kids": KIDS_VALUES[i % 7]}
        metadata["size"] = [1, "1", 2, "L", 2.5][i % 5]  # 1 and "1" share a key; floats are not counted
        metadata["sku"] = i  # many values
        if i % 4:
            metadata["colour"] = "red" if i % 2 else "blue"
        metadata["tags"] = ["a", "b"]  # lists are not counted
        items.append(Item(f"f{i}", rng.normal(size=16), metadata))
    index.add(items)
    embedded = EmbeddedIndex.create(tmp_path / "e", IndexSettings(dim=16, metric="cosine"))
    embedded.add(items)
    try:
        for max_values in (50, 3, 200):
            assert index.facets(max_values) == embedded.facets(max_values)
        facets = index.facets()
        # true (18) and "true" (17) share a key, as 1 and "1" do; 1.0 is a float and not counted
        assert facets["kids"] == {"true": 35, "1": 34, "false": 17, "0": 17}
        assert "sku" not in facets and "tags" not in facets
    finally:
        embedded.close()


# ----------------------------------------------------------------------------------------- bad input


def _bad_batches() -> list[tuple[str, list[Item], type[Exception]]]:
    good = Item("good", np.ones(16, dtype=np.float32), {"a": 1})
    vector = np.ones(16, dtype=np.float32)
    nan = vector.copy()
    nan[2] = np.nan
    inf = vector.copy()
    inf[0] = np.inf
    return [
        ("wrong-dim", [good, Item("x", np.ones(15))], VectorSizeError),
        ("too-long-vector", [good, Item("x", np.ones(17))], VectorSizeError),
        ("nan", [good, Item("x", nan)], VectorSizeError),
        ("inf", [good, Item("x", inf)], VectorSizeError),
        ("no-vector", [good, Item("x", None)], VectorSizeError),
        ("duplicate-ids", [good, Item("x", vector), Item("x", vector)], IndexError_),
        ("empty-id", [good, Item("", vector)], IndexError_),
        ("non-text-id", [good, Item(7, vector)], IndexError_),  # type: ignore[arg-type]
        ("id-too-long", [good, Item("x" * 513, vector)], IndexError_),
        ("id-too-long-in-bytes", [good, Item("👗" * 129, vector)], IndexError_),  # 516 bytes
        ("id-not-unicode", [good, Item("x\ud800", vector)], IndexError_),
        ("metadata-nan", [good, Item("x", vector, {"p": float("nan")})], IndexError_),
        ("metadata-not-json", [good, Item("x", vector, {"s": {1, 2}})], IndexError_),
        ("metadata-not-object", [good, Item("x", vector, ["a"])], IndexError_),  # type: ignore[arg-type]
        ("metadata-too-big", [good, Item("x", vector, {"t": "y" * 65_529})], IndexError_),  # 65537 bytes as JSON
        ("location-not-text", [good, Item("x", vector, {}, 5)], IndexError_),  # type: ignore[arg-type]
        ("hash-too-long", [good, Item("x", vector, {}, None, "h" * 70_000)], IndexError_),
        ("colour-wrong-length", [good, Item("x", vector, colour=np.full(13, 1 / 13))], IndexError_),
        ("colour-nan", [good, Item("x", vector, colour=np.array([np.nan] * 12))], IndexError_),
    ]


def test_bad_input_raises_and_changes_nothing(new_index) -> None:
    index = new_index("l2", "hnsw")
    existing = random_items(10)
    index.add(existing)
    for name, batch, error in _bad_batches():
        with pytest.raises(error):
            index.add(batch)
        assert index.count() == 10, name
        assert index.get("good") is None, name
        assert index.get("x") is None, name
    stored = index.get(existing[0].id, with_vector=True)
    assert stored is not None
    np.testing.assert_array_equal(stored.vector, existing[0].vector)


def test_largest_id_and_metadata_are_accepted(new_index) -> None:
    index = new_index()
    long_id = "é" * 256  # 512 bytes
    index.add([Item(long_id, np.ones(16), {"t": "y" * 65_528})])  # 65536 bytes as JSON
    stored = index.get(long_id)
    assert stored is not None and len(stored.metadata["t"]) == 65_528
    assert index.delete([long_id]) == 1


ODD_IDS = [
    "a/b/c.jpg",
    "s3://bucket/key with spaces.png",
    'quote"inside',
    "single'quote",
    "back\\slash\\",
    "new\nline",
    "tab\there",
    "Ünïcødé-ñame",
    "👗👠",
    "漢字",
    '" or item_id != "',
    "[brackets]",
    "percent%_under",
    "~tilde",
    "nul\x00char",
    "x",
]


def test_ids_with_odd_characters_round_trip(new_index) -> None:
    index = new_index("cosine", "hnsw")
    rng = np.random.default_rng(4)
    items = [Item(i, rng.normal(size=16), {"id": i}, f"/img/{n}.jpg", f"h{n}") for n, i in enumerate(ODD_IDS)]
    index.add(items)
    assert index.count() == len(ODD_IDS)
    assert index.content_hashes() == {item.id: item.content_hash for item in items}
    assert sorted(item.id for batch in index.iter_items(batch_size=4) for item in batch) == sorted(ODD_IDS)
    for item in items:
        got = index.get(item.id, with_vector=True)
        assert got is not None and got.id == item.id and got.metadata == {"id": item.id}
        for exact in (False, True):
            assert index.search(item.vector, k=1, exact=exact)[0].id == item.id
        assert [r.id for r in index.search(item.vector, k=1, filter={"id": item.id})] == [item.id]
    assert index.delete(ODD_IDS[:7]) == 7
    assert sorted(index.content_hashes()) == sorted(ODD_IDS[7:])


# ----------------------------------------------------------------------------------------- durability


def test_save_close_and_reopen(milvus: str) -> None:
    name = unique_name()
    index = MilvusIndex.create(milvus, name, IndexSettings(dim=16, metric="l2", kind="hnsw"))
    try:
        items = random_items(50)
        index.add(items)
        index.save()
        index.save()  # nothing new: no flush
        index.close()
        reopened = MilvusIndex.open(milvus, name)
        assert reopened.count() == 50
        assert reopened.stats()["items"] == 50
        assert reopened.search(items[7].vector, k=1)[0].id == items[7].id
        reopened.close()
    finally:
        _drop(milvus, name)


def test_writes_go_in_bounded_batches(new_index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(milvus_module, "WRITE_BATCH_BYTES", 2_000)  # a few rows per request
    index = new_index()
    items = random_items(45)
    index.add(items)
    assert index.count() == 45
    assert index.content_hashes() == {item.id: item.content_hash for item in items}


# ------------------------------------------------------------------------------- the command line


def test_cli_index_migrate_and_search_on_milvus(milvus: str, cache_dir, lite0, photo_folder: Path, tmp_path) -> None:
    """A user's path: index a folder on Milvus with --backend, migrate an embedded index there, same answers."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lookalike.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )

    direct, migrated = unique_name("cli"), unique_name("mig")
    server = ["--backend", "milvus", "--url", milvus]
    try:
        result = run("index", str(photo_folder), *server, "--name", direct, "--no-progress")
        assert result.returncode == 0, result.stderr
        assert "12 indexed" in result.stdout
        local = str(tmp_path / "local")
        assert run("index", str(photo_folder), "--index", local, "--no-progress").returncode == 0
        result = run(
            "migrate", "--index", local, "--to", "milvus", "--to-url", milvus, "--to-name", migrated, "--no-progress"
        )
        assert result.returncode == 0, result.stderr
        assert "12 copied" in result.stdout

        def top(*where: str) -> list[str]:
            answer = run("search", "tops/item-03.jpg", "--id", "-k", "5", "--exact", "--json", *where)
            assert answer.returncode == 0, answer.stderr
            return [hit["id"] for hit in json.loads(answer.stdout)["results"]]

        expected = top("--index", local)
        assert len(expected) == 5 and "tops/item-03.jpg" not in expected  # more like this leaves itself out
        assert top(*server, "--name", direct) == expected
        assert top(*server, "--name", migrated) == expected
        info = json.loads(run("info", *server, "--name", migrated, "--json").stdout)
        assert (info["model"], info["items"]) == ("efficientnet-lite0", 12)
    finally:
        for name in (direct, migrated):
            _drop(milvus, name)
