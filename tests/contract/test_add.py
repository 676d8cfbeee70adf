"""Writes: upserts replace by id, a bad item refuses its whole batch, the largest id and metadata fit, odd ids
round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import IndexError_, VectorSizeError
from lookalike.index import Item

from .helpers import KINDS, METRICS, all_results, distances_to, random_items


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_upsert_replaces_vector_and_metadata(make_index, reopen, kind: str, metric: str) -> None:
    index = make_index(metric, kind)
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
    assert [r.id for r in index.search(new_vector, k=3, filter={"label": old.metadata["label"]})][:1] != [old.id]
    assert index.search(new_vector, k=5, filter={"label": "new"})[0].id == old.id

    reopened = reopen(index)
    assert reopened.count() == 200
    assert reopened.search(new_vector, k=1)[0].id == old.id
    assert [r.id for r in all_results(reopened, old.vector)].count(old.id) == 1


def test_upsert_many_times_keeps_one_row(make_index) -> None:
    index = make_index("l2", "hnsw")
    items = random_items(30)
    for round in range(4):
        index.add([Item(i.id, i.vector + round, {"round": round}, i.location, f"h{round}") for i in items])
    assert index.count() == 30
    assert set(index.content_hashes().values()) == {"h3"}
    assert index.facets()["round"] == {"3": 30}
    assert sum(len(batch) for batch in index.iter_items(batch_size=7)) == 30


def test_add_nothing_is_a_no_op(make_index) -> None:
    index = make_index()
    index.add([])
    assert index.count() == 0


def _bad_batches() -> list[tuple[str, list[Item], type[Exception]]]:
    vector = np.ones(16, dtype=np.float32)
    nan = vector.copy()
    nan[2] = np.nan
    inf = vector.copy()
    inf[0] = np.inf
    return [
        ("wrong-dim", [Item("x", np.ones(15))], VectorSizeError),
        ("too-long-vector", [Item("x", np.ones(17))], VectorSizeError),
        ("nan", [Item("x", nan)], VectorSizeError),
        ("inf", [Item("x", inf)], VectorSizeError),
        ("no-vector", [Item("x", None)], VectorSizeError),
        ("matrix", [Item("x", np.zeros((2, 16)))], VectorSizeError),
        ("duplicate-ids", [Item("x", vector), Item("x", vector)], IndexError_),
        ("empty-id", [Item("", vector)], IndexError_),
        ("none-id", [Item(None, vector)], IndexError_),  # type: ignore[arg-type]
        ("non-text-id", [Item(7, vector)], IndexError_),  # type: ignore[arg-type]
        ("id-too-long", [Item("x" * 513, vector)], IndexError_),
        ("id-too-long-in-bytes", [Item("👗" * 129, vector)], IndexError_),  # 516 bytes
        ("id-not-unicode", [Item("x\ud800", vector)], IndexError_),
        ("metadata-nan", [Item("x", vector, {"p": float("nan")})], IndexError_),
        ("metadata-inf", [Item("x", vector, {"p": float("inf")})], IndexError_),
        ("metadata-object", [Item("x", vector, {"when": object()})], IndexError_),
        ("metadata-not-json", [Item("x", vector, {"s": {1, 2}})], IndexError_),
        ("metadata-not-object", [Item("x", vector, ["a"])], IndexError_),  # type: ignore[arg-type]
        ("metadata-too-big", [Item("x", vector, {"t": "y" * 65_529})], IndexError_),  # 65537 bytes as JSON
        ("location-not-text", [Item("x", vector, {}, 5)], IndexError_),  # type: ignore[arg-type]
        ("hash-too-long", [Item("x", vector, {}, None, "h" * 70_000)], IndexError_),
        ("colour-wrong-length", [Item("x", vector, colour=np.full(13, 1 / 13))], IndexError_),
        ("colour-nan", [Item("x", vector, colour=np.array([np.nan] * 12))], IndexError_),
    ]


BAD_BATCHES = _bad_batches()


def test_a_bad_item_refuses_the_whole_batch(make_index, reopen) -> None:
    """Each of BAD_BATCHES beside good items and an upsert: nothing of the batch is written, every read answers as
    before (NaN metadata stored as JSON text would make every later filtered search fail: SQLite rejects NaN),
    and the index stays usable. One index for all the cases: a server pays seconds a collection."""
    index = make_index("l2", "hnsw")
    items = random_items(50)
    index.add(items)
    query = items[0].vector
    before_stats = index.stats()  # (first: it moves pending vectors into the graph, which rounds differently)
    before = [(r.id, r.distance) for r in all_results(index, query)]
    l1 = {item.id for item in items if item.metadata["label"] == "l1"}
    good = random_items(3, seed=1, prefix="new")
    upsert = Item(items[2].id, np.zeros(16), {"label": "overwritten?"})  # an upsert in the same batch
    for case, bad, error in BAD_BATCHES:
        with pytest.raises(error):
            index.add([*good[:2], *bad, good[2], upsert])
        assert index.count() == 50, case
        assert index.stats() == before_stats, case
        assert [(r.id, r.distance) for r in all_results(index, query)] == before, case
        assert all(index.get(item.id) is None for item in good), case
        assert index.get("x") is None, case
        assert index.get(items[2].id).metadata == items[2].metadata, case
        assert {r.id for r in index.search(query, k=100, filter={"label": "l1"})} == l1, case
        assert index.facets()["label"]["l1"] == len(l1), case
    stored = index.get(items[0].id, with_vector=True)
    np.testing.assert_array_equal(stored.vector, items[0].vector)
    index.add(good)  # still usable and consistent afterwards
    assert index.count() == 53
    assert index.search(good[0].vector, k=1)[0].id == good[0].id
    reopened = reopen(index)
    assert reopened.count() == 53
    assert reopened.search(good[1].vector, k=1)[0].id == good[1].id


def test_largest_id_and_metadata_are_accepted(make_index) -> None:
    index = make_index()
    long_id = "é" * 256  # 512 bytes
    index.add([Item(long_id, np.ones(16), {"t": "y" * 65_528})])  # 65536 bytes as JSON
    stored = index.get(long_id)
    assert stored is not None and len(stored.metadata["t"]) == 65_528
    assert index.delete([long_id]) == 1


ODD_IDS = [
    "a/b/c.jpg",
    "a/b",
    "../x",
    "/abs/path.jpg",
    "s3://bucket/key with spaces.png",
    'quote"inside',
    "single'quote",
    "back\\slash\\",
    "new\nline",
    "tab\there",
    "Ünïcødé-ñame",
    "ünïcødé 商品",
    "👗👠",
    "漢字",
    '" or item_id != "',
    "[brackets]",
    "percent%_under",
    "%2F",
    "~tilde",
    "nul\x00char",
    " ",
    "x",
]


def test_ids_with_odd_characters_round_trip(make_index, reopen) -> None:
    index = make_index("cosine", "hnsw")
    rng = np.random.default_rng(4)
    items = [Item(i, rng.normal(size=16), {"id": i}, f"/img/{i}", f"h{n}") for n, i in enumerate(ODD_IDS)]
    index.add(items)
    assert index.count() == len(ODD_IDS)
    assert index.content_hashes() == {item.id: item.content_hash for item in items}
    assert sorted(item.id for batch in index.iter_items(batch_size=4) for item in batch) == sorted(ODD_IDS)
    for item in items:
        got = index.get(item.id, with_vector=True)
        assert got is not None and got.id == item.id and got.metadata == {"id": item.id}
        assert got.location == f"/img/{item.id}"
        for exact in (False, True):
            assert index.search(item.vector, k=1, exact=exact)[0].id == item.id
        assert [r.id for r in index.search(item.vector, k=1, filter={"id": item.id})] == [item.id]
    reopened = reopen(index)
    for item in items:
        assert reopened.search(item.vector, k=1)[0].id == item.id
    assert reopened.delete(ODD_IDS[:7]) == 7
    assert all(reopened.get(i) is None for i in ODD_IDS[:7])
    assert sorted(reopened.content_hashes()) == sorted(ODD_IDS[7:])
