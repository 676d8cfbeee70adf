"""Indexes made by earlier releases open and answer exactly as they did (tests/fixtures/indexes/<release>/,
made by scripts/make-fixture-indexes.py with that release and never rebuilt): whatever the index code
becomes, an index a shop built keeps working, without a rebuild. Opening may migrate the files; the answers
must not change, at the first open or after it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.index.backends import IndexTarget, open_index

FIXTURES = Path(__file__).parent / "fixtures" / "indexes"
CASES = sorted(path for path in FIXTURES.glob("*/*") if path.is_dir())


FILTERS = [None, {"label": "Dress"}, {"price": {"lt": 30}}, {"label": ["Skirt", "Shoes"], "kids": True}]
"""The filters the fixtures were asked with (scripts/make-fixture-indexes.py asked the same)."""


def answers(index, queries: np.ndarray) -> dict:
    """What the fixture script recorded, read through the public contract only (never the files)."""
    answer = {
        "count": index.count(),
        "searches": [
            [[hit.id, round(float(hit.score), 5)] for hit in index.search(query, 8, filter)]
            for query in queries
            for filter in FILTERS
        ],
        "facets": index.facets(),
        "get": {item_id: _item(index.get(item_id, with_vector=True)) for item_id in ("item-01", "folder/ünï 7.jpg")},
        "notes": index.notes(),
        "settings": {"dim": index.settings.dim, "metric": index.settings.metric, "kind": index.settings.kind},
    }
    return json.loads(json.dumps(answer, ensure_ascii=False))  # tuples and keys as JSON has them


def _item(item) -> dict | None:
    if item is None:
        return None
    return {
        "metadata": item.metadata,
        "location": item.location,
        "content_hash": item.content_hash,
        "vector": [round(float(v), 6) for v in item.vector],
        "colour": None if item.colour is None else [round(float(v), 6) for v in item.colour],
    }


@pytest.mark.parametrize("fixture", CASES, ids=[f"{path.parent.name}/{path.name}" for path in CASES])
def test_an_index_made_by_an_earlier_release_answers_as_it_did(fixture: Path, tmp_path: Path) -> None:
    expected = json.loads(fixture.with_suffix(".json").read_text())
    queries = np.asarray(json.loads((fixture.parent / "queries.json").read_text()), dtype=np.float32)
    copy = tmp_path / fixture.name
    shutil.copytree(fixture, copy)
    for _ in range(2):  # the first open may migrate; the second opens what it left
        index = open_index(IndexTarget("embedded", copy))
        try:
            assert answers(index, queries) == expected
        finally:
            index.close()


def test_there_is_a_fixture_for_each_kind_of_index() -> None:
    assert {path.name for path in CASES} >= {"hnsw-cosine", "exact-l2", "hnsw-sq8"}
