"""Deletes: count what existed, remove the item from every read, and let it come back."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.index import Item

from .helpers import KINDS, METRICS, all_results, ids_of, random_items


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_delete(make_index, reopen, kind: str, metric: str) -> None:
    index = make_index(metric, kind)
    items = random_items(200)
    index.add(items)
    doomed = {items[i].id for i in range(0, 200, 9)}
    assert index.delete(doomed) == len(doomed)
    assert index.count() == 200 - len(doomed)
    assert index.delete(doomed) == 0  # already gone
    assert index.delete(["never-was", "nor-this", "", 42, "x" * 600]) == 0  # type: ignore[list-item]
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
    assert not doomed & {item.id for batch in index.iter_items(batch_size=9) for item in batch}
    reopened = reopen(index)
    assert reopened.count() == 200 - len(doomed)
    assert not {r.id for r in all_results(reopened, items[0].vector)} & doomed
    reopened.add([items[9]])  # and it can come back
    assert reopened.count() == 201 - len(doomed)
    assert reopened.search(items[9].vector, k=1)[0].id == items[9].id


@pytest.mark.parametrize("kind", KINDS)
def test_delete_everything_then_search(make_index, kind: str) -> None:
    index = make_index("cosine", kind)
    items = random_items(30)
    index.add(items)
    assert index.delete(item.id for item in items) == 30
    assert index.count() == 0
    assert index.search(items[0].vector, k=5) == []
    index.add(items[:3])
    assert sorted(ids_of(index.search(items[0].vector, k=5))) == sorted(i.id for i in items[:3])


def test_upsert_delete_get_count_and_facets_behave_alike(filled, real_items) -> None:
    items = real_items[:200]
    index = filled(items)
    assert index.count() == 200
    moved = Item(items[0].id, items[150].vector.copy(), {"label": "Moved"}, items[0].location, "changed")
    index.add([moved])
    assert index.count() == 200
    top = index.search(items[150].vector, 2, exact=True)
    assert {r.id for r in top} == {items[0].id, items[150].id}
    got = index.get(items[0].id, with_vector=True)
    assert got.metadata == {"label": "Moved"} and np.allclose(got.vector, items[150].vector, atol=1e-5)
    assert index.delete([items[0].id, items[1].id, "no-such-id"]) == 2
    assert index.count() == 198 and index.get(items[1].id) is None
    assert all(r.id not in (items[0].id, items[1].id) for r in index.search(items[1].vector, 20, exact=True))
    counts: dict[str, int] = {}
    for item in items[2:]:
        counts[str(item.metadata["label"])] = counts.get(str(item.metadata["label"]), 0) + 1
    assert index.facets()["label"] == counts
    hashes = index.content_hashes()
    assert len(hashes) == 198 and hashes[items[5].id] == items[5].content_hash
