"""What only the embedded FAISS + SQLite index does: its search planner's filtered paths, the FAISS structure
under upserts and deletes, checkpoints, crashes, compaction, and SQLite migrations.

The behaviours every backend shares (exact answers, recall, filters, upserts, deletes, bad input, facets, ids)
are written once in tests/contract/, which runs them on this backend as ``[embedded]``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.errors import IndexError_
from lookalike.index import EmbeddedIndex, IndexSettings, Item, SearchResult

KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]
DIM = 32
N = 2000


# ----------------------------------------------------------------------------------------- helpers


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 vectors around ``clusters`` random centres, and each one's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    assignment = rng.integers(0, clusters, size=n)
    vectors = centres[assignment] + spread * rng.normal(size=(n, dim))
    return vectors.astype(np.float32), assignment


def distances_to(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """The metric's own distance in float64: Euclidean, or 1 - cosine similarity."""
    vectors, query = vectors.astype(np.float64), np.asarray(query, dtype=np.float64)
    if metric == "l2":
        return np.sqrt(((vectors - query) ** 2).sum(axis=1))
    similarity = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return 1.0 - similarity


def brute_force(ids: list[str], vectors: np.ndarray, query: np.ndarray, metric: str, k: int) -> list[tuple[str, float]]:
    distances = distances_to(vectors, query, metric)
    order = np.argsort(distances, kind="stable")[:k]
    return [(ids[i], float(distances[i])) for i in order]


def ids_of(results: list[SearchResult]) -> list[str]:
    return [r.id for r in results]


def recall(found: list[str], truth: list[str]) -> float:
    return len(set(found) & set(truth)) / max(len(truth), 1)


def new_index(path: Path, metric: str = "l2", kind: str = "exact", dim: int = 16, **settings: Any) -> EmbeddedIndex:
    return EmbeddedIndex.create(path, IndexSettings(dim=dim, metric=metric, kind=kind, **settings))


def random_items(n: int, dim: int = 16, seed: int = 0, prefix: str = "item") -> list[Item]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        Item(f"{prefix}-{i}", vectors[i], {"label": f"l{i % 5}", "i": i}, f"/img/{prefix}-{i}.jpg", f"h{i}")
        for i in range(n)
    ]


def all_results(index: EmbeddedIndex, query: np.ndarray, **kwargs: Any) -> list[SearchResult]:
    return index.search(query, k=max(index.count(), 1), **kwargs)


# ----------------------------------------------------------------------------------------- exactness and recall


# ----------------------------------------------------------------------------------------- filtered search


@pytest.fixture(scope="module")
def big_hnsw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """5000 items with a rare flag on 7 and a 10% group: around the 5% brute-force threshold."""
    n, dim = 5000, 16
    vectors, _ = clustered(n, dim, clusters=30, seed=11, spread=0.5)
    rng = np.random.default_rng(12)
    rare = set(rng.choice(n, size=7, replace=False).tolist())
    group = set(rng.choice(n, size=n // 10, replace=False).tolist())
    few = set(rng.choice(n, size=150, replace=False).tolist())  # 3%: brute force over the matches
    metadata = [{"rare": i in rare, "group": "g" if i in group else "other", "few": i in few} for i in range(n)]
    ids = [f"b{i}" for i in range(n)]
    indexes = {}
    for metric in METRICS:
        index = new_index(tmp_path_factory.mktemp(f"big-{metric}"), metric, "hnsw", dim, hnsw_m=16, ef_construction=64)
        index.add([Item(ids[i], vectors[i], metadata[i]) for i in range(n)])
        indexes[metric] = index
    yield {"indexes": indexes, "vectors": vectors, "ids": ids, "rare": rare, "group": group, "few": few}
    for index in indexes.values():
        index.close()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("subset", ["group", "few"])
def test_medium_filter_on_hnsw_still_returns_k(big_hnsw: dict[str, Any], metric: str, subset: str) -> None:
    index, vectors, ids = big_hnsw["indexes"][metric], big_hnsw["vectors"], big_hnsw["ids"]
    members = sorted(big_hnsw[subset])
    filter = {"group": "g"} if subset == "group" else {"few": True}
    queries = np.random.default_rng(14).normal(size=(20, vectors.shape[1])).astype(np.float32)
    recalls = []
    for query in queries:
        results = index.search(query, k=10, filter=filter)
        assert len(results) == 10
        assert {r.id for r in results} <= {ids[i] for i in members}
        truth = brute_force([ids[i] for i in members], vectors[members], query, metric, 10)
        recalls.append(recall(ids_of(results), [i for i, _ in truth]))
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("metric", METRICS)
def test_filter_asking_for_all_its_matches_gets_all(big_hnsw: dict[str, Any], metric: str) -> None:
    """k equal to the number of matches: if the graph walk falls short, the exact fallback must fill in."""
    index, ids = big_hnsw["indexes"][metric], big_hnsw["ids"]
    group = {ids[i] for i in big_hnsw["group"]}
    query = np.random.default_rng(15).normal(size=16).astype(np.float32)
    results = index.search(query, k=len(group), filter={"group": "g"})
    assert {r.id for r in results} == group
    assert len(results) == len(group)


# ----------------------------------------------------------------------------------------- writes


@pytest.mark.parametrize("kind", KINDS)
def test_an_upsert_leaves_one_dead_vector_until_the_save(tmp_path: Path, kind: str) -> None:
    """What an upsert is answered by is in tests/contract/test_add.py; here, what it costs the FAISS structure."""
    index = new_index(tmp_path / "i", "l2", kind)
    items = random_items(200)
    index.add(items)
    old = items[17]
    index.add([Item(old.id, np.random.default_rng(99).normal(size=16).astype(np.float32), {"label": "new"})])
    assert index.stats() == {"items": 200, "vectors_in_graph": 201, "dead_vectors": 1}
    index.close()
    with EmbeddedIndex.open(tmp_path / "i") as reopened:
        stats = reopened.stats()
        assert stats["items"] == 200 and stats["vectors_in_graph"] - stats["dead_vectors"] == 200


# ----------------------------------------------------------------------------------------- bad input changes nothing


# ----------------------------------------------------------------------------------------- create and open


def test_open_a_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="lookalike index"):
        EmbeddedIndex.open(tmp_path / "nothing-here")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(IndexError_, match="lookalike index"):
        EmbeddedIndex.open(tmp_path / "empty-dir")


# ----------------------------------------------------------------------------------------- persistence and durability


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_close_and_reopen_gives_identical_results(tmp_path: Path, kind: str, metric: str) -> None:
    vectors, _ = clustered(600, 16, clusters=8, seed=2)
    index = new_index(tmp_path / "i", metric, kind)
    index.add([Item(f"v{i}", v, {"label": f"c{i % 3}"}) for i, v in enumerate(vectors)])
    index.delete([f"v{i}" for i in range(0, 600, 20)])  # some dead vectors in the checkpoint too
    queries = clustered(20, 16, clusters=8, seed=2, spread=0.8)[0]
    calls = [dict(k=10), dict(k=10, filter={"label": "c1"}), dict(k=10, exact=True)]
    before = [[r.to_dict() for r in index.search(q, **c)] for q in queries for c in calls]
    index.close()
    reopened = EmbeddedIndex.open(tmp_path / "i")
    after = [[r.to_dict() for r in reopened.search(q, **c)] for q in queries for c in calls]
    assert after == before
    assert reopened.count() == 570
    reopened.close()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_writes_after_the_checkpoint_survive_a_crash(tmp_path: Path, kind: str, metric: str) -> None:
    """A second index opened on the same path, without the first saving, sees what SQLite committed."""
    path = tmp_path / "i"
    first = new_index(path, metric, kind)
    saved = random_items(120, seed=1, prefix="saved")
    first.add(saved)
    first.save()
    unsaved = random_items(30, seed=2, prefix="unsaved")
    first.add(unsaved)
    doomed = [saved[i].id for i in range(0, 120, 7)]
    first.delete(doomed)
    changed = Item(saved[1].id, np.full(16, 3.0, dtype=np.float32), {"label": "changed"})
    first.add([changed])  # an upsert after the checkpoint
    checkpoint = (path / "vectors.faiss").read_bytes()

    second = EmbeddedIndex.open(path)  # the first never saved: as if it had crashed
    assert second.count() == first.count() == 150 - len(doomed)
    for item in unsaved:
        top = second.search(item.vector, k=1)[0]
        assert (top.id, top.metadata) == (item.id, item.metadata)
        assert top.distance == pytest.approx(0.0, abs=1e-5)
    found = {r.id for r in all_results(second, saved[0].vector)}
    assert not found & set(doomed)
    assert len(found) == second.count()
    assert {r.id for r in all_results(second, saved[0].vector, exact=True)} == found
    top = second.search(changed.vector, k=1)[0]
    assert (top.id, top.metadata, top.distance) == (changed.id, changed.metadata, pytest.approx(0.0, abs=1e-5))
    assert [r.id for r in all_results(second, saved[1].vector)].count(changed.id) == 1
    assert second.search(np.ones(16), k=100, filter={"label": "changed"})[0].id == changed.id
    assert (path / "vectors.faiss").read_bytes() == checkpoint  # opening alone did not write

    second.close()
    first._db.close()  # the "crashed" process goes away without saving
    third = EmbeddedIndex.open(path)
    assert third.count() == 150 - len(doomed)
    assert third.stats()["vectors_in_graph"] - third.stats()["dead_vectors"] == third.count()
    assert third.search(unsaved[5].vector, k=1)[0].id == unsaved[5].id
    third.close()


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_saved_after_create(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "i"
    first = new_index(path, "cosine", kind)
    items = random_items(80)
    first.add(items)
    second = EmbeddedIndex.open(path)
    assert second.count() == 80
    assert [second.search(item.vector, k=1)[0].id for item in items] == [item.id for item in items]
    second.close()
    first._db.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_checkpoint_is_rebuilt_from_sqlite(tmp_path: Path, kind: str, damage: str) -> None:
    path = tmp_path / "i"
    index = new_index(path, "l2", kind)
    items = random_items(300)
    index.add(items)
    index.delete([items[0].id])
    queries = [item.vector for item in items[1:30]]
    before = [ids_of(index.search(q, k=5, exact=True)) for q in queries]
    index.close()
    checkpoint = path / "vectors.faiss"
    raw = checkpoint.read_bytes()
    damaged = {"garbage": np.random.default_rng(0).bytes(len(raw)), "empty": b"", "truncated": raw[: len(raw) // 2]}
    checkpoint.write_bytes(damaged[damage])

    reopened = EmbeddedIndex.open(path)
    assert reopened.count() == 299
    assert [ids_of(reopened.search(q, k=5, exact=True)) for q in queries] == before
    assert [reopened.search(q, k=1)[0].id for q in queries] == [item.id for item in items[1:30]]
    assert items[0].id not in {r.id for r in all_results(reopened, items[0].vector)}
    reopened.close()
    again = EmbeddedIndex.open(path)  # the rebuilt checkpoint was written on close
    assert again.stats() == {"items": 299, "vectors_in_graph": 299, "dead_vectors": 0}
    again.close()


@pytest.mark.parametrize("foreign", ["plain-flat", "other-dimension"])
def test_foreign_checkpoint_is_rebuilt_from_sqlite(tmp_path: Path, foreign: str) -> None:
    import faiss

    path = tmp_path / "i"
    index = new_index(path, "l2", "exact")
    items = random_items(20)
    index.add(items)
    index.close()
    other = faiss.IndexFlatL2(16) if foreign == "plain-flat" else faiss.IndexIDMap2(faiss.IndexFlatL2(8))
    faiss.write_index(other, str(path / "vectors.faiss"))
    reopened = EmbeddedIndex.open(path)
    assert reopened.search(items[3].vector, k=1)[0].id == items[3].id
    reopened.close()


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_hnsw_finds_every_item_under_upsert_churn(tmp_path: Path) -> None:
    """A server re-adding the same photos over and over, never saving: the graph fills with dead exact
    copies (15 for every live vector here), and every item must still come first for its own vector."""
    dim, n = 64, 400
    vectors, _ = clustered(n, dim, clusters=8, seed=3, spread=0.2)
    ids = [f"item-{i}" for i in range(n)]
    index = new_index(tmp_path / "i", "cosine", "hnsw", dim=dim)
    index.add([Item(i, v) for i, v in zip(ids, vectors, strict=True)])
    rng = np.random.default_rng(4)
    for _ in range(150):
        chosen = rng.choice(n, 40, replace=False)
        index.add([Item(ids[i], vectors[i]) for i in chosen])
    assert index.stats()["dead_vectors"] >= 10 * n
    missed = [ids[i] for i in range(n) if index.search(vectors[i], k=1)[0].id != ids[i]]
    assert missed == []
    index.close()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
@pytest.mark.parametrize("kind", KINDS)
def test_compacting_saves_free_the_previous_structure(tmp_path: Path, kind: str) -> None:
    """A server that takes upserts compacts on save; each compaction must free the structure it replaces.

    Each round leaves ~2,400 dead 512-d vectors (5 MB with the graph) behind: leaked, 8 rounds grow by 40 MB.
    """
    dim, ids = 512, [f"item-{i}" for i in range(400)]
    rng = np.random.default_rng(5)
    index = new_index(tmp_path / "i", "l2", kind, dim=dim)
    index.add([Item(i, v) for i, v in zip(ids, rng.normal(size=(400, dim)).astype(np.float32), strict=True)])
    sizes = []
    for _ in range(9):
        for _ in range(60):
            chosen = rng.choice(400, 40, replace=False)
            index.add(
                [Item(ids[i], v) for i, v in zip(chosen, rng.normal(size=(40, dim)).astype(np.float32), strict=True)]
            )
        index.save()
        assert index.stats() == {"items": 400, "vectors_in_graph": 400, "dead_vectors": 0}
        sizes.append(resident_mb())
    index.close()
    assert sizes[-1] - sizes[0] < 12, f"resident memory grew with every compaction: {sizes}"


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_compaction_on_save(tmp_path: Path, kind: str, metric: str) -> None:
    path = tmp_path / "i"
    index = new_index(path, metric, kind)
    items = random_items(400)
    index.add(items)
    index.delete([item.id for item in items[:60]])  # 15%: kept, masked
    index.save()
    assert index.stats() == {"items": 340, "vectors_in_graph": 400, "dead_vectors": 60}
    index.delete([item.id for item in items[60:130]])  # 32.5% dead now
    queries = [item.vector for item in items[100:160]]
    before = [[(r.id, r.distance) for r in index.search(q, k=10, exact=True)] for q in queries]
    before_approx = [ids_of(index.search(q, k=10)) for q in queries]
    index.save()
    assert index.stats() == {"items": 270, "vectors_in_graph": 270, "dead_vectors": 0}
    assert index.stats()["vectors_in_graph"] == index.count()
    after = [[(r.id, r.distance) for r in index.search(q, k=10, exact=True)] for q in queries]
    assert [[i for i, _ in row] for row in after] == [[i for i, _ in row] for row in before]
    for row_after, row_before in zip(after, before, strict=True):
        np.testing.assert_allclose([d for _, d in row_after], [d for _, d in row_before], rtol=1e-5, atol=1e-6)
    after_approx = [ids_of(index.search(q, k=10)) for q in queries]
    if kind == "exact":
        assert after_approx == before_approx
    else:
        assert np.mean([recall(a, [i for i, _ in b]) for a, b in zip(after_approx, before, strict=True)]) >= 0.95
    index.add(random_items(5, seed=9, prefix="later"))  # still writable after the rebuild
    final = [[r.to_dict() for r in index.search(q, k=10, exact=True)] for q in queries]
    index.close()
    reopened = EmbeddedIndex.open(path)
    assert reopened.stats() == {"items": 275, "vectors_in_graph": 275, "dead_vectors": 0}
    assert [[r.to_dict() for r in reopened.search(q, k=10, exact=True)] for q in queries] == final
    reopened.close()


# ----------------------------------------------------------------------------------------- colours


def _index_without_colours(path: Path) -> list[Item]:
    """An index as the release before colour descriptors made it: no colour column in ``items``."""
    import contextlib
    import sqlite3

    vectors, _ = clustered(30, DIM, 3, seed=5)
    items = [Item(f"old-{i}", vectors[i], {"i": i}, f"/img/{i}.jpg", f"h{i}") for i in range(30)]
    with EmbeddedIndex.create(path, IndexSettings(dim=DIM, kind="hnsw")) as index:
        index.add(items)
    with contextlib.closing(sqlite3.connect(path / "index.sqlite")) as db:
        db.execute("ALTER TABLE items DROP COLUMN colour")
        db.execute("PRAGMA user_version = 0")  # that release did not version its store
        db.commit()
    return items


def _columns(path: Path) -> list[str]:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(path / "index.sqlite")) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(items)")]


def test_an_index_made_before_colours_gets_the_column_when_opened(tmp_path: Path) -> None:
    items = _index_without_colours(tmp_path / "old")
    assert "colour" not in _columns(tmp_path / "old")
    with EmbeddedIndex.open(tmp_path / "old") as index:
        assert "colour" in _columns(tmp_path / "old")
        assert index.get("old-3").colour is None and index.colours(["old-3", "old-4"]) == {"old-3": None, "old-4": None}
        colour = np.full(12, 1 / 12, dtype=np.float32)
        index.add([Item("new", items[0].vector, {}, None, None, colour)])
        assert np.array_equal(index.colours(["new"])["new"], colour)
        assert index.search(items[7].vector, 1)[0].id == items[7].id
    with EmbeddedIndex.open(tmp_path / "old") as index:  # the second open finds the column there
        assert np.array_equal(index.get("new").colour, colour) and index.count() == 31


def test_an_index_made_before_colours_opens_read_only_without_the_column(tmp_path: Path, monkeypatch) -> None:
    """Read-only (a snapshot mounted read-only, a file the server may not write): left as it is, every colour
    None, searches as ever. Simulated with SQLite's query_only, which refuses writes as a read-only file does."""
    from lookalike.index.embedded import store as embedded  # where the store connects

    items = _index_without_colours(tmp_path / "old")
    connect = embedded._connect

    def read_only(path: Path):
        connection = connect(path)
        connection.execute("PRAGMA query_only = ON")
        return connection

    monkeypatch.setattr(embedded, "_connect", read_only)
    with EmbeddedIndex.open(tmp_path / "old") as index:
        assert "colour" not in _columns(tmp_path / "old")
        assert index.get("old-3").colour is None and index.get("old-3").metadata == {"i": 3}
        assert index.colours(["old-3", "missing"]) == {"old-3": None, "missing": None}
        assert all(item.colour is None for batch in index.iter_items() for item in batch)
        assert index.search(items[7].vector, 1)[0].id == items[7].id
