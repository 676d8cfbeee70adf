"""Colour descriptors: written by add, read back by colours(), get() and iteration; a bad one is refused."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import IndexError_
from lookalike.index import Item


def test_colours_written_by_add_come_back_from_colours_get_and_iteration(filled, real_items) -> None:
    rng = np.random.default_rng(11)
    descriptors = rng.dirichlet(np.ones(12), size=20).astype(np.float32)
    items = [
        Item(item.id, item.vector, item.metadata, item.location, item.content_hash, descriptors[i] if i % 4 else None)
        for i, item in enumerate(real_items[:20])
    ]
    index = filled(items)
    wanted = [item.id for item in items] + ["no-such-id"]
    found = index.colours(wanted)
    assert list(found) == wanted and found["no-such-id"] is None
    for item in items:
        got = index.get(item.id)
        if item.colour is None:
            assert found[item.id] is None and got.colour is None
        else:
            assert found[item.id].dtype == np.float32 and np.array_equal(found[item.id], item.colour)
            assert np.array_equal(got.colour, item.colour)
    iterated = {item.id: item.colour for batch in index.iter_items(batch_size=7) for item in batch}
    assert all((iterated[item.id] is None) == (item.colour is None) for item in items)
    # an upsert without a colour drops the old one; a bad colour is refused and changes nothing
    index.add([Item(items[1].id, items[1].vector, items[1].metadata, items[1].location, "changed")])
    assert index.colours([items[1].id]) == {items[1].id: None}
    with pytest.raises(IndexError_, match="colour"):
        index.add([Item("bad", items[2].vector, colour=np.full(5, 0.2, dtype=np.float32))])
    with pytest.raises(IndexError_, match="colour"):
        index.add([Item("bad", items[2].vector, colour=np.full(12, np.inf, dtype=np.float32))])
    assert index.get("bad") is None and index.count() == 20
