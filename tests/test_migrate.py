"""Migration copies vectors and metadata between backends without re-embedding, and resumes."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import ModelMismatchError
from lookalike.index import EmbeddedIndex, IndexSettings, Item
from lookalike.index.backends import IndexTarget
from lookalike.migrate import migrate, open_target_like

SETTINGS = IndexSettings(dim=16, metric="cosine", kind="hnsw", embedding={"model": "m", "dim": 16})


def items(count: int, seed: int = 0) -> list[Item]:
    """Every other item has a colour descriptor (the rest were indexed before colours were)."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(count):
        vector = rng.standard_normal(16).astype(np.float32)
        colour = rng.dirichlet(np.ones(12)).astype(np.float32) if i % 2 else None
        made.append(Item(f"id/{i}", vector, {"n": i, "even": i % 2 == 0}, f"/p/{i}", f"h{i}", colour))
    return made


@pytest.fixture
def source(tmp_path):
    index = EmbeddedIndex.create(tmp_path / "source", SETTINGS)
    index.add(items(300))
    yield index
    index.close()


def test_migrate_copies_everything_exactly(source, tmp_path) -> None:
    source.write_note("calibration", {"same_item": 0.9, "none": 0.4})
    target = open_target_like(source, IndexTarget("embedded", tmp_path / "target"))
    report = migrate(source, target, batch_size=64, progress=False)
    assert (report.copied, report.unchanged) == (300, 0)
    assert target.settings == source.settings
    assert target.notes() == {"calibration": {"same_item": 0.9, "none": 0.4}}
    for original in items(300)[::37]:
        copied = target.get(original.id, with_vector=True)
        assert copied.metadata == original.metadata and copied.location == original.location
        assert np.array_equal(copied.vector, original.vector) and copied.content_hash == original.content_hash
        assert (copied.colour is None) == (original.colour is None)
        assert original.colour is None or np.array_equal(copied.colour, original.colour)
    query = items(300)[5].vector
    assert [r.id for r in target.search(query, 10, exact=True)] == [r.id for r in source.search(query, 10, exact=True)]
    target.close()


def test_an_interrupted_migration_resumes(source, tmp_path) -> None:
    destination = IndexTarget("embedded", tmp_path / "target")
    target = open_target_like(source, destination)
    target.add(items(300)[:120])  # what a first, interrupted run got done
    changed = items(300)[7]
    target.add([Item(changed.id, changed.vector, {"stale": True}, changed.location, "old-hash")])
    target.close()

    target = open_target_like(source, destination)
    report = migrate(source, target, progress=False)
    assert (report.copied, report.unchanged) == (181, 119)  # the stale item is copied again
    assert target.count() == 300 and target.get(changed.id).metadata == changed.metadata
    target.close()


def test_a_target_of_another_model_is_refused(source, tmp_path) -> None:
    other = EmbeddedIndex.create(tmp_path / "other", IndexSettings(dim=16, embedding={"model": "x", "dim": 16}))
    other.close()
    with pytest.raises(ModelMismatchError, match="another model"):
        open_target_like(source, IndexTarget("embedded", tmp_path / "other"))
