"""The embedded FAISS + SQLite index: exactness, recall, filters, writes, durability and bad input."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.errors import FilterError, IndexError_, VectorSizeError
from lookalike.index import EmbeddedIndex, IndexSettings, Item, SearchResult

KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]
DIM = 32
N = 2000


# ----------------------------------------------------------------------------------------- helpers


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 vectors around ``clusters`` random centres, and each one's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    assignment = rng.integers(0, clusters, size=n)
    vectors = centres[assignment] + spread * rng.normal(size=(n, dim))
    return vectors.astype(np.float32), assignment


def distances_to(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """The metric's own distance in float64: Euclidean, or 1 - cosine similarity."""
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


def new_index(path: Path, metric: str = "l2", kind: str = "exact", dim: int = 16, **settings: Any) -> EmbeddedIndex:
    return EmbeddedIndex.create(path, IndexSettings(dim=dim, metric=metric, kind=kind, **settings))


def random_items(n: int, dim: int = 16, seed: int = 0, prefix: str = "item") -> list[Item]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        Item(f"{prefix}-{i}", vectors[i], {"label": f"l{i % 5}", "i": i}, f"/img/{prefix}-{i}.jpg", f"h{i}")
        for i in range(n)
    ]


def all_results(index: EmbeddedIndex, query: np.ndarray, **kwargs: Any) -> list[SearchResult]:
    return index.search(query, k=max(index.count(), 1), **kwargs)


def catalogue_metadata(i: int, cluster: int, rng: np.random.Generator) -> dict[str, Any]:
    metadata: dict[str, Any] = {"label": f"c{cluster}", "sku": i}
    if rng.random() < 0.9:
        metadata["colour"] = ["red", "blue", "green"][int(rng.integers(0, 3))]
    if rng.random() < 0.85:
        price = int(rng.integers(0, 400)) / 4
        metadata["price"] = int(price) if rng.random() < 0.5 else price
    metadata["kids"] = [True, False, 1, 0, "1", "true"][i % 6]
    return metadata


class Catalogue:
    """2000 clustered vectors with metadata, indexed once per (kind, metric) for the read-only tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vectors, clusters = clustered(N, DIM, clusters=20, seed=7)
        rng = np.random.default_rng(8)
        self.ids = [f"p{i:04d}" for i in range(N)]
        self.metadata = [catalogue_metadata(i, int(c), rng) for i, c in enumerate(clusters)]
        self.queries = clustered(60, DIM, clusters=20, seed=7, spread=0.6)[0]  # same centres, new points
        self._built: dict[tuple[str, str], EmbeddedIndex] = {}

    def index(self, kind: str, metric: str) -> EmbeddedIndex:
        if (kind, metric) not in self._built:
            index = new_index(self.root / f"{kind}-{metric}", metric, kind, dim=DIM)
            items = [
                Item(i, v, m, f"s3://b/{i}.jpg") for i, v, m in zip(self.ids, self.vectors, self.metadata, strict=True)
            ]
            for start in range(0, N, 700):  # several adds, as ingest does
                index.add(items[start : start + 700])
            self._built[(kind, metric)] = index
        return self._built[(kind, metric)]

    def truth(self, query: np.ndarray, metric: str, k: int, where: Callable[[dict], bool] | None = None):
        keep = [i for i, m in enumerate(self.metadata) if where is None or where(m)]
        return brute_force([self.ids[i] for i in keep], self.vectors[keep], query, metric, k)

    def close(self) -> None:
        for index in self._built.values():
            index.close()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    built = Catalogue(tmp_path_factory.mktemp("catalogue"))
    yield built
    built.close()


# ----------------------------------------------------------------------------------------- exactness and recall


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("kind", "exact"), [("exact", False), ("exact", True), ("hnsw", True)])
def test_exact_search_equals_brute_force(catalogue: Catalogue, kind: str, exact: bool, metric: str) -> None:
    index = catalogue.index(kind, metric)
    for query in catalogue.queries[:25]:
        results = index.search(query, k=10, exact=exact)
        truth = catalogue.truth(query, metric, 10)
        assert ids_of(results) == [i for i, _ in truth]
        np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], rtol=1e-4, atol=1e-5)
        for result in results:
            assert result.score == pytest.approx(expected_score(result.distance, metric), abs=1e-9)
            assert result.location == f"s3://b/{result.id}.jpg"
            assert result.metadata == catalogue.metadata[int(result.id[1:])]


@pytest.mark.parametrize("metric", METRICS)
def test_scores_follow_the_metric(tmp_path: Path, metric: str) -> None:
    index = new_index(tmp_path / "i", metric, "exact", dim=2)
    index.add([Item("a", np.array([3.0, 4.0])), Item("b", np.array([0.0, -2.0]))])
    by_id = {r.id: r for r in index.search(np.array([0.0, 1.0]), k=2)}
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
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_recall_against_brute_force(catalogue: Catalogue, metric: str) -> None:
    index = catalogue.index("hnsw", metric)
    recalls = [
        recall(ids_of(index.search(q, k=10)), [i for i, _ in catalogue.truth(q, metric, 10)]) for q in catalogue.queries
    ]
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_results_sorted_best_first(catalogue: Catalogue, kind: str, metric: str) -> None:
    index = catalogue.index(kind, metric)
    for query in catalogue.queries[:10]:
        for filter in (None, {"colour": "red"}, {"label": "c1"}):
            results = index.search(query, k=50, filter=filter)
            assert len(results) > 1
            distances = [r.distance for r in results]
            scores = [r.score for r in results]
            assert distances == sorted(distances)
            assert scores == sorted(scores, reverse=True)
            assert len(set(ids_of(results))) == len(results)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_count_returns_everything(tmp_path: Path, kind: str, metric: str) -> None:
    index = new_index(tmp_path / "i", metric, kind)
    items = random_items(25)
    index.add(items)
    query = np.ones(16, dtype=np.float32)
    for exact in (False, True):
        results = index.search(query, k=1000, exact=exact)
        assert sorted(ids_of(results)) == sorted(item.id for item in items)
    assert len(index.search(query, k=1000, filter={"label": "l1"})) == 5
    index.close()


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
    with pytest.raises(FilterError):
        catalogue.index("exact", "l2").search(catalogue.queries[0], k=3, filter={"price": {"above": 3}})


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
    ("int-1-is-not-true", {"kids": 1}, lambda m: _is_int(m["kids"], 1)),
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
    ("single-item", {"sku": 1234}, lambda m: m["sku"] == 1234),
]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("name", "filter", "where"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filtered_exact_search_equals_brute_force_over_matches(
    catalogue: Catalogue, name: str, filter: dict[str, Any], where: Callable, metric: str
) -> None:
    index = catalogue.index("exact", metric)
    assert sum(map(where, catalogue.metadata)) > 0
    for query in catalogue.queries[:8]:
        results = index.search(query, k=10, filter=filter)
        truth = catalogue.truth(query, metric, 10, where)
        assert ids_of(results) == [i for i, _ in truth]
        np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], rtol=1e-4, atol=1e-5)
        assert all(where(r.metadata) for r in results)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("name", "filter", "where"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filtered_hnsw_search_only_returns_matches(
    catalogue: Catalogue, name: str, filter: dict[str, Any], where: Callable, metric: str
) -> None:
    index = catalogue.index("hnsw", metric)
    matching = sum(map(where, catalogue.metadata))
    recalls = []
    for query in catalogue.queries[:8]:
        results = index.search(query, k=10, filter=filter)
        assert len(results) == min(10, matching)
        assert all(where(r.metadata) for r in results)
        assert all(where(catalogue.metadata[int(r.id[1:])]) for r in results)
        recalls.append(recall(ids_of(results), [i for i, _ in catalogue.truth(query, metric, 10, where)]))
        exact = index.search(query, k=10, filter=filter, exact=True)
        assert ids_of(exact) == [i for i, _ in catalogue.truth(query, metric, 10, where)]
    assert np.mean(recalls) >= 0.9


def test_filter_on_absent_field_or_value_finds_nothing(catalogue: Catalogue) -> None:
    for kind in KINDS:
        index = catalogue.index(kind, "l2")
        assert index.search(catalogue.queries[0], k=5, filter={"nope": 1}) == []
        assert index.search(catalogue.queries[0], k=5, filter={"label": "no-such-label"}) == []
        assert index.search(catalogue.queries[0], k=5, filter={"price": {"gt": 1e9}}) == []


@pytest.fixture(scope="module")
def big_hnsw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """5000 items with a rare flag on 7 and a 10% group: around the 5% brute-force threshold."""
    n, dim = 5000, 16
    vectors, _ = clustered(n, dim, clusters=30, seed=11, spread=0.5)
    rng = np.random.default_rng(12)
    rare = set(rng.choice(n, size=7, replace=False).tolist())
    group = set(rng.choice(n, size=n // 10, replace=False).tolist())
    few = set(rng.choice(n, size=150, replace=False).tolist())  # 3%: brute force over the matches
    metadata = [{"rare": i in rare, "group": "g" if i in group else "other", "few": i in few} for i in range(n)]
    ids = [f"b{i}" for i in range(n)]
    indexes = {}
    for metric in METRICS:
        index = new_index(tmp_path_factory.mktemp(f"big-{metric}"), metric, "hnsw", dim, hnsw_m=16, ef_construction=64)
        index.add([Item(ids[i], vectors[i], metadata[i]) for i in range(n)])
        indexes[metric] = index
    yield {"indexes": indexes, "vectors": vectors, "ids": ids, "rare": rare, "group": group, "few": few}
    for index in indexes.values():
        index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_very_selective_filter_on_hnsw_returns_every_match(big_hnsw: dict[str, Any], metric: str) -> None:
    index, vectors, ids = big_hnsw["indexes"][metric], big_hnsw["vectors"], big_hnsw["ids"]
    rare = sorted(big_hnsw["rare"])
    queries = np.random.default_rng(13).normal(size=(5, vectors.shape[1])).astype(np.float32)
    for query in queries:
        for k in (3, 7, 10, 100):
            results = index.search(query, k=k, filter={"rare": True})
            assert len(results) == min(k, 7)
            truth = brute_force([ids[i] for i in rare], vectors[rare], query, metric, k)
            assert ids_of(results) == [i for i, _ in truth]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("subset", ["group", "few"])
def test_medium_filter_on_hnsw_still_returns_k(big_hnsw: dict[str, Any], metric: str, subset: str) -> None:
    index, vectors, ids = big_hnsw["indexes"][metric], big_hnsw["vectors"], big_hnsw["ids"]
    members = sorted(big_hnsw[subset])
    filter = {"group": "g"} if subset == "group" else {"few": True}
    queries = np.random.default_rng(14).normal(size=(20, vectors.shape[1])).astype(np.float32)
    recalls = []
    for query in queries:
        results = index.search(query, k=10, filter=filter)
        assert len(results) == 10
        assert {r.id for r in results} <= {ids[i] for i in members}
        truth = brute_force([ids[i] for i in members], vectors[members], query, metric, 10)
        recalls.append(recall(ids_of(results), [i for i, _ in truth]))
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("metric", METRICS)
def test_filter_asking_for_all_its_matches_gets_all(big_hnsw: dict[str, Any], metric: str) -> None:
    """k equal to the number of matches: if the graph walk falls short, the exact fallback must fill in."""
    index, ids = big_hnsw["indexes"][metric], big_hnsw["ids"]
    group = {ids[i] for i in big_hnsw["group"]}
    query = np.random.default_rng(15).normal(size=16).astype(np.float32)
    results = index.search(query, k=len(group), filter={"group": "g"})
    assert {r.id for r in results} == group
    assert len(results) == len(group)


# ----------------------------------------------------------------------------------------- writes


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_upsert_replaces_vector_and_metadata(tmp_path: Path, kind: str, metric: str) -> None:
    index = new_index(tmp_path / "i", metric, kind)
    items = random_items(200)
    index.add(items)
    old = items[17]
    new_vector = np.random.default_rng(99).normal(size=16).astype(np.float32)
    index.add([Item(old.id, new_vector, {"label": "new"}, "/new.jpg", "hnew")])

    assert index.count() == 200
    assert index.stats() == {"items": 200, "vectors_in_graph": 201, "dead_vectors": 1}
    stored = index.get(old.id, with_vector=True)
    assert stored is not None
    np.testing.assert_array_equal(stored.vector, new_vector)
    assert (stored.metadata, stored.location, stored.content_hash) == ({"label": "new"}, "/new.jpg", "hnew")
    assert index.content_hashes()[old.id] == "hnew"

    for exact in (False, True):
        top = index.search(new_vector, k=1, exact=exact)[0]
        assert top.id == old.id
        assert top.distance == pytest.approx(0.0, abs=1e-5)
        assert top.metadata == {"label": "new"}
        # The old vector is gone: searching with it finds the item only at the new vector's distance.
        everything = all_results(index, old.vector, exact=exact)
        assert len(everything) == 200  # the replaced vector takes no result slot
        hits = [r for r in everything if r.id == old.id]
        assert len(hits) == 1
        nearest_old = index.search(old.vector, k=5, exact=exact)
        assert len(nearest_old) == 5
        assert nearest_old[0].distance > 1e-3  # nothing sits at the old vector any more
        assert hits[0].distance == pytest.approx(distances_to(new_vector[None], old.vector, metric)[0], abs=1e-4)
    assert index.search(old.vector, k=5, filter={"label": old.metadata["label"]}, exact=True)[0].id != old.id
    assert index.search(new_vector, k=5, filter={"label": "new"})[0].id == old.id
    index.close()

    reopened = EmbeddedIndex.open(tmp_path / "i")
    assert reopened.count() == 200
    assert reopened.search(new_vector, k=1)[0].id == old.id
    assert [r.id for r in all_results(reopened, old.vector)].count(old.id) == 1
    reopened.close()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_delete(tmp_path: Path, kind: str, metric: str) -> None:
    index = new_index(tmp_path / "i", metric, kind)
    items = random_items(200)
    index.add(items)
    doomed = {items[i].id for i in range(0, 200, 9)}
    assert index.delete(doomed) == len(doomed)
    assert index.count() == 200 - len(doomed)
    assert index.delete(doomed) == 0  # already gone
    assert index.delete(["never-was", "nor-this"]) == 0
    assert index.delete([]) == 0
    assert index.delete([items[1].id, items[1].id, "unknown"]) == 1  # duplicates count once
    doomed.add(items[1].id)
    for item in items[:40]:
        for exact in (False, True):
            found = {r.id for r in all_results(index, item.vector, exact=exact)}
            assert not found & doomed
            assert len(found) == 200 - len(doomed)
        assert not {r.id for r in index.search(item.vector, k=50, filter={"label": "l0"})} & doomed
    for id in doomed:
        assert index.get(id) is None
    assert not set(index.content_hashes()) & doomed
    index.close()
    reopened = EmbeddedIndex.open(tmp_path / "i")
    assert reopened.count() == 200 - len(doomed)
    assert not {r.id for r in all_results(reopened, items[0].vector)} & doomed
    reopened.close()


def test_delete_everything_then_search(tmp_path: Path) -> None:
    for kind in KINDS:
        index = new_index(tmp_path / kind, "cosine", kind)
        items = random_items(30)
        index.add(items)
        assert index.delete(item.id for item in items) == 30
        assert index.count() == 0
        assert index.search(items[0].vector, k=5) == []
        index.add(items[:3])
        assert sorted(ids_of(index.search(items[0].vector, k=5))) == sorted(i.id for i in items[:3])
        index.close()


def test_empty_index_search(tmp_path: Path) -> None:
    for kind in KINDS:
        index = new_index(tmp_path / kind, "l2", kind)
        assert index.search(np.zeros(16), k=5) == []
        assert index.search(np.zeros(16), k=5, filter={"label": "x"}) == []
        assert index.count() == 0
        assert list(index.iter_items()) == []
        assert index.facets() == {}
        index.close()


def test_get_round_trips_the_item(tmp_path: Path) -> None:
    index = new_index(tmp_path / "i", "cosine", "hnsw")
    vector = np.random.default_rng(3).normal(size=16).astype(np.float32) * 1e-3  # cosine must not normalise it
    metadata = {"label": "Dress", "price": 12.5, "kids": False, "tags": ["a", "b"], "note": 'ünï "q"', "n": None}
    index.add([Item("x", vector, metadata, "https://x/y.jpg", "abc123")])
    item = index.get("x", with_vector=True)
    assert item is not None
    assert item.vector.dtype == np.float32
    np.testing.assert_array_equal(item.vector, vector)
    assert (item.id, item.metadata, item.location, item.content_hash) == ("x", metadata, "https://x/y.jpg", "abc123")
    assert index.get("x").vector is None
    assert index.get("y") is None
    index.add([Item("z", np.arange(16, dtype=np.float64))])  # float64 and no metadata are fine
    stored = index.get("z", with_vector=True)
    assert stored.metadata == {} and stored.location is None and stored.content_hash is None
    np.testing.assert_array_equal(stored.vector, np.arange(16, dtype=np.float32))
    index.close()


def test_content_hashes(tmp_path: Path) -> None:
    index = new_index(tmp_path / "i")
    items = random_items(20)
    items[3].content_hash = None
    index.add(items)
    index.delete([items[5].id])
    expected = {item.id: item.content_hash for item in items if item.id != items[5].id}
    assert index.content_hashes() == expected
    index.close()


@pytest.mark.parametrize("with_vectors", [True, False])
def test_iter_items_yields_every_live_item_once(tmp_path: Path, with_vectors: bool) -> None:
    index = new_index(tmp_path / "i", kind="hnsw")
    items = random_items(103)
    index.add(items)
    index.delete([items[i].id for i in range(0, 103, 10)])
    replacement = Item(items[1].id, np.full(16, 2.0, dtype=np.float32), {"label": "again"})
    index.add([replacement])
    batches = list(index.iter_items(batch_size=7, with_vectors=with_vectors))
    assert all(0 < len(batch) <= 7 for batch in batches)
    seen = [item for batch in batches for item in batch]
    expected = {item.id: item for item in items if int(item.id.split("-")[1]) % 10}
    expected[replacement.id] = replacement
    assert len(seen) == len(expected) == index.count()
    assert {item.id for item in seen} == set(expected)
    for item in seen:
        assert item.metadata == expected[item.id].metadata
        if with_vectors:
            np.testing.assert_array_equal(item.vector, expected[item.id].vector)
        else:
            assert item.vector is None
    index.close()


def test_facets(tmp_path: Path) -> None:
    index = new_index(tmp_path / "i")
    rng = np.random.default_rng(0)
    rows = (
        [{"label": "Dress", "kids": True, "size": 38, "price": 9.5}] * 5
        + [{"label": "Skirt", "kids": False, "size": 40}] * 3
        + [{"label": "Shoe", "kids": 1, "tags": ["x"]}] * 2
        + [{"sku": f"s{i}"} for i in range(60)]
    )
    index.add([Item(f"i{n}", rng.normal(size=16), row) for n, row in enumerate(rows)])
    facets = index.facets()
    assert facets["label"] == {"Dress": 5, "Skirt": 3, "Shoe": 2}
    assert list(facets["label"]) == ["Dress", "Skirt", "Shoe"]  # most common first
    assert facets["size"] == {"38": 5, "40": 3}
    # Booleans are named as the filter syntax writes them (kids=true), and true is not mixed up with 1.
    assert facets["kids"] == {"true": 5, "false": 3, "1": 2}
    assert "price" not in facets  # real numbers are ranges, not choices
    assert "tags" not in facets
    assert "sku" not in facets  # more distinct values than max_values
    assert len(index.facets(max_values=100)["sku"]) == 60
    assert "label" not in index.facets(max_values=2)
    index.delete(["i0", "i1"])
    assert index.facets()["label"]["Dress"] == 3
    index.close()


@pytest.mark.parametrize(
    "item_id",
    ["a/b", "../x", "/abs/path.jpg", "ünïcødé 商品", 'quo"te', "it's", "back\\slash", "new\nline", "%2F", " "],
)
def test_odd_ids_round_trip(tmp_path: Path, item_id: str) -> None:
    index = new_index(tmp_path / "i", kind="hnsw")
    items = random_items(10)
    odd = Item(item_id, np.full(16, 5.0, dtype=np.float32), {"label": "odd"}, f"/img/{item_id}", "h")
    index.add([*items, odd])
    assert index.search(odd.vector, k=1)[0].id == item_id
    assert index.search(odd.vector, k=1, filter={"label": "odd"})[0].id == item_id
    assert index.get(item_id).location == f"/img/{item_id}"
    assert item_id in index.content_hashes()
    index.close()
    reopened = EmbeddedIndex.open(tmp_path / "i")
    assert reopened.search(odd.vector, k=1)[0].id == item_id
    assert reopened.delete([item_id]) == 1
    assert reopened.get(item_id) is None
    reopened.close()


# ----------------------------------------------------------------------------------------- bad input changes nothing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("defect", ["short", "long", "nan", "inf", "missing", "matrix"])
def test_bad_vector_in_batch_writes_nothing(tmp_path: Path, kind: str, defect: str) -> None:
    index = new_index(tmp_path / "i", "l2", kind)
    items = random_items(50)
    index.add(items)
    query = items[0].vector
    before_stats = index.stats()  # (first: it moves pending vectors into the graph, which rounds differently)
    before = [(r.id, r.distance) for r in all_results(index, query)]

    batch = random_items(5, seed=1, prefix="new")
    batch.append(Item(items[2].id, np.zeros(16), {"label": "overwritten?"}))  # an upsert in the same batch
    bad = {
        "short": np.zeros(15),
        "long": np.zeros(17),
        "nan": np.where(np.arange(16) == 4, np.nan, 1.0),
        "inf": np.where(np.arange(16) == 4, np.inf, 1.0),
        "missing": None,
        "matrix": np.zeros((2, 16)),
    }[defect]
    batch.insert(3, Item("bad", bad))
    with pytest.raises(VectorSizeError):
        index.add(batch)

    assert index.count() == 50
    assert index.stats() == before_stats
    assert [(r.id, r.distance) for r in all_results(index, query)] == before
    assert all(index.get(item.id) is None for item in batch[:3])
    assert index.get("bad") is None
    assert index.get(items[2].id).metadata == items[2].metadata
    # The index is still usable and consistent afterwards.
    index.add(batch[:3])
    assert index.count() == 53
    assert index.search(batch[0].vector, k=1)[0].id == batch[0].id
    index.close()
    reopened = EmbeddedIndex.open(tmp_path / "i")
    assert reopened.count() == 53
    assert reopened.search(batch[1].vector, k=1)[0].id == batch[1].id
    reopened.close()


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_ids_in_one_add_write_nothing(tmp_path: Path, kind: str) -> None:
    index = new_index(tmp_path / "i", kind=kind)
    index.add(random_items(10))
    batch = random_items(4, seed=5, prefix="dup")
    batch.append(Item(batch[1].id, np.ones(16)))
    with pytest.raises(IndexError_):
        index.add(batch)
    assert index.count() == 10
    assert all(index.get(item.id) is None for item in batch)
    assert index.stats()["vectors_in_graph"] == 10
    index.close()


@pytest.mark.parametrize("bad_id", ["", None, 3])
def test_bad_ids_are_refused(tmp_path: Path, bad_id: Any) -> None:
    index = new_index(tmp_path / "i")
    with pytest.raises(IndexError_):
        index.add([*random_items(3), Item(bad_id, np.ones(16))])
    assert index.count() == 0
    index.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metadata", [{"price": float("nan")}, {"price": float("inf")}, {"when": object()}])
def test_metadata_that_is_not_json_writes_nothing(tmp_path: Path, kind: str, metadata: dict[str, Any]) -> None:
    """NaN metadata stored as JSON text would make every later filtered search fail (SQLite rejects NaN)."""
    index = new_index(tmp_path / "i", kind=kind)
    items = random_items(20)
    index.add(items)
    with pytest.raises(IndexError_):
        index.add([*random_items(2, seed=3, prefix="ok"), Item("bad", np.ones(16), metadata)])
    assert index.count() == 20
    assert index.get("bad") is None and index.get("ok-0") is None
    assert {r.id for r in index.search(items[0].vector, k=100, filter={"label": "l1"})} == {
        item.id for item in items if item.metadata["label"] == "l1"
    }
    assert index.facets()["label"]["l1"] == 4
    index.close()


def test_add_nothing_is_a_no_op(tmp_path: Path) -> None:
    index = new_index(tmp_path / "i")
    index.add([])
    assert index.count() == 0
    index.close()


# ----------------------------------------------------------------------------------------- create and open


def test_create_where_an_index_exists_is_refused(tmp_path: Path) -> None:
    new_index(tmp_path / "i").close()
    with pytest.raises(IndexError_):
        new_index(tmp_path / "i")
    assert EmbeddedIndex.exists(tmp_path / "i")
    assert not EmbeddedIndex.exists(tmp_path / "other")


def test_create_with_a_bad_dimension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VectorSizeError):
        new_index(tmp_path / "i", dim=0)


def test_open_a_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="lookalike index"):
        EmbeddedIndex.open(tmp_path / "nothing-here")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(IndexError_, match="lookalike index"):
        EmbeddedIndex.open(tmp_path / "empty-dir")


def test_settings_survive_reopening(tmp_path: Path) -> None:
    settings = IndexSettings(dim=16, metric="l2", kind="hnsw", hnsw_m=8, ef_search=40, embedding={"model": "m"})
    EmbeddedIndex.create(tmp_path / "i", settings).close()
    reopened = EmbeddedIndex.open(tmp_path / "i")
    assert reopened.settings == settings
    reopened.close()


# ----------------------------------------------------------------------------------------- persistence and durability


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_close_and_reopen_gives_identical_results(tmp_path: Path, kind: str, metric: str) -> None:
    vectors, _ = clustered(600, 16, clusters=8, seed=2)
    index = new_index(tmp_path / "i", metric, kind)
    index.add([Item(f"v{i}", v, {"label": f"c{i % 3}"}) for i, v in enumerate(vectors)])
    index.delete([f"v{i}" for i in range(0, 600, 20)])  # some dead vectors in the checkpoint too
    queries = clustered(20, 16, clusters=8, seed=2, spread=0.8)[0]
    calls = [dict(k=10), dict(k=10, filter={"label": "c1"}), dict(k=10, exact=True)]
    before = [[r.to_dict() for r in index.search(q, **c)] for q in queries for c in calls]
    index.close()
    reopened = EmbeddedIndex.open(tmp_path / "i")
    after = [[r.to_dict() for r in reopened.search(q, **c)] for q in queries for c in calls]
    assert after == before
    assert reopened.count() == 570
    reopened.close()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_writes_after_the_checkpoint_survive_a_crash(tmp_path: Path, kind: str, metric: str) -> None:
    """A second index opened on the same path, without the first saving, sees what SQLite committed."""
    path = tmp_path / "i"
    first = new_index(path, metric, kind)
    saved = random_items(120, seed=1, prefix="saved")
    first.add(saved)
    first.save()
    unsaved = random_items(30, seed=2, prefix="unsaved")
    first.add(unsaved)
    doomed = [saved[i].id for i in range(0, 120, 7)]
    first.delete(doomed)
    changed = Item(saved[1].id, np.full(16, 3.0, dtype=np.float32), {"label": "changed"})
    first.add([changed])  # an upsert after the checkpoint
    checkpoint = (path / "vectors.faiss").read_bytes()

    second = EmbeddedIndex.open(path)  # the first never saved: as if it had crashed
    assert second.count() == first.count() == 150 - len(doomed)
    for item in unsaved:
        top = second.search(item.vector, k=1)[0]
        assert (top.id, top.metadata) == (item.id, item.metadata)
        assert top.distance == pytest.approx(0.0, abs=1e-5)
    found = {r.id for r in all_results(second, saved[0].vector)}
    assert not found & set(doomed)
    assert len(found) == second.count()
    assert {r.id for r in all_results(second, saved[0].vector, exact=True)} == found
    top = second.search(changed.vector, k=1)[0]
    assert (top.id, top.metadata, top.distance) == (changed.id, changed.metadata, pytest.approx(0.0, abs=1e-5))
    assert [r.id for r in all_results(second, saved[1].vector)].count(changed.id) == 1
    assert second.search(np.ones(16), k=100, filter={"label": "changed"})[0].id == changed.id
    assert (path / "vectors.faiss").read_bytes() == checkpoint  # opening alone did not write

    second.close()
    first._db.close()  # the "crashed" process goes away without saving
    third = EmbeddedIndex.open(path)
    assert third.count() == 150 - len(doomed)
    assert third.stats()["vectors_in_graph"] - third.stats()["dead_vectors"] == third.count()
    assert third.search(unsaved[5].vector, k=1)[0].id == unsaved[5].id
    third.close()


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_saved_after_create(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "i"
    first = new_index(path, "cosine", kind)
    items = random_items(80)
    first.add(items)
    second = EmbeddedIndex.open(path)
    assert second.count() == 80
    assert [second.search(item.vector, k=1)[0].id for item in items] == [item.id for item in items]
    second.close()
    first._db.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_checkpoint_is_rebuilt_from_sqlite(tmp_path: Path, kind: str, damage: str) -> None:
    path = tmp_path / "i"
    index = new_index(path, "l2", kind)
    items = random_items(300)
    index.add(items)
    index.delete([items[0].id])
    queries = [item.vector for item in items[1:30]]
    before = [ids_of(index.search(q, k=5, exact=True)) for q in queries]
    index.close()
    checkpoint = path / "vectors.faiss"
    raw = checkpoint.read_bytes()
    damaged = {"garbage": np.random.default_rng(0).bytes(len(raw)), "empty": b"", "truncated": raw[: len(raw) // 2]}
    checkpoint.write_bytes(damaged[damage])

    reopened = EmbeddedIndex.open(path)
    assert reopened.count() == 299
    assert [ids_of(reopened.search(q, k=5, exact=True)) for q in queries] == before
    assert [reopened.search(q, k=1)[0].id for q in queries] == [item.id for item in items[1:30]]
    assert items[0].id not in {r.id for r in all_results(reopened, items[0].vector)}
    reopened.close()
    again = EmbeddedIndex.open(path)  # the rebuilt checkpoint was written on close
    assert again.stats() == {"items": 299, "vectors_in_graph": 299, "dead_vectors": 0}
    again.close()


@pytest.mark.parametrize("foreign", ["plain-flat", "other-dimension"])
def test_foreign_checkpoint_is_rebuilt_from_sqlite(tmp_path: Path, foreign: str) -> None:
    import faiss

    path = tmp_path / "i"
    index = new_index(path, "l2", "exact")
    items = random_items(20)
    index.add(items)
    index.close()
    other = faiss.IndexFlatL2(16) if foreign == "plain-flat" else faiss.IndexIDMap2(faiss.IndexFlatL2(8))
    faiss.write_index(other, str(path / "vectors.faiss"))
    reopened = EmbeddedIndex.open(path)
    assert reopened.search(items[3].vector, k=1)[0].id == items[3].id
    reopened.close()


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_hnsw_finds_every_item_under_upsert_churn(tmp_path: Path) -> None:
    """A server re-adding the same photos over and over, never saving: the graph fills with dead exact
    copies (15 for every live vector here), and every item must still come first for its own vector."""
    dim, n = 64, 400
    vectors, _ = clustered(n, dim, clusters=8, seed=3, spread=0.2)
    ids = [f"item-{i}" for i in range(n)]
    index = new_index(tmp_path / "i", "cosine", "hnsw", dim=dim)
    index.add([Item(i, v) for i, v in zip(ids, vectors, strict=True)])
    rng = np.random.default_rng(4)
    for _ in range(150):
        chosen = rng.choice(n, 40, replace=False)
        index.add([Item(ids[i], vectors[i]) for i in chosen])
    assert index.stats()["dead_vectors"] >= 10 * n
    missed = [ids[i] for i in range(n) if index.search(vectors[i], k=1)[0].id != ids[i]]
    assert missed == []
    index.close()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
@pytest.mark.parametrize("kind", KINDS)
def test_compacting_saves_free_the_previous_structure(tmp_path: Path, kind: str) -> None:
    """A server that takes upserts compacts on save; each compaction must free the structure it replaces.

    Each round leaves ~2,400 dead 512-d vectors (5 MB with the graph) behind: leaked, 8 rounds grow by 40 MB.
    """
    dim, ids = 512, [f"item-{i}" for i in range(400)]
    rng = np.random.default_rng(5)
    index = new_index(tmp_path / "i", "l2", kind, dim=dim)
    index.add([Item(i, v) for i, v in zip(ids, rng.normal(size=(400, dim)).astype(np.float32), strict=True)])
    sizes = []
    for _ in range(9):
        for _ in range(60):
            chosen = rng.choice(400, 40, replace=False)
            index.add(
                [Item(ids[i], v) for i, v in zip(chosen, rng.normal(size=(40, dim)).astype(np.float32), strict=True)]
            )
        index.save()
        assert index.stats() == {"items": 400, "vectors_in_graph": 400, "dead_vectors": 0}
        sizes.append(resident_mb())
    index.close()
    assert sizes[-1] - sizes[0] < 12, f"resident memory grew with every compaction: {sizes}"


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_compaction_on_save(tmp_path: Path, kind: str, metric: str) -> None:
    path = tmp_path / "i"
    index = new_index(path, metric, kind)
    items = random_items(400)
    index.add(items)
    index.delete([item.id for item in items[:60]])  # 15%: kept, masked
    index.save()
    assert index.stats() == {"items": 340, "vectors_in_graph": 400, "dead_vectors": 60}
    index.delete([item.id for item in items[60:130]])  # 32.5% dead now
    queries = [item.vector for item in items[100:160]]
    before = [[(r.id, r.distance) for r in index.search(q, k=10, exact=True)] for q in queries]
    before_approx = [ids_of(index.search(q, k=10)) for q in queries]
    index.save()
    assert index.stats() == {"items": 270, "vectors_in_graph": 270, "dead_vectors": 0}
    assert index.stats()["vectors_in_graph"] == index.count()
    after = [[(r.id, r.distance) for r in index.search(q, k=10, exact=True)] for q in queries]
    assert [[i for i, _ in row] for row in after] == [[i for i, _ in row] for row in before]
    for row_after, row_before in zip(after, before, strict=True):
        np.testing.assert_allclose([d for _, d in row_after], [d for _, d in row_before], rtol=1e-5, atol=1e-6)
    after_approx = [ids_of(index.search(q, k=10)) for q in queries]
    if kind == "exact":
        assert after_approx == before_approx
    else:
        assert np.mean([recall(a, [i for i, _ in b]) for a, b in zip(after_approx, before, strict=True)]) >= 0.95
    index.add(random_items(5, seed=9, prefix="later"))  # still writable after the rebuild
    final = [[r.to_dict() for r in index.search(q, k=10, exact=True)] for q in queries]
    index.close()
    reopened = EmbeddedIndex.open(path)
    assert reopened.stats() == {"items": 275, "vectors_in_graph": 275, "dead_vectors": 0}
    assert [[r.to_dict() for r in reopened.search(q, k=10, exact=True)] for q in queries] == final
    reopened.close()


# ----------------------------------------------------------------------------------------- colours


def _index_without_colours(path: Path) -> list[Item]:
    """An index as the release before colour descriptors made it: no colour column in ``items``."""
    import contextlib
    import sqlite3

    vectors, _ = clustered(30, DIM, 3, seed=5)
    items = [Item(f"old-{i}", vectors[i], {"i": i}, f"/img/{i}.jpg", f"h{i}") for i in range(30)]
    with EmbeddedIndex.create(path, IndexSettings(dim=DIM, kind="hnsw")) as index:
        index.add(items)
    with contextlib.closing(sqlite3.connect(path / "index.sqlite")) as db:
        db.execute("ALTER TABLE items DROP COLUMN colour")
        db.commit()
    return items


def _columns(path: Path) -> list[str]:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(path / "index.sqlite")) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(items)")]


def test_an_index_made_before_colours_gets_the_column_when_opened(tmp_path: Path) -> None:
    items = _index_without_colours(tmp_path / "old")
    assert "colour" not in _columns(tmp_path / "old")
    with EmbeddedIndex.open(tmp_path / "old") as index:
        assert "colour" in _columns(tmp_path / "old")
        assert index.get("old-3").colour is None and index.colours(["old-3", "old-4"]) == {"old-3": None, "old-4": None}
        colour = np.full(12, 1 / 12, dtype=np.float32)
        index.add([Item("new", items[0].vector, {}, None, None, colour)])
        assert np.array_equal(index.colours(["new"])["new"], colour)
        assert index.search(items[7].vector, 1)[0].id == items[7].id
    with EmbeddedIndex.open(tmp_path / "old") as index:  # the second open finds the column there
        assert np.array_equal(index.get("new").colour, colour) and index.count() == 31


def test_an_index_made_before_colours_opens_read_only_without_the_column(tmp_path: Path, monkeypatch) -> None:
    """Read-only (a snapshot mounted read-only, a file the server may not write): left as it is, every colour
    None, searches as ever. Simulated with SQLite's query_only, which refuses writes as a read-only file does."""
    from lookalike.index import embedded

    items = _index_without_colours(tmp_path / "old")
    connect = embedded._connect

    def read_only(path: Path):
        connection = connect(path)
        connection.execute("PRAGMA query_only = ON")
        return connection

    monkeypatch.setattr(embedded, "_connect", read_only)
    with EmbeddedIndex.open(tmp_path / "old") as index:
        assert "colour" not in _columns(tmp_path / "old")
        assert index.get("old-3").colour is None and index.get("old-3").metadata == {"i": 3}
        assert index.colours(["old-3", "missing"]) == {"old-3": None, "missing": None}
        assert all(item.colour is None for batch in index.iter_items() for item in batch)
        assert index.search(items[7].vector, 1)[0].id == items[7].id
