"""Creating and opening: settings are recorded and recovered, an existing index is not overwritten, a missing one
is named, a bad dimension is refused."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import IndexError_, VectorSizeError
from lookalike.index import IndexSettings

from .helpers import random_items, xfail_on


def test_settings_survive_reopening(made) -> None:
    embedding = {"name": "efficientnet_lite0", "dim": 24, "preprocessing": {"size": 224, "mean": [0.5, 0.5, 0.5]}}
    settings = IndexSettings(
        dim=24, metric="l2", kind="hnsw", hnsw_m=12, ef_construction=77, ef_search=33, embedding=embedding
    )
    name = made.backend.new_name()
    assert not made.backend.exists(name)
    index = made.create(settings, name)
    assert made.backend.exists(name)
    assert index.count() == 0
    index.add(random_items(5, dim=24))
    with pytest.raises(IndexError_, match="already exists"):
        made.backend.create(name, settings)
    assert index.count() == 5 and made.backend.exists(name)  # the refused create touched nothing
    reopened = made.reopen(index)
    assert reopened.settings == settings
    assert reopened.settings.embedding == embedding
    assert reopened.count() == 5  # another connection sees what the first wrote
    assert reopened.get("item-3") is not None
    assert reopened.search(np.ones(24), k=1)


def test_open_a_missing_index_says_there_is_none(made, request) -> None:
    xfail_on(
        request,
        {
            "opensearch": "OpenSearchIndex.open on a missing index says it 'was not made by lookalike' "
            "(backends.open_index checks first and says 'no index')"
        },
    )
    name = made.backend.new_name("missing")
    assert not made.backend.exists(name)
    with pytest.raises(IndexError_, match="no index"):
        made.backend.open(name)


@pytest.mark.parametrize("dim", [0, -3])
def test_create_with_a_bad_dimension_is_refused(made, dim: int) -> None:
    name = made.backend.new_name()
    with pytest.raises(VectorSizeError):
        made.create(IndexSettings(dim=dim), name)
    assert not made.backend.exists(name)
