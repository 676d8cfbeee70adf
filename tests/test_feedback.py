"""More like these, less like that, and more results: steering and paging a search (any backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.catalog import Catalog
from lookalike.errors import LookalikeError, NotFoundError
from lookalike.evaluate.feedback import negative_feedback_effect
from lookalike.evaluate.neighbours import Snapshot
from lookalike.feedback import MAX_FEEDBACK, FeedbackError, steer
from lookalike.index import IndexSettings, Item
from lookalike.index.embedded import EmbeddedIndex
from lookalike.search import MAX_OFFSET, search_item, search_steered, search_vector

DIM = 16


def test_steer_moves_toward_positives_and_away_from_negatives() -> None:
    query = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    positive = np.array([0.0, 2.0, 0.0], dtype=np.float32)  # its length does not count under cosine
    negative = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    moved = steer(query, [positive], [negative])
    np.testing.assert_allclose(moved, [1.0, 0.75, -0.25], atol=1e-6)
    np.testing.assert_allclose(steer(None, [positive], []), [0.0, 0.75, 0.0], atol=1e-6)  # positives alone
    with pytest.raises(FeedbackError, match="negatives alone"):
        steer(None, [], [negative])
    with pytest.raises(FeedbackError, match="cancels"):
        steer(np.zeros(3, dtype=np.float32), [], [], "l2")


@pytest.fixture
def catalog(tmp_path: Path, lite0: Any) -> Catalog:
    """40 items on a line of angles: item i is at angle i degrees in the first two dimensions."""
    index = EmbeddedIndex.create(tmp_path / "index", IndexSettings(dim=DIM, kind="exact"))
    items = []
    for i in range(40):
        vector = np.zeros(DIM, dtype=np.float32)
        vector[0], vector[1] = np.cos(np.radians(i)), np.sin(np.radians(i))
        items.append(Item(f"item-{i:02d}", vector, {"label": "low" if i < 20 else "high"}, None))
    index.add(items)
    yield Catalog(index, lite0)
    index.close()


def angle(degrees: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[0], vector[1] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return vector


def ids(response: Any) -> list[str]:
    return [result.id for result in response.results]


def test_offset_pages_through_the_ranking(catalog: Catalog) -> None:
    whole = ids(search_vector(catalog, angle(0.2), 40))
    assert whole == [f"item-{i:02d}" for i in range(40)]
    pages = [ids(search_vector(catalog, angle(0.2), 10, offset=offset)) for offset in (0, 10, 20, 30)]
    assert [item for page in pages for item in page] == whole
    assert ids(search_vector(catalog, angle(0.2), 10, offset=35)) == whole[35:]  # the last, short page
    for bad in (-1, MAX_OFFSET + 1, 1.5, True):
        with pytest.raises(LookalikeError, match="offset"):
            search_vector(catalog, angle(0), 10, offset=bad)  # type: ignore[arg-type]


def test_excluded_ids_never_come_back_and_pages_stay_full(catalog: Catalog) -> None:
    found = ids(search_vector(catalog, angle(0), 10, exclude={"item-00", "item-01"}))
    assert found == [f"item-{i:02d}" for i in range(2, 12)]


def test_feedback_moves_the_results_and_leaves_the_named_items_out(catalog: Catalog) -> None:
    plain = ids(search_item(catalog, "item-10", 6))
    assert plain[:2] in (["item-09", "item-11"], ["item-11", "item-09"])
    toward = ids(search_item(catalog, "item-10", 6, positive=["item-30"]))
    assert "item-30" not in toward and "item-10" not in toward
    assert np.mean([int(i[-2:]) for i in toward]) > np.mean([int(i[-2:]) for i in plain])  # moved up the line
    away = ids(search_item(catalog, "item-10", 6, negative=["item-15"]))
    assert "item-15" not in away
    assert np.mean([int(i[-2:]) for i in away]) < np.mean([int(i[-2:]) for i in plain])  # moved down the line
    alone = ids(search_steered(catalog, None, 3, positive=["item-25"]))
    assert set(alone[:2]) == {"item-24", "item-26"} and alone[2] in ("item-23", "item-27")


def test_feedback_naming_unknown_or_too_many_items_is_refused(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="no-such-item"):
        search_item(catalog, "item-10", 5, negative=["no-such-item"])
    with pytest.raises(LookalikeError, match="at most"):
        search_item(catalog, "item-10", 5, positive=[f"item-{i:02d}" for i in range(MAX_FEEDBACK + 1)])
    with pytest.raises(FeedbackError):
        search_steered(catalog, None, 5, negative=["item-01"])


def test_eval_measures_that_a_rejected_label_falls(catalog: Catalog) -> None:
    snapshot = Snapshot.load(catalog.index)
    report = negative_feedback_effect(snapshot, "label", (), k=10, sample=40)
    assert report.queries > 0
    assert report.rejected_label_share_after < report.rejected_label_share_before
