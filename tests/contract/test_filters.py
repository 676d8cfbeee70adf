"""Filtered search: the answer is brute force over the items ``filters.matches`` passes, on every path; a bad
filter is a FilterError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lookalike.errors import FilterError
from lookalike.index import Item
from lookalike.index.filters import matches, normalize

from .helpers import (
    KINDS,
    METRICS,
    Catalogue,
    assert_same,
    brute_force,
    brute_force_items,
    clustered,
    ids_of,
    queries_near,
    recall,
    xfail_on,
)


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
CASE_IDS = [case[0] for case in FILTER_CASES]
ONE_TYPE_PER_FIELD = (
    "OpenSearch maps each metadata field to one type (the first value's): a filter never finds values of "
    "another type (the fake client keeps them unindexed; a real cluster coerces or refuses them), and kids "
    "holds booleans, integers, a float and text"
)
MIXED_TYPE_CASES = {"int-1-is-not-true", "float-1-is-int-1", "text-1-is-not-1", "mixed-one-of"}


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("name", "filter", "where"), FILTER_CASES, ids=CASE_IDS)
def test_filtered_exact_search_equals_brute_force_over_matches(
    catalogue: Catalogue, name: str, filter: dict[str, Any], where: Callable, metric: str, request
) -> None:
    if name in MIXED_TYPE_CASES:
        xfail_on(request, {"opensearch": ONE_TYPE_PER_FIELD})
    index = catalogue.index("exact", metric)
    conditions = normalize(filter)
    assert [matches(m, conditions) for m in catalogue.metadata] == [bool(where(m)) for m in catalogue.metadata]
    assert sum(map(where, catalogue.metadata)) > 0
    for query in catalogue.queries[:8]:
        truth = catalogue.truth(query, metric, 10, where)
        for exact in (False, True):
            results = index.search(query, k=10, filter=filter, exact=exact)
            assert ids_of(results) == [i for i, _ in truth]
            np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], rtol=1e-4, atol=1e-5)
            assert all(where(r.metadata) for r in results)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("name", "filter", "where"), FILTER_CASES, ids=CASE_IDS)
def test_filtered_hnsw_search_only_returns_matches(
    catalogue: Catalogue, name: str, filter: dict[str, Any], where: Callable, metric: str, request
) -> None:
    if name in MIXED_TYPE_CASES:
        xfail_on(request, {"opensearch": ONE_TYPE_PER_FIELD})
    index = catalogue.index("hnsw", metric)
    matching = sum(map(where, catalogue.metadata))
    recalls = []
    for query in catalogue.queries[:8]:
        results = index.search(query, k=10, filter=filter)
        assert len(results) == min(10, matching)
        assert all(where(r.metadata) for r in results)
        assert all(where(catalogue.metadata[int(r.id[1:])]) for r in results)
        truth = [i for i, _ in catalogue.truth(query, metric, 10, where)]
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
            with pytest.raises(FilterError, match="finite"):  # no engine compares inf
                index.search(query, k=5, filter={"price": {"gt": float("inf")}}, exact=exact)


def test_bad_filter_is_a_filter_error(catalogue: Catalogue) -> None:
    index = catalogue.index("exact", "l2")
    for filter in ({"price": {"above": 3}}, {"bad'field": 1}, {"label": []}, {"label": {"gte": "a"}}):
        with pytest.raises(FilterError):
            index.search(catalogue.queries[0], k=3, filter=filter)


ODD_STRINGS = ['quo"te', "apo'strophe", "back\\slash", "new\nline", "tab\t", "Ünïcødé 👗", "", " ", 'a" or true']
TYPED_VALUES: list[Any] = [
    True, False, 1, 0, -3, 1.0, 1.5, 2**53 + 1, 2**63 - 1, "1", "true", "1.0", None, [1, 2], {"a": 1}, *ODD_STRINGS,
]  # fmt: skip


def test_filters_agree_with_matches_for_every_json_type(make_index, request) -> None:
    """Booleans, integers, floats, text, null, lists and objects: the index's answer is filters.matches's."""
    xfail_on(request, {"opensearch": ONE_TYPE_PER_FIELD + " (v holds every JSON type)"})
    index = make_index("l2", "hnsw", dim=4)
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
        expected = {item.id for item in items if matches(item.metadata, normalize(filter))}
        for exact in (False, True):
            found = {r.id for r in index.search(query, k=100, filter=filter, exact=exact)}
            assert found == expected, filter


@pytest.mark.parametrize("metric", METRICS)
def test_very_selective_filter_on_hnsw_returns_every_match(make_index, metric: str) -> None:
    """7 matches in 3000: a graph walk alone would miss most; every match comes back, in brute-force order."""
    n = 3000
    vectors, _ = clustered(n, 16, clusters=30, seed=11, spread=0.5)
    rng = np.random.default_rng(12)
    rare = sorted(set(rng.choice(n, size=7, replace=False).tolist()))
    index = make_index(metric, "hnsw", dim=16, hnsw_m=16, ef_construction=64)
    index.add([Item(f"b{i}", vectors[i], {"rare": i in rare}) for i in range(n)])
    index.save()
    for query in rng.normal(size=(5, 16)).astype(np.float32):
        for k in (3, 7, 10, 100):
            results = index.search(query, k=k, filter={"rare": True})
            assert len(results) == min(k, 7)
            truth = brute_force([f"b{i}" for i in rare], vectors[rare], query, metric, k)
            assert ids_of(results) == [i for i, _ in truth]


# ----------------------------------------------------------------------------------------- real embeddings


def test_filtered_exact_search_agrees(filled, real_items) -> None:
    index = filled(real_items)
    labels = sorted({item.metadata["label"] for item in real_items})
    for filter in (
        {"label": labels[0]},
        {"label": labels[1:3]},
        {"sender_id": {"gte": 100, "lt": 200}},
        {"kids": True, "label": labels[:4]},
    ):
        for query in queries_near(real_items, 5):
            expected = brute_force_items(real_items, query, 10, "cosine", filter)
            assert_same(index.search(query, 10, filter=filter, exact=True), expected)


def test_filtered_approximate_search_returns_k_when_k_match(filled, real_items) -> None:
    index = filled(real_items)
    rare = min(
        {item.metadata["label"] for item in real_items},
        key=lambda label: sum(item.metadata["label"] == label for item in real_items),
    )
    matching = sum(item.metadata["label"] == rare for item in real_items)
    results = index.search(real_items[0].vector, 10, filter={"label": rare})
    assert len(results) == min(10, matching)
    assert all(r.metadata["label"] == rare for r in results)
