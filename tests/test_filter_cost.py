"""What a filter costs the embedded index: compiled outside the index lock, to a statement whose size does not
grow with the number of values, and the largest filter allowed answers exactly like ``filters.matches``.

(Time is not asserted: the statement size and the query plan are. Before, 32 fields x 930 values held the
lock for minutes while SQLite prepared a statement of 2 MB, and 1,000 values in one list were a 500.)
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from lookalike.errors import FilterError
from lookalike.index import EmbeddedIndex, IndexSettings, Item, filters
from lookalike.index.filters import MAX_FIELDS, MAX_VALUES, matches, normalize

N = 3000
DIM = 8
LABELS = ["Dress", "Shirt", "Pants", "Shoes", "Skirt"]
# Values that look alike but are not the same JSON value (except 1 and 1.0, which are the same number).
LOOKALIKES: list[Any] = [True, False, 1, 0, 1.0, 0.0, 2.5, "1", "0", "true", "1.0", 2**53 + 1, 2**63 - 1, -(2**63) + 1]


def _metadata(i: int, rng: random.Random) -> dict[str, Any]:
    metadata: dict[str, Any] = {"label": LABELS[i % 5], "n": i % 1000, "kind": rng.choice(LOOKALIKES)}
    if rng.random() < 0.8:
        metadata["price"] = rng.randint(0, 400) / 4 if rng.random() < 0.5 else rng.randint(0, 100)
    if rng.random() < 0.5:
        metadata["tag"] = f"t{rng.randint(0, 1500)}"
    for j in range(rng.randint(0, 6)):
        metadata[f"f{j}"] = f"v{rng.randint(0, 1200)}"
    return metadata


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedIndex, list[Item]]]:
    rng = random.Random(11)
    vectors = np.random.default_rng(11).normal(size=(N, DIM)).astype(np.float32)
    items = [Item(f"i{i}", vectors[i], _metadata(i, rng)) for i in range(N)]
    index = EmbeddedIndex.create(
        tmp_path_factory.mktemp("cost") / "index", IndexSettings(dim=DIM, metric="l2", kind="exact")
    )
    index.add(items)
    yield index, items
    index.close()


def _found(index: EmbeddedIndex, filter: dict[str, Any]) -> set[str]:
    return {r.id for r in index.search(np.zeros(DIM, dtype=np.float32), k=N, filter=filter)}


def _expected(items: list[Item], filter: dict[str, Any]) -> set[str]:
    conditions = normalize(filter)
    return {item.id for item in items if matches(item.metadata, conditions)}


def _largest_filter() -> dict[str, Any]:
    """64 fields of 1,000 values each, the documented limits, mixing types; some items pass every field."""
    filter: dict[str, Any] = {"label": [*LABELS, *(f"x{v}" for v in range(MAX_VALUES - 5))]}
    filter["n"] = list(range(MAX_VALUES))
    filter["kind"] = [*LOOKALIKES[:4], *(f"k{v}" for v in range(MAX_VALUES - 4))]  # true, false, 1, 0
    for j in range(MAX_FIELDS - 3):
        filter[f"f{j}"] = [f"v{v}" for v in range(MAX_VALUES)]
    return filter


def test_the_largest_filter_allowed_answers_exactly(catalogue: tuple[EmbeddedIndex, list[Item]]) -> None:
    index, items = catalogue
    filter = _largest_filter()
    assert len(filter) == MAX_FIELDS and all(len(values) == MAX_VALUES for values in filter.values())
    expected = _expected(items, filter)
    assert _found(index, filter) == expected
    # The same fields without the absent ones still answers exactly, and does match something.
    present = {field: filter[field] for field in ("label", "n", "kind", "f0")}
    expected = _expected(items, present)
    assert 0 < len(expected) < N
    assert _found(index, present) == expected


def test_the_largest_filter_compiles_to_a_small_statement() -> None:
    where, params = filters.to_sql(normalize(_largest_filter()))
    few, _ = filters.to_sql(normalize({f: v[:4] + v[-1:] for f, v in _largest_filter().items()}))
    assert where == few  # 64,000 values or 320 of the same types: the same statement
    assert len(where) < 20_000 and len(params) < 10 * MAX_FIELDS


def test_a_one_of_list_of_a_thousand_values_answers(catalogue: tuple[EmbeddedIndex, list[Item]]) -> None:
    index, items = catalogue
    filter = {"n": list(range(0, 2000, 2))}  # was a 500: "Expression tree is too large (maximum depth 1000)"
    assert len(filter["n"]) == MAX_VALUES
    expected = _expected(items, filter)
    assert len(expected) == N // 2
    assert _found(index, filter) == expected


def _random_condition(rng: random.Random, field: str) -> Any:
    pools: dict[str, list[Any]] = {
        "label": [*LABELS, "dress", "x"],
        "n": [*range(0, 1200, 7), 1.0, 2.5, "1", True],
        "kind": LOOKALIKES,
        "price": [0, 0.25, 1, 1.0, 10, 99.75, "10", False],
        "tag": [f"t{v}" for v in range(0, 1600, 3)],
        "f0": [f"v{v}" for v in range(1300)],
        "missing": [1, "a"],
    }
    pool = pools[field]
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(pool)
    if roll < 0.8:
        return rng.sample(pool, min(len(pool), rng.choice([1, 2, 3, 10, 100, 1000])))
    operators = rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 4))
    return {op: rng.choice([0, 0.5, 1, 10, 50.25, 99.75, 500, -1]) for op in operators}


def test_random_filters_agree_with_matches(catalogue: tuple[EmbeddedIndex, list[Item]]) -> None:
    """Booleans, 1 vs 1.0 vs "1", int64 edges, lists of up to 1,000 mixed values, ranges with several bounds."""
    index, items = catalogue
    rng = random.Random(2024)
    fields = ["label", "n", "kind", "price", "tag", "f0", "missing"]
    non_trivial = 0
    for _ in range(120):
        filter = {field: _random_condition(rng, field) for field in rng.sample(fields, rng.randint(1, 3))}
        expected = _expected(items, filter)
        assert _found(index, filter) == expected, filter
        non_trivial += 0 < len(expected) < N
    assert non_trivial > 30


@pytest.mark.parametrize("value", LOOKALIKES)
def test_lookalike_values_are_told_apart(catalogue: tuple[EmbeddedIndex, list[Item]], value: Any) -> None:
    index, items = catalogue
    for filter in ({"kind": value}, {"kind": [value, "zz", 12345]}):
        expected = _expected(items, filter)
        assert expected
        assert _found(index, filter) == expected


@pytest.mark.parametrize(
    ("filter", "field"),
    [
        ({"n": 2**63}, "n"),
        ({"label": "Dress", "n": [1, -(2**63)]}, "n"),
        ({"price": {"gte": 10**400}}, "price"),
        ({"price": {"gte": 0, "lt": float("inf")}}, "price"),
        ({"price": {"lt": float("nan")}}, "price"),
        ({"label": "\ud800"}, "label"),
        ({"label": ["Dress", "a\udc00"]}, "label"),
    ],
)
def test_values_no_engine_can_compare_are_filter_errors(
    catalogue: tuple[EmbeddedIndex, list[Item]], filter: dict[str, Any], field: str
) -> None:
    index, items = catalogue
    with pytest.raises(FilterError, match=repr(field)):
        index.search(np.zeros(DIM, dtype=np.float32), k=5, filter=filter)
    assert _found(index, {"label": "Dress"}) == _expected(items, {"label": "Dress"})  # nothing broke


def test_the_filter_is_compiled_before_the_lock_is_taken(
    catalogue: tuple[EmbeddedIndex, list[Item]], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, _ = catalogue
    held: list[bool] = []
    compile_sql = filters.to_sql

    def watched(conditions: Any, *args: Any, **kwargs: Any) -> tuple[str, list[Any]]:
        held.append(index._lock._is_owned())  # type: ignore[attr-defined]
        return compile_sql(conditions, *args, **kwargs)

    monkeypatch.setattr(filters, "to_sql", watched)
    index.search(np.zeros(DIM, dtype=np.float32), k=5, filter={"label": LABELS})
    assert held and held[0] is False


def test_no_filter_and_a_filter_matching_all_agree(catalogue: tuple[EmbeddedIndex, list[Item]]) -> None:
    index, _ = catalogue
    everything = {r.id for r in index.search(np.zeros(DIM, dtype=np.float32), k=N)}
    assert _found(index, {"label": LABELS}) == everything


def test_a_filter_on_a_reopened_index_uses_the_same_statement(
    tmp_path: Path, catalogue: tuple[EmbeddedIndex, list[Item]]
) -> None:
    """Items committed by another process but not yet in the graph are filtered by the same SQL."""
    _, items = catalogue
    path = tmp_path / "graph"
    writer = EmbeddedIndex.create(path, IndexSettings(dim=DIM, metric="l2", kind="hnsw"))
    writer.add(items[:500])
    writer.save()
    reader = EmbeddedIndex.open(path)
    writer.add(items[500:600])  # pending for the reader
    filter = {"n": list(range(MAX_VALUES)), "label": ["Dress", "Shoes"]}
    conditions = normalize(filter)
    expected = {item.id for item in items[:600] if matches(item.metadata, conditions)}
    found = {r.id for r in reader.search(np.zeros(DIM, dtype=np.float32), k=600, filter=filter, exact=True)}
    assert found == expected and any(int(i[1:]) >= 500 for i in found)
    reader.close()
    writer.close()


# ----------------------------------------------------------------------------------------- Milvus


def _depth(expression: str) -> int:
    """How deep the parentheses nest (the test values hold none)."""
    deepest = level = 0
    for char in expression:
        level += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, level)
    return deepest


def test_the_milvus_expression_for_the_largest_filter_nests_shallowly() -> None:
    """Milvus 2.3 fails on more than 49 conditions chained one after another; paired, 64 nest 7 deep."""
    from lookalike.index.milvus import to_expression

    def fields(n: int) -> dict[str, Any]:
        return {f"f{j}": j for j in range(n)}

    expression = to_expression(normalize(fields(MAX_FIELDS)))
    assert expression is not None and expression.count(" and ") == MAX_FIELDS - 1
    assert _depth(expression) <= 8
    largest = to_expression(normalize(_largest_filter()))
    one_list = to_expression(normalize({"f0": _largest_filter()["f0"]}))
    assert largest is not None and one_list is not None
    assert len(largest) < 1.2 * MAX_FIELDS * len(one_list)  # linear in the filter


MILVUS_URI = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")


def _no_milvus() -> str | None:
    parts = urlsplit(MILVUS_URI)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 19530), timeout=1):
            return None
    except OSError:
        return f"no Milvus server at {MILVUS_URI} (scripts/milvus-server.sh)"


@pytest.mark.skipif(_no_milvus() is not None, reason=str(_no_milvus()))
def test_milvus_answers_the_largest_filter_like_matches(catalogue: tuple[EmbeddedIndex, list[Item]]) -> None:
    from lookalike.index.milvus import MilvusIndex

    _, items = catalogue
    index = MilvusIndex.create(
        MILVUS_URI, f"filter_cost_{uuid.uuid4().hex[:10]}", IndexSettings(dim=DIM, metric="l2", kind="exact")
    )
    try:
        index.add(items[:1000])
        wide = {f"f{j}": j for j in range(MAX_FIELDS)}  # 64 conditions: past Milvus's chain limit of 49
        for filter in (_largest_filter(), {**{f: v[:3] for f, v in _largest_filter().items()}, "f0": ["v1"]}, wide):
            conditions = normalize(filter)
            expected = {item.id for item in items[:1000] if matches(item.metadata, conditions)}
            found = {r.id for r in index.search(np.zeros(DIM, dtype=np.float32), k=1000, filter=filter)}
            assert found == expected
        present = {field: _largest_filter()[field] for field in ("label", "n", "kind", "f0")}
        expected = {item.id for item in items[:1000] if matches(item.metadata, normalize(present))}
        assert expected
        assert {r.id for r in index.search(np.zeros(DIM, dtype=np.float32), k=1000, filter=present)} == expected
    finally:
        index.drop()
