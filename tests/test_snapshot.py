"""``lookalike snapshot`` / ``restore``: a consistent copy of a live index, verified, restored to the same answers."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo

from lookalike.catalog import open_or_create_catalog
from lookalike.index.base import IndexSettings, Item
from lookalike.index.embedded import EmbeddedIndex
from lookalike.ingest import ingest
from lookalike.snapshot import SnapshotError, restore, snapshot, verify
from lookalike.sources import open_source

CLI = [sys.executable, "-m", "lookalike.cli"]
DIM = 16


def rows(index_path: Path) -> dict[str, tuple[int, bytes]]:
    with contextlib.closing(sqlite3.connect(index_path / "index.sqlite")) as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, vid, vector FROM items")}


def small_index(path: Path, n: int = 50) -> EmbeddedIndex:
    rng = np.random.default_rng(7)
    index = EmbeddedIndex.create(
        path, IndexSettings(dim=DIM, metric="cosine", kind="hnsw", embedding={"model": "test-model"})
    )
    index.add([Item(f"i{j}", rng.standard_normal(DIM).astype(np.float32), {"n": j}) for j in range(n)])
    index.delete(["i3"])
    return index


def test_snapshots_taken_during_an_ingest_are_committed_states_with_the_same_answers(
    tmp_path: Path, lite0, cache_dir
) -> None:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for seed in range(80):
        (catalogue / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))
    source = tmp_path / "index"
    catalog = open_or_create_catalog(source, "efficientnet-lite0")
    ingest(open_source(str(catalogue)), catalog.index, catalog.embedder, progress=False, batch_size=8)
    catalog.close()
    for seed in range(80, 160):  # what the running ingest adds while the snapshots are taken
        (catalogue / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))

    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))
    command = [*CLI, "index", str(catalogue), "--index", str(source), "--batch-size", "2", "--no-progress"]
    running = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    snapshots = []
    deadline = time.monotonic() + 120
    while running.poll() is None and len(snapshots) < 3:
        assert time.monotonic() < deadline
        if len(rows(source)) > 80 + 20 * len(snapshots):  # mid-ingest: some of the new items committed
            snapshots.append(tmp_path / f"snapshot-{len(snapshots)}")
            snapshot(source, snapshots[-1])
        else:
            time.sleep(0.01)
    _, err = running.communicate(timeout=300)
    assert running.returncode == 0, err
    assert snapshots, "the ingest finished before a snapshot could be taken during it"
    print(f"{len(snapshots)} snapshots taken during the ingest")
    final = rows(source)
    assert len(final) == 160

    for number, taken in enumerate(snapshots):
        manifest = verify(taken)
        assert manifest["model"] == "efficientnet-lite0" and 80 < manifest["items"] < 160
        restored_path = tmp_path / f"restored-{number}"
        restore(taken, restored_path)
        restored = rows(restored_path)
        # A committed state: ingest only adds, in vid order, so it is exactly the items up to some vid.
        newest = max(vid for vid, _ in restored.values())
        assert set(restored) == {i for i, (vid, _) in final.items() if vid <= newest}
        assert all(restored[i][1] == final[i][1] for i in restored)  # the same vectors, bit for bit
        assert len(restored) == manifest["items"]

        # The same answers as the source gives over those items: exact search against a brute force over
        # the source's vectors of the committed items, and every restored item finds itself.
        index = EmbeddedIndex.open(restored_path)
        ids = sorted(restored)
        matrix = np.stack([np.frombuffer(final[i][1], dtype=np.float32) for i in ids]).astype(np.float64)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        for query_id in ids[::9]:
            query = np.frombuffer(final[query_id][1], dtype=np.float32)
            expected = [ids[j] for j in np.argsort(-(matrix @ (query / np.linalg.norm(query))), kind="stable")[:5]]
            assert [r.id for r in index.search(query, 5, exact=True)] == expected
            assert index.search(query, 3)[0].id == query_id
        index.close()


def test_a_quiet_index_restores_to_identical_answers_hnsw_included(tmp_path: Path) -> None:
    source = small_index(tmp_path / "index")
    source.save()
    taken = snapshot(tmp_path / "index", tmp_path / "snap")
    assert taken["items"] == 49 and taken["model"] == "test-model"
    restore(tmp_path / "snap", tmp_path / "restored")
    restored = EmbeddedIndex.open(tmp_path / "restored")
    rng = np.random.default_rng(1)
    for _ in range(20):
        query = rng.standard_normal(DIM).astype(np.float32)
        for kwargs in ({}, {"exact": True}, {"filter": {"n": {"gte": 10}}}):
            assert restored.search(query, 7, **kwargs) == source.search(query, 7, **kwargs)
    assert restored.get("i3") is None and restored.get("i4").metadata == {"n": 4}
    restored.close()
    source.close()


def test_restore_refuses_a_non_empty_index_unless_forced(tmp_path: Path) -> None:
    small_index(tmp_path / "index").close()
    snapshot(tmp_path / "index", tmp_path / "snap")
    other = EmbeddedIndex.create(tmp_path / "other", IndexSettings(dim=DIM, embedding={"model": "test-model"}))
    other.add([Item("unrelated", np.ones(DIM, dtype=np.float32))])
    other.close()
    with pytest.raises(SnapshotError, match=r"not empty.*--force"):
        restore(tmp_path / "snap", tmp_path / "other")
    assert set(rows(tmp_path / "other")) == {"unrelated"}  # untouched
    restore(tmp_path / "snap", tmp_path / "other", force=True)
    assert set(rows(tmp_path / "other")) == set(rows(tmp_path / "index"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or set-aside left
    (tmp_path / "empty").mkdir()
    restore(tmp_path / "snap", tmp_path / "empty")  # an empty directory is fine


@pytest.mark.parametrize(
    "damage, message",
    [
        ("flip a byte in index.sqlite", "damaged: index.sqlite"),
        ("truncate vectors.faiss", "damaged: vectors.faiss"),
        ("delete vectors.faiss", "incomplete: vectors.faiss is missing"),
        ("delete the manifest", "not a lookalike snapshot"),
        ("garble the manifest", "unreadable"),
    ],
)
def test_a_damaged_snapshot_is_refused_with_a_clear_error(tmp_path: Path, damage: str, message: str) -> None:
    small_index(tmp_path / "index").close()
    snap = tmp_path / "snap"
    snapshot(tmp_path / "index", snap)
    if damage.startswith("flip"):
        data = bytearray((snap / "index.sqlite").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (snap / "index.sqlite").write_bytes(bytes(data))
    elif damage.startswith("truncate"):
        data = (snap / "vectors.faiss").read_bytes()
        (snap / "vectors.faiss").write_bytes(data[: len(data) // 2])
    elif damage == "delete vectors.faiss":
        (snap / "vectors.faiss").unlink()
    elif damage == "delete the manifest":
        (snap / "snapshot.json").unlink()
    else:
        (snap / "snapshot.json").write_text("{not json")
    with pytest.raises(SnapshotError, match=message):
        verify(snap)
    with pytest.raises(SnapshotError, match=message):
        restore(snap, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    cli = subprocess.run(
        [*CLI, "restore", str(snap), "--index", str(tmp_path / "restored")], capture_output=True, text=True
    )
    assert cli.returncode == 1 and cli.stderr.startswith("error: ") and message.split(":")[0] in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1


def test_snapshot_and_restore_from_the_command_line(tmp_path: Path) -> None:
    small_index(tmp_path / "index").close()
    snap, restored = tmp_path / "snap", tmp_path / "restored"
    run = subprocess.run(
        [*CLI, "snapshot", str(snap), "--index", str(tmp_path / "index"), "--json"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads(run.stdout)
    assert manifest["items"] == 49 and set(manifest["files"]) == {"index.sqlite", "vectors.faiss"}
    assert json.loads((snap / "snapshot.json").read_text()) == manifest
    again = subprocess.run(
        [*CLI, "snapshot", str(snap), "--index", str(tmp_path / "index")], capture_output=True, text=True
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    check = subprocess.run([*CLI, "restore", str(snap), "--check"], capture_output=True, text=True)
    assert check.returncode == 0 and "intact; 49 items" in check.stdout
    run = subprocess.run([*CLI, "restore", str(snap), "--index", str(restored)], capture_output=True, text=True)
    assert run.returncode == 0 and "restored 49 items" in run.stdout, run.stderr
    refused = subprocess.run([*CLI, "restore", str(snap), "--index", str(restored)], capture_output=True, text=True)
    assert refused.returncode == 1 and "--force" in refused.stderr
    forced = subprocess.run(
        [*CLI, "restore", str(snap), "--index", str(restored), "--force"], capture_output=True, text=True
    )
    assert forced.returncode == 0, forced.stderr
    assert rows(restored) == rows(tmp_path / "index")


def test_images_added_through_the_api_travel_with_the_snapshot(tmp_path: Path) -> None:
    index = small_index(tmp_path / "index")
    uploads = tmp_path / "index" / "uploads"
    uploads.mkdir()
    (uploads / "abc.jpeg").write_bytes(make_photo(1))
    (uploads / "abc.jpeg.123.tmp").write_bytes(b"an add in flight")  # not yet an item's image: left out
    index.add([Item("abc", np.ones(DIM, dtype=np.float32), {}, str(uploads / "abc.jpeg"))])
    index.close()
    manifest = snapshot(tmp_path / "index", tmp_path / "snap")
    assert set(manifest["files"]) == {"index.sqlite", "vectors.faiss", "uploads/abc.jpeg"}
    restore(tmp_path / "snap", tmp_path / "restored")
    assert (tmp_path / "restored" / "uploads" / "abc.jpeg").read_bytes() == make_photo(1)
    (tmp_path / "snap" / "uploads" / "abc.jpeg").write_bytes(b"changed")
    with pytest.raises(SnapshotError, match=r"damaged: uploads/abc\.jpeg"):
        verify(tmp_path / "snap")
