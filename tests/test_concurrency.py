"""Several processes on one embedded index: readers see every committed write and never a half-written one.

A server keeps its own FAISS structure in memory; before every read it checks SQLite's ``data_version``
and catches up with what other processes committed. The random interleavings are seeded (printed; replay
with ``LOOKALIKE_CRASH_SEED=N``).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import make_photo

from lookalike.catalog import open_or_create_catalog
from lookalike.index.base import IndexSettings, Item
from lookalike.index.embedded import EmbeddedIndex
from lookalike.index.embedded import sync as embedded  # where the tombstone log is trimmed
from lookalike.ingest import ingest
from lookalike.sources import open_source

SEED = int(os.environ.get("LOOKALIKE_CRASH_SEED", "20261125"))
DIM = 24
CLI = [sys.executable, "-m", "lookalike.cli"]


def nearest(truth: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    """The exact answer, computed here in float64 from what was committed."""
    ids = sorted(truth)
    matrix = np.stack([truth[i] / np.linalg.norm(truth[i]) for i in ids]).astype(np.float64)
    scores = matrix @ (query / np.linalg.norm(query))
    return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


def test_two_handles_writing_in_turn_each_see_every_commit(tmp_path: Path) -> None:
    """Two connections (as two processes would have) add, upsert and delete in a seeded random order; after
    every step both answer exactly what was committed, whoever wrote it."""
    print(f"LOOKALIKE_CRASH_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    path = tmp_path / "index"
    first = EmbeddedIndex.create(path, IndexSettings(dim=DIM, metric="cosine", kind="hnsw"))
    second = EmbeddedIndex.open(path)
    handles, truth, next_id = [first, second], {}, 0
    for step in range(250):
        writer = handles[int(rng.integers(2))]
        action = rng.choice(["add", "add", "upsert", "delete", "save"])
        if action == "add" or (action in ("upsert", "delete") and not truth):
            items = [Item(f"i{next_id + j}", rng.standard_normal(DIM).astype(np.float32)) for j in range(3)]
            next_id += 3
            writer.add(items)
            truth.update({item.id: item.vector for item in items})
        elif action == "upsert":
            item = Item(str(rng.choice(sorted(truth))), rng.standard_normal(DIM).astype(np.float32))
            writer.add([item])
            truth[item.id] = item.vector
        elif action == "delete":
            doomed = [str(i) for i in rng.choice(sorted(truth), size=min(2, len(truth)), replace=False)]
            assert writer.delete(doomed) == len(doomed)
            for item_id in doomed:
                del truth[item_id]
        else:
            writer.save()
        query = rng.standard_normal(DIM).astype(np.float32)
        k = min(5, len(truth))
        for reader in handles:
            context = f"step {step} ({action}), seed {SEED}"
            if not truth:
                assert reader.search(query, 1) == [], context
                continue
            assert [r.id for r in reader.search(query, k, exact=True)] == nearest(truth, query, k), context
            approximate = [r.id for r in reader.search(query, k)]
            assert len(approximate) == k and set(approximate) <= set(truth), context
            if step % 10 == 9:  # (stats inserts the vectors waiting for the graph, so not after every step)
                stats = reader.stats()
                assert stats["items"] == stats["vectors_in_graph"] - stats["dead_vectors"] == len(truth), context
    first.close()
    second.close()
    reopened = EmbeddedIndex.open(path)
    assert reopened.stats()["vectors_in_graph"] - reopened.stats()["dead_vectors"] == len(truth)
    reopened.close()


def test_a_reader_far_behind_a_trimmed_delete_log_reconciles(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "TOMBSTONES_KEPT", 4)
    rng = np.random.default_rng(SEED)
    path = tmp_path / "index"
    writer = EmbeddedIndex.create(path, IndexSettings(dim=DIM, metric="cosine", kind="exact"))
    vectors = {f"i{j}": rng.standard_normal(DIM).astype(np.float32) for j in range(60)}
    writer.add([Item(i, v) for i, v in vectors.items()])
    reader = EmbeddedIndex.open(path)
    for j in range(30):  # one at a time, saving each time: the log is trimmed to the newest few
        writer.delete([f"i{j}"])
        del vectors[f"i{j}"]
        writer.save()
    with sqlite3.connect(path / "index.sqlite") as db:
        assert db.execute("SELECT MIN(seq) FROM deleted_vids").fetchone()[0] > 2  # the reader's place is gone
    for item_id in ("i0", "i29", "i30"):
        query = rng.standard_normal(DIM).astype(np.float32) if item_id != "i30" else vectors["i30"]
        assert [r.id for r in reader.search(query, 10)] == nearest(vectors, query, 10)
    assert reader.stats()["vectors_in_graph"] - reader.stats()["dead_vectors"] == 30
    writer.close()
    reader.close()


def test_a_mapped_reader_whose_checkpoint_was_replaced_catches_up_without_a_rebuild(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(SEED)
    path = tmp_path / "index"
    truth = {f"i{j}": rng.standard_normal(DIM).astype(np.float32) for j in range(40)}
    with EmbeddedIndex.create(path, IndexSettings(dim=DIM, metric="cosine", kind="hnsw")) as first:
        first.add([Item(i, v) for i, v in truth.items()])
    reader = EmbeddedIndex.open(path)  # maps the checkpoint
    assert reader._mapped
    with EmbeddedIndex.open(path) as writer:  # another process writes and replaces the checkpoint
        extra = {f"n{j}": rng.standard_normal(DIM).astype(np.float32) for j in range(10)}
        writer.add([Item(i, v) for i, v in extra.items()])
        writer.delete(["i1", "i2"])
    truth |= extra
    del truth["i1"], truth["i2"]
    monkeypatch.setattr(EmbeddedIndex, "compact", lambda self: pytest.fail("rebuilt the graph"))
    reader.delete(["i3"])  # a write to the mapped structure: catches up, then copies the mapping into memory
    del truth["i3"]
    assert not reader._mapped
    for _ in range(10):
        query = rng.standard_normal(DIM).astype(np.float32)
        assert [r.id for r in reader.search(query, 8, exact=True)] == nearest(truth, query, 8)
        assert set(r.id for r in reader.search(query, 8)) <= set(truth)
    assert reader.stats()["vectors_in_graph"] - reader.stats()["dead_vectors"] == len(truth)
    monkeypatch.undo()
    reader.close()


def test_a_reader_never_sees_an_uncommitted_write_and_never_waits_for_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    path = tmp_path / "index"
    index = EmbeddedIndex.create(path, IndexSettings(dim=DIM, metric="cosine", kind="hnsw"))
    index.add([Item(f"old{j}", rng.standard_normal(DIM).astype(np.float32)) for j in range(10)])
    other = EmbeddedIndex.open(path)
    pending = [Item(f"new{j}", rng.standard_normal(DIM).astype(np.float32)) for j in range(10)]
    # Another process's write transaction, held open half-way: rows inserted and deleted, nothing committed.
    with other._lock:
        other._db.execute("BEGIN IMMEDIATE")
        for item in pending:
            other._db.execute(
                "INSERT INTO items (id, metadata, vector) VALUES (?, '{}', ?)", (item.id, item.vector.tobytes())
            )
        other._db.execute("DELETE FROM items WHERE id = 'old0'")
        started = time.perf_counter()
        hits = index.search(pending[0].vector, k=20)
        # No waiting on the writer's lock: a reader that waited would block for SQLite's 60 s busy timeout (the
        # writer is this very thread, so it never commits meanwhile); 10 s leaves a loaded machine room.
        assert time.perf_counter() - started < 10.0
        assert sorted(r.id for r in hits) == sorted(f"old{j}" for j in range(10))
        assert index.count() == 10 and index.get("new0") is None and index.get("old0") is not None
        other._db.execute("COMMIT")
    hits = index.search(pending[0].vector, k=20)  # all of it at once, once committed
    assert hits[0].id == "new0" and len(hits) == 19 and "old0" not in {r.id for r in hits}
    index.close()
    other.close()


# --------------------------------------------------------------------------------------- a real server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(client: httpx.Client, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited: {log.read_text()}"
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the server did not come up: {log.read_text()}")


@pytest.fixture
def two_catalogues(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    for root, seeds, folder in ((first, range(0, 40), "old"), (second, range(100, 130), "new")):
        (root / folder).mkdir(parents=True)
        for seed in seeds:
            (root / folder / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))
    return first, second


def test_a_server_keeps_answering_while_other_processes_ingest_and_delete(
    two_catalogues: tuple[Path, Path], tmp_path: Path, lite0, cache_dir
) -> None:
    first, second = two_catalogues
    index_path = tmp_path / "index"
    catalog = open_or_create_catalog(index_path, "efficientnet-lite0")
    ingest(open_source(str(first)), catalog.index, catalog.embedder, progress=False)
    catalog.close()
    old_ids = [f"old/p{seed:03d}.jpg" for seed in range(40)]
    new_ids = [f"new/p{seed:03d}.jpg" for seed in range(100, 130)]
    doomed, stable = old_ids[::4], [i for i in old_ids if i not in old_ids[::4]]
    every_id = set(old_ids) | set(new_ids)

    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [*CLI, "serve", "--index", str(index_path), "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    writes_done = threading.Event()
    deleted_at: list[float] = []
    writer_errors: list[str] = []

    def write() -> None:  # another process ingests into, then deletes from, the index being served
        try:
            for command in (
                [*CLI, "index", str(second), "--index", str(index_path), "--batch-size", "2", "--no-progress"],
                [*CLI, "delete", *doomed, "--index", str(index_path)],
            ):
                run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
                if run.returncode != 0:
                    writer_errors.append(run.stderr)
            deleted_at.append(time.monotonic())
        finally:
            writes_done.set()

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            wait_until_up(client, server, log)
            writer = threading.Thread(target=write)
            writer.start()
            rng = np.random.default_rng(SEED)
            responses = 0
            while not writes_done.is_set() or responses < 20:
                started = time.monotonic()
                if rng.random() < 0.5:
                    response = client.post("/api/search", json={"id": str(rng.choice(stable)), "k": 8})
                else:
                    seed = int(rng.integers(100, 130))
                    upload = {"image": ("q.jpg", make_photo(seed, size=(200, 260)), "image/jpeg")}
                    response = client.post("/api/search", files=upload, data={"k": "8"})
                assert response.status_code == 200, response.text
                results = response.json()["results"]
                ids = [r["id"] for r in results]
                assert 0 < len(ids) <= 8 and len(set(ids)) == len(ids) and set(ids) <= every_id, ids
                assert all(r["metadata"] == {"folder": r["id"].split("/")[0]} for r in results), results
                scores = [r["score"] for r in results]
                assert scores == sorted(scores, reverse=True), scores
                if deleted_at and started > deleted_at[0]:
                    assert not set(ids) & set(doomed), ids  # gone once the delete has committed
                health = client.get("/health")
                assert health.status_code == 200 and health.json()["items"] >= 30
                responses += 1
            writer.join()
            assert not writer_errors, writer_errors

            # Caught up: every new item is found by its photo, deleted ones are not, counts agree.
            assert client.get("/health").json()["items"] == 40 + 30 - len(doomed)
            for seed in (100, 117, 129):
                upload = {"image": ("q.jpg", make_photo(seed, size=(200, 260)), "image/jpeg")}
                hit = client.post("/api/search", files=upload, data={"k": "3"}).json()["results"][0]
                assert hit["id"] == f"new/p{seed:03d}.jpg" and hit["score"] > 0.99
            upload = {"image": ("q.jpg", make_photo(0, size=(200, 260)), "image/jpeg")}
            hits = client.post("/api/search", files=upload, data={"k": "10"}).json()["results"]
            assert doomed[0] not in {h["id"] for h in hits} and len(hits) == 10
            print(f"{responses} queries answered while another process wrote")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    text = log.read_text()
    for trouble in ("Traceback", "ERROR", "locked", "Exception"):
        assert trouble not in text, text
