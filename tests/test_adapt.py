"""lookalike adapt: a projection learned from labelled items, re-projecting an index in place, and its undo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.adapt import AdaptError, Projection, class_directions, learn_projection
from lookalike.adapt.reproject import adapt_index, teaching_items
from lookalike.catalog import open_catalog
from lookalike.cli import app
from lookalike.errors import ModelError
from lookalike.evaluate import EvalOptions, evaluate_index
from lookalike.index import IndexSettings, Item
from lookalike.index.backends import IndexTarget
from lookalike.index.embedded import EmbeddedIndex

DIM = 1280
CLASSES = 4
SENDERS = 12
PER_SENDER = 10


def synthetic_catalogue(seed: int = 0) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Vectors where the photo session (sender) dominates the class: what adapting must undo.

    Each item is a weak class direction, a strong sender direction and noise; every sender photographs
    items of every class. The true class is in ``truth`` for every item, the ``label`` only on some.
    """
    rng = np.random.default_rng(seed)
    class_axes = rng.normal(size=(CLASSES, DIM))
    sender_axes = rng.normal(size=(SENDERS, DIM))
    rows, metadata = [], []
    for sender in range(SENDERS):
        for n in range(PER_SENDER):
            cls = n % CLASSES
            rows.append(0.6 * class_axes[cls] + 1.0 * sender_axes[sender] + 0.8 * rng.normal(size=DIM))
            entry: dict[str, Any] = {"truth": f"c{cls}", "sender": f"s{sender}"}
            if n < 6:  # 60 % labelled
                entry["label"] = f"c{cls}"
            metadata.append(entry)
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), metadata


def precision_at(vectors: np.ndarray, metadata: list[dict[str, Any]], queries: list[int], k: int = 5) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    hits = []
    for q in queries:
        top = np.argsort(-sims[q])[:k]
        hits.append(np.mean([metadata[t]["truth"] == metadata[q]["truth"] for t in top]))
    return float(np.mean(hits))


# The projection itself.


def test_projection_inverts_exactly_and_round_trips_its_record() -> None:
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.normal(size=(64, 5)))
    centre = 0.1 * rng.normal(size=64).astype(np.float32)
    projection = Projection(basis.astype(np.float32), 3.0, centre, {"field": "label"})
    x = rng.normal(size=(10, 64)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    projected = projection.apply(x)
    assert not np.allclose(projected, unit)
    np.testing.assert_allclose(projection.invert(projected), unit, atol=1e-5)  # the direction, exactly
    np.testing.assert_allclose(projection.apply(5.0 * x), projected, atol=1e-5)  # lengths do not matter
    # Directions outside the basis keep their length; inside they grow by 1 + gain.
    plain = Projection(basis.astype(np.float32), 3.0, np.zeros(64, dtype=np.float32))
    outside = unit - (unit @ basis) @ basis.T
    outside /= np.linalg.norm(outside, axis=1, keepdims=True)
    np.testing.assert_allclose(plain.apply(outside), outside, atol=1e-5)
    inside = (unit @ basis) @ basis.T
    inside /= np.linalg.norm(inside, axis=1, keepdims=True)
    np.testing.assert_allclose(plain.apply(inside), 4.0 * inside, atol=1e-4)
    record = json.loads(json.dumps(projection.record()))
    again = Projection.from_record(record)
    np.testing.assert_array_equal(again.basis, projection.basis)
    np.testing.assert_array_equal(again.centre, projection.centre)
    assert again.gain == 3.0 and again.learned == {"field": "label"}


def test_a_damaged_or_unknown_projection_record_is_refused_by_name() -> None:
    basis, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(16, 3)))
    zero = np.zeros(16, dtype=np.float32)
    record = Projection(basis.astype(np.float32), 1.0, zero).record()
    tampered = dict(record, basis=Projection(np.eye(16, 3, dtype=np.float32), 1.0, zero).record()["basis"])
    with pytest.raises(ModelError, match="digest"):
        Projection.from_record(tampered)
    with pytest.raises(ModelError, match="cannot read"):
        Projection.from_record(dict(record, version="99"))
    with pytest.raises(ModelError, match="damaged"):
        Projection.from_record(dict(record, basis="not base64!"))
    with pytest.raises(ModelError, match="invertible"):
        Projection(basis.astype(np.float32), -1.0, zero)
    with pytest.raises(ModelError, match="centre"):
        Projection(basis.astype(np.float32), 1.0, np.zeros(3, dtype=np.float32))


def test_class_directions_span_the_class_means_and_need_two_classes() -> None:
    vectors, metadata = synthetic_catalogue()
    labelled = [i for i, m in enumerate(metadata) if "label" in m]
    labels = [metadata[i]["label"] for i in labelled]
    basis = class_directions(vectors[labelled], labels)
    assert basis.shape == (DIM, CLASSES - 1)
    np.testing.assert_allclose(basis.T @ basis, np.eye(CLASSES - 1), atol=1e-4)
    with pytest.raises(AdaptError, match="at least 2 classes"):
        class_directions(vectors[:10], ["one"] * 10)
    with pytest.raises(AdaptError, match="labels"):
        learn_projection(vectors[:10], ["a", "b"])


def test_the_projection_helps_items_that_have_no_label() -> None:
    vectors, metadata = synthetic_catalogue()
    labelled = [i for i, m in enumerate(metadata) if "label" in m]
    unlabelled = [i for i, m in enumerate(metadata) if "label" not in m]
    projection = learn_projection(vectors[labelled], [metadata[i]["label"] for i in labelled])
    before = precision_at(vectors, metadata, unlabelled)
    after = precision_at(projection.apply(vectors), metadata, unlabelled)
    assert after > before + 0.2, (before, after)


def test_teaching_items_skip_non_classes_and_the_held_out_half() -> None:
    metadata = [
        {"label": "Dress", "sender": 1},
        {"label": "Not sure", "sender": 1},
        {"label": " ", "sender": 2},
        {"sender": 2},
        {"label": {"nested": 1}, "sender": 3},
        {"label": "Shirt", "sender": 3},
        {"label": "Shirt", "sender": 4},
    ]
    positions, labels = teaching_items(metadata, "label")
    assert positions.tolist() == [0, 5, 6] and labels == ["Dress", "Shirt", "Shirt"]
    taught, _ = teaching_items(metadata, "label", holdout_by="sender", seed=0)
    again, _ = teaching_items(metadata, "label", holdout_by="sender", seed=0)
    assert taught.tolist() == again.tolist()
    assert 0 < len(taught) < 3  # some senders' labels are held out


# Adapting an index.


@pytest.fixture
def index_dir(tmp_path: Path, lite0: Any) -> Path:
    """An embedded index recording the real default model, holding the synthetic catalogue's vectors."""
    vectors, metadata = synthetic_catalogue()
    path = tmp_path / "index"
    settings = IndexSettings(dim=DIM, kind="exact", embedding=lite0.descriptor())
    with EmbeddedIndex.create(path, settings) as index:
        index.add([Item(f"item-{i:03d}", v, m, None) for i, (v, m) in enumerate(zip(vectors, metadata, strict=True))])
    return path


def stored(path: Path) -> tuple[list[str], np.ndarray]:
    with EmbeddedIndex.open(path) as index:
        items = [item for batch in index.iter_items() for item in batch]
    return [item.id for item in items], np.stack([item.vector for item in items])


def test_adapt_reprojects_every_vector_and_queries_follow(index_dir: Path) -> None:
    ids, plain = stored(index_dir)
    report = adapt_index(index_dir, "label")
    assert (report.items, report.taught, report.classes, report.rank) == (120, 72, 4, 3)
    _, adapted = stored(index_dir)
    catalog = open_catalog(index_dir)
    try:
        projection = catalog.embedder.projection
        assert projection is not None
        np.testing.assert_allclose(adapted, projection.apply(plain), atol=1e-5)
        np.testing.assert_allclose(
            projection.invert(adapted), plain / np.linalg.norm(plain, axis=1)[:, None], atol=1e-5
        )
        # A query gets the same projection as the stored vectors did.
        pixels = np.full((1, 224, 224, 3), 128, dtype=np.uint8)
        plain_query = catalog.embedder.with_projection(None).embed_prepared(pixels)
        np.testing.assert_allclose(catalog.embedder.embed_prepared(pixels), projection.apply(plain_query), atol=1e-5)
        assert catalog.embedder.descriptor()["adaptation"]["digest"] == projection.record()["digest"]
        # Search by a stored vector finds the same true class more often for unlabelled items.
        metadata = {item.id: item.metadata for batch in catalog.index.iter_items(with_vectors=False) for item in batch}
    finally:
        catalog.close()
    listed = [metadata[i] for i in ids]
    unlabelled = [n for n, m in enumerate(listed) if "label" not in m]
    assert precision_at(adapted, listed, unlabelled) > precision_at(plain, listed, unlabelled) + 0.2


def test_near_duplicates_still_find_each_other_after_adapting(tmp_path: Path, lite0: Any) -> None:
    vectors, metadata = synthetic_catalogue()
    rng = np.random.default_rng(7)
    copies = vectors[:20] + 0.005 * rng.normal(size=(20, DIM)).astype(np.float32)  # |noise| ~ 0.18
    path = tmp_path / "dups"
    with EmbeddedIndex.create(path, IndexSettings(dim=DIM, kind="exact", embedding=lite0.descriptor())) as index:
        index.add([Item(f"item-{i:03d}", v, m, None) for i, (v, m) in enumerate(zip(vectors, metadata, strict=True))])
    adapt_index(path, "label", gain=10.0)
    catalog = open_catalog(path)
    try:
        projected = catalog.embedder.projection.apply(copies)
        found = [catalog.index.search(q, 1, exact=True)[0].id for q in projected]
    finally:
        catalog.close()
    assert found == [f"item-{i:03d}" for i in range(20)]


def test_undo_restores_the_plain_vectors_and_relearning_starts_from_them(index_dir: Path) -> None:
    _, plain = stored(index_dir)
    first = adapt_index(index_dir, "label")
    _, once = stored(index_dir)
    adapt_index(index_dir, "label")  # again: learned from the recovered plain features, not from `once`
    _, twice = stored(index_dir)
    np.testing.assert_allclose(twice, once, atol=1e-4)
    undone = adapt_index(index_dir, undo=True)
    assert undone.undone and first.items == undone.items
    _, back = stored(index_dir)
    np.testing.assert_allclose(back, plain, atol=1e-5)  # the synthetic vectors were unit vectors already
    with EmbeddedIndex.open(index_dir) as index:
        assert "adaptation" not in index.settings.embedding
    with pytest.raises(AdaptError, match="nothing to undo"):
        adapt_index(index_dir, undo=True)


def test_a_failure_midway_leaves_the_index_as_it_was(index_dir: Path) -> None:
    ids, plain = stored(index_dir)
    calls = 0

    def failing(vectors: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the power went out")
        return vectors * 2.0

    with pytest.raises(RuntimeError, match="power"):
        EmbeddedIndex.reproject(index_dir, failing, {"model": "something else"}, batch_size=50)
    again_ids, again = stored(index_dir)
    assert again_ids == ids
    np.testing.assert_array_equal(again, plain)
    with EmbeddedIndex.open(index_dir) as index:
        assert index.settings.embedding["model"] == "efficientnet-lite0"
        assert index.search(plain[3], 1)[0].id == ids[3]  # the structure is rebuilt and answers


def test_a_vector_the_projection_breaks_is_refused_before_anything_changes(index_dir: Path) -> None:
    _, plain = stored(index_dir)
    with pytest.raises(Exception, match="NaN"):
        EmbeddedIndex.reproject(index_dir, lambda v: v * np.float32("nan"), {"model": "x"})
    np.testing.assert_array_equal(stored(index_dir)[1], plain)


def test_adapt_refuses_a_server_backend_and_a_missing_field(index_dir: Path) -> None:
    with pytest.raises(AdaptError, match="embedded index"):
        adapt_index(IndexTarget("milvus", url="http://127.0.0.1:1", name="x"), "label")
    with pytest.raises(AdaptError, match="--label"):
        adapt_index(index_dir, None)
    with pytest.raises(AdaptError, match="at least 2 classes"):
        adapt_index(index_dir, "no_such_field")


def test_eval_measures_a_held_out_adaptation_on_the_other_half(index_dir: Path) -> None:
    report = adapt_index(index_dir, "truth", holdout_by="sender")
    assert report.holdout == {"field": "sender", "seed": 0, "test_share": 0.5}
    assert report.taught == 60  # half of the 12 senders, every item of theirs carries "truth"
    with EmbeddedIndex.open(index_dir) as index:
        result = evaluate_index(index, None, EvalOptions(k=5, label_field="truth", bias_field="sender", duplicates=0))
    assert result["held_out"]["field"] == "sender" and result["held_out"]["items"] == 60
    assert result["queries"] == 60
    assert result["same_field"]["queries"] == 60


def test_cli_adapt_and_undo(index_dir: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["adapt", "--index", str(index_dir), "--label", "label"])
    assert done.exit_code == 0, done.output
    assert "learned from 72 items in 4 'label' classes" in done.output
    listed = runner.invoke(app, ["eval", "--index", str(index_dir), "--duplicates", "0", "--bias-field", "sender"])
    assert listed.exit_code == 0, listed.output
    assert "adapted:  from 'label'" in listed.output and "basis" not in listed.output
    undone = runner.invoke(app, ["adapt", "--index", str(index_dir), "--undo", "--json"])
    assert undone.exit_code == 0, undone.output
    assert json.loads(undone.output)["undone"] is True
    both = runner.invoke(app, ["adapt", "--index", str(index_dir), "--label", "label", "--undo"])
    assert both.exit_code != 0


def test_centre_only_needs_no_labels_and_undoes(index_dir: Path) -> None:
    _, plain = stored(index_dir)
    report = adapt_index(index_dir, centre_only=True)
    assert report.field is None and report.rank == 0 and "centred" in report.summary()
    _, centred = stored(index_dir)
    unit = plain / np.linalg.norm(plain, axis=1, keepdims=True)
    np.testing.assert_allclose(centred, unit - unit.mean(axis=0), atol=1e-5)
    runner = CliRunner()
    listed = runner.invoke(app, ["eval", "--index", str(index_dir), "--duplicates", "0", "--bias-field", "sender"])
    assert "centred on the catalogue's mean direction" in listed.output
    undone = runner.invoke(app, ["adapt", "--index", str(index_dir), "--undo"])
    assert undone.exit_code == 0, undone.output
    np.testing.assert_allclose(stored(index_dir)[1], plain, atol=1e-5)
    assert runner.invoke(app, ["adapt", "--index", str(index_dir), "--centre", "--undo"]).exit_code != 0
