"""Search: exact answers equal brute force, approximate ones find what it finds, scores follow the metric, k and
the query vector are checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lookalike.errors import IndexError_, VectorSizeError
from lookalike.index import Item

from .helpers import (
    DIM,
    KINDS,
    METRICS,
    Catalogue,
    assert_same,
    brute_force,
    brute_force_items,
    expected_score,
    ids_of,
    queries_near,
    random_items,
    recall,
)


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
def test_hnsw_recall_against_brute_force(catalogue: Catalogue, metric: str) -> None:
    index = catalogue.index("hnsw", metric)
    recalls = [
        recall(ids_of(index.search(q, k=10)), [i for i, _ in catalogue.truth(q, metric, 10)]) for q in catalogue.queries
    ]
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_scores_follow_the_metric(make_index, kind: str, metric: str) -> None:
    index = make_index(metric, kind, dim=2)
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
    for query in catalogue.queries[:10]:
        for filter in (None, {"colour": "red"}, {"label": "c1"}):
            for exact in (False, True):
                results = index.search(query, k=50, filter=filter, exact=exact)
                assert len(results) > 1
                distances = [r.distance for r in results]
                assert distances == sorted(distances)
                assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
                assert len(set(ids_of(results))) == len(results)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_count_returns_everything(make_index, kind: str, metric: str) -> None:
    index = make_index(metric, kind)
    items = random_items(25)
    index.add(items)
    query = np.ones(16, dtype=np.float32)
    truth = brute_force([i.id for i in items], np.stack([i.vector for i in items]), query, metric, 25)
    for exact in (False, True):
        results = index.search(query, k=1000, exact=exact)
        assert sorted(ids_of(results)) == sorted(item.id for item in items)
        np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], atol=1e-5)
    assert len(index.search(query, k=1000, filter={"label": "l1"})) == 5


BAD_K: list[Any] = [0, -1, True, False, 2.0, 2.5, "3", None]


def test_k_bounds(catalogue: Catalogue) -> None:
    """k is a positive integer: zero, negatives, booleans, floats, text and None are refused."""
    index = catalogue.index("exact", "l2")
    for k in BAD_K:
        with pytest.raises(IndexError_):
            index.search(catalogue.queries[0], k=k)
    assert len(index.search(catalogue.queries[0], k=1)) == 1


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


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_search(make_index, kind: str) -> None:
    index = make_index("l2", kind)
    for exact in (False, True):
        assert index.search(np.ones(16), k=5, exact=exact) == []
        assert index.search(np.ones(16), k=5, filter={"label": "x"}, exact=exact) == []
    assert index.count() == 0
    assert list(index.iter_items()) == []
    assert index.content_hashes() == {}
    assert index.facets() == {}


# ----------------------------------------------------------------------------------------- real embeddings


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_gives_the_same_ordered_top_k(filled, real_items, metric) -> None:
    index = filled(real_items, metric)
    for query in queries_near(real_items):
        expected = brute_force_items(real_items, query, 10, metric)
        assert_same(index.search(query, 10, exact=True), expected, tolerance=1e-4 if metric == "cosine" else 1e-3)


def test_approximate_search_recall_at_10(filled, real_items) -> None:
    index = filled(real_items)
    recalls = []
    for query in queries_near(real_items, 50):
        exact = {item_id for item_id, _ in brute_force_items(real_items, query, 10, "cosine")}
        recalls.append(len(exact & {r.id for r in index.search(query, 10)}) / 10)
    assert np.mean(recalls) >= 0.95
