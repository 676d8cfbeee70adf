"""Crashes: ``lookalike index`` SIGKILLed 20+ times at random points over one catalogue and resumed each time
ends with the same index as a clean run; deletes, compaction and checkpoint writes killed at chosen points
lose nothing committed and leave nothing half-written.

The random kill points come from a seeded generator: the seed is printed (and in every assertion message);
``LOOKALIKE_CRASH_SEED=N`` replays a run's choices (the timing of a machine cannot be replayed exactly).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import make_photo

from lookalike.index.embedded import FAISS_NAME, SQLITE_NAME, EmbeddedIndex

SEED = int(os.environ.get("LOOKALIKE_CRASH_SEED", "20261125"))
CATALOGUE_SIZE = 120
KILLS = 24
MID_INGEST_KILLS = 20
CLI = [sys.executable, "-m", "lookalike.cli"]
INDEX_ARGS = ["--batch-size", "2", "--workers", "1", "--checkpoint-every", "6", "--no-progress"]

# Runs the CLI with SIGKILL wired to one chosen point inside it (argv: POINT, then the CLI's arguments); with
# KILL_AT_CALL=N the checkpoint points fire on the N-th checkpoint write rather than the first.
KILL_AT = """
import os, signal, sys
import faiss
from lookalike.index.embedded import EmbeddedIndex

point, sys.argv = sys.argv[1], ["lookalike", *sys.argv[2:]]
calls = {"n": 0}

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def nth_call():
    calls["n"] += 1
    return calls["n"] == int(os.environ.get("KILL_AT_CALL", "1"))

if point == "before-commit":      # inside the delete transaction, before it commits
    EmbeddedIndex._vids_of = die
elif point == "after-commit":     # committed in SQLite; memory and checkpoint not yet updated
    EmbeddedIndex._mark_dead = die
elif point == "mid-compaction":   # the FAISS structure half rebuilt from SQLite
    iter_vectors = EmbeddedIndex._iter_vectors
    def half(self, batch_size=10_000):
        for number, batch in enumerate(iter_vectors(self, batch_size=7)):
            if number == 3:
                die()
            yield batch
    EmbeddedIndex._iter_vectors = half
elif point == "torn-checkpoint":  # the new checkpoint half written to its temporary file
    write_index = faiss.write_index
    def torn(index, name):
        write_index(index, name)
        if nth_call():
            with open(name, "r+b") as handle:
                handle.truncate(os.path.getsize(name) // 2)
            die()
    faiss.write_index = torn
elif point in ("before-rename", "creating"):  # a file written whole, not yet renamed into place
    replace = os.replace
    def interrupted(source, destination):
        name = os.path.basename(destination)
        if (point == "creating" and name == "index.sqlite") or (name == "vectors.faiss" and nth_call()):
            die()
        return replace(source, destination)
    os.replace = interrupted
else:
    raise SystemExit("unknown kill point " + point)

from lookalike.cli import main
main()
"""


def env_for(cache_dir: Path) -> dict[str, str]:
    return dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    root = tmp_path / "catalogue"
    for seed in range(CATALOGUE_SIZE):
        folder = root / ("tops", "shoes", "bags")[seed % 3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))
    return root


@dataclass
class DiskState:
    rows: dict[str, tuple]  # id -> (location, content_hash, metadata, vector bytes)
    vids: dict[str, int]
    checkpoint_vids: np.ndarray | None


def read_state(index_path: Path) -> DiskState:
    """What is on disk, read directly: SQLite's rows and the FAISS checkpoint's vids."""
    with contextlib.closing(sqlite3.connect(index_path / SQLITE_NAME)) as db:
        rows = db.execute("SELECT id, vid, location, content_hash, metadata, vector FROM items").fetchall()
    checkpoint = None
    if (index_path / FAISS_NAME).is_file():
        wrapper = faiss.read_index(str(index_path / FAISS_NAME))  # kept alive: it owns the id map read next
        checkpoint = faiss.vector_to_array(wrapper.id_map).astype(np.int64)
    return DiskState({r[0]: r[2:] for r in rows}, {r[0]: r[1] for r in rows}, checkpoint)


def committed_count(index_path: Path) -> int | None:
    """Rows committed so far, read by another connection (read-only: never creates the file)."""
    try:
        uri = f"{(index_path / SQLITE_NAME).resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:
        return None


def assert_opens_consistent(index_path: Path, context: str) -> None:
    """Open (a copy of) the index as a reader would: every row is in the graph once and found by its vector;
    after a clean close the checkpoint holds every row's vector exactly once."""
    copy = index_path.parent / f"{index_path.name}-check"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index_path, copy)  # the crashed state as is, so checking it does not change it
    state = read_state(copy)
    index = EmbeddedIndex.open(copy)
    try:
        stats = index.stats()
        assert stats["items"] == len(state.rows), context
        assert stats["vectors_in_graph"] - stats["dead_vectors"] == len(state.rows), (stats, context)
        for item_id, row in state.rows.items():
            vector = np.frombuffer(row[3], dtype=np.float32)
            assert item_id in [r.id for r in index.search(vector, k=3)], (item_id, context)
            assert index.search(vector, k=1, exact=True)[0].score > 0.9999, (item_id, context)
    finally:
        index.close()
    after = read_state(copy)
    assert after.checkpoint_vids is not None, context
    assert np.unique(after.checkpoint_vids).size == after.checkpoint_vids.size, f"doubled vectors ({context})"
    assert set(after.vids.values()) <= set(after.checkpoint_vids.tolist()), f"rows missing from FAISS ({context})"
    shutil.rmtree(copy)


def assert_same_index(actual: Path, expected: Path, context: str) -> None:
    """Same ids, no duplicates, no orphans, same metadata, bit-identical vectors.

    Bit-identical holds because ONNX Runtime on one machine computes each image's features the same way
    whatever the batch it is in (measured: batch sizes 2 to 32, resumed or not, give equal bytes)."""
    got, want = read_state(actual), read_state(expected)
    assert sorted(got.rows) == sorted(want.rows), context
    assert len(set(got.vids.values())) == len(got.vids), f"duplicate vids ({context})"
    for item_id, row in want.rows.items():
        assert got.rows[item_id][:3] == row[:3], (item_id, context)  # location, content hash, metadata
        assert got.rows[item_id][3] == row[3], f"{item_id}: vector differs ({context})"
    assert got.checkpoint_vids is not None and sorted(got.checkpoint_vids.tolist()) == sorted(got.vids.values()), (
        f"the checkpoint's vectors are not exactly the rows' ({context})"
    )


def test_ingest_killed_at_random_points_ends_like_a_clean_run(catalogue: Path, tmp_path: Path, lite0, cache_dir):
    rng = random.Random(SEED)
    print(f"crash seed: LOOKALIKE_CRASH_SEED={SEED}")
    env = env_for(cache_dir)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    run = subprocess.run(
        [*CLI, "index", str(catalogue), "--index", str(clean), *INDEX_ARGS], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    # Kill points are drawn on this machine's time scale: a batch takes about this long to embed and commit.
    batch_seconds = 2 / float(re.search(r"\(([\d.]+) images/s\)", run.stdout).group(1))
    order = sorted(read_state(clean).rows)  # the source's order, which ingest commits in

    kills: list[tuple] = []
    kills_while_writing, runs, startups = 0, 0, [0.5]
    command = [*CLI, "index", str(catalogue), "--index", str(crashed), *INDEX_ARGS]
    while kills_while_writing < MID_INGEST_KILLS or len(kills) < KILLS:
        runs += 1
        assert runs < 4 * KILLS, f"the ingest kept finishing before it could be killed: {kills} (seed {SEED})"
        before = committed_count(crashed) or 0
        log = tmp_path / f"run-{runs}.log"
        spawned = time.monotonic()
        with open(log, "w") as stderr:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        if before < CATALOGUE_SIZE and rng.random() < 0.8:
            # While writing: once this run has committed its first batch, then within the next batch or two.
            deadline = spawned + 120
            while process.poll() is None and (committed_count(crashed) or 0) <= before:
                assert time.monotonic() < deadline, f"no progress (seed {SEED})"
                time.sleep(0.005)
            startups.append(time.monotonic() - spawned)  # the first commit came this long after the start
            point = ("writing", round(rng.uniform(0, 1.5 * batch_seconds), 3))
        else:  # anywhere before the first commit: imports, loading the model, opening and reconciling the index
            point = ("starting", round(rng.uniform(0, min(startups[-3:])), 3))
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=point[1])  # returns early if the run finished by itself
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            after = committed_count(crashed)
            kills.append((*point, before, after))
            kills_while_writing += point[0] == "writing" and (after or 0) < CATALOGUE_SIZE
            context = f"seed {SEED}, kill {len(kills)} at {point}, rows {before} -> {after}"
            if after is not None:  # else killed before the index existed
                ids = sorted(read_state(crashed).rows)
                assert ids == sorted(order[: len(ids)]), f"not a committed state: a hole in the ids ({context})"
                if len(kills) % 5 == 0:
                    assert_opens_consistent(crashed, context)
        else:
            assert process.returncode == 0, f"run {runs} failed: {log.read_text()} (seed {SEED})"
            assert committed_count(crashed) == CATALOGUE_SIZE, f"run {runs} finished early (seed {SEED})"
            break  # the catalogue is done: what remains to check is that it is right
    print(f"{len(kills)} kills in {runs} runs, {kills_while_writing} while rows were being written: {kills}")
    assert len(kills) >= KILLS and kills_while_writing >= MID_INGEST_KILLS, (
        f"too few kills landed: {kills} (seed {SEED}; the ingest outran the kills)"
    )

    final = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=300)
    assert f", 0 failed, of {CATALOGUE_SIZE}" in final.stdout, final.stdout
    assert_same_index(crashed, clean, f"seed {SEED}, kills {kills}")
    assert_opens_consistent(crashed, f"seed {SEED}")


def _delete_ids(index_path: Path) -> list[str]:
    ids = sorted(read_state(index_path).rows)
    return random.Random(SEED).sample(ids, 40)  # 40 % dead: the close compacts


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory, lite0, cache_dir) -> Path:
    """A finished 100-item index, copied by the tests that kill writes to it."""
    root = tmp_path_factory.mktemp("kill-points")
    catalogue = root / "catalogue"
    catalogue.mkdir()
    for seed in range(100):
        (catalogue / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))
    index = root / "index"
    subprocess.run(
        [*CLI, "index", str(catalogue), "--index", str(index), "--no-progress"], env=env_for(cache_dir), check=True
    )
    return index


@pytest.mark.parametrize(
    "point, committed",
    [
        ("before-commit", False),
        ("after-commit", True),
        ("mid-compaction", True),
        ("torn-checkpoint", True),
        ("before-rename", True),
    ],
)
def test_delete_killed_at_each_point_is_all_or_nothing(built_index: Path, tmp_path: Path, point, committed, cache_dir):
    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    doomed = _delete_ids(index)
    before = read_state(index)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT, point, "delete", *doomed, "--index", str(index)],
        env=env_for(cache_dir),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
    after = read_state(index)
    expected = set(before.rows) - set(doomed) if committed else set(before.rows)
    assert set(after.rows) == expected, point
    assert all(after.rows[i] == before.rows[i] for i in expected), point  # survivors untouched
    assert_opens_consistent(index, point)

    # Finishing the job (the same delete again, uninterrupted) gives what an uninterrupted delete gives.
    clean = tmp_path / "clean"
    shutil.copytree(built_index, clean)
    for target in (index, clean):
        subprocess.run([*CLI, "delete", *doomed, "--index", str(target)], env=env_for(cache_dir), capture_output=True)
    assert_same_index(index, clean, point)
    index_handle = EmbeddedIndex.open(index)
    try:
        gone = np.frombuffer(before.rows[doomed[0]][3], dtype=np.float32)
        assert doomed[0] not in [r.id for r in index_handle.search(gone, k=10)]
        assert index_handle.stats()["dead_vectors"] == 0  # compacted
    finally:
        index_handle.close()


@pytest.mark.parametrize("point", ["creating", "torn-checkpoint", "before-rename"])
def test_ingest_killed_while_creating_or_checkpointing_resumes(tmp_path: Path, point, lite0, cache_dir) -> None:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for seed in range(12):
        (catalogue / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))
    index = tmp_path / "index"
    args = ["index", str(catalogue), "--index", str(index), "--batch-size", "4", "--checkpoint-every", "4"]
    env = dict(env_for(cache_dir), KILL_AT_CALL="2")  # the first checkpoint with vectors in it, not the empty one
    killed = subprocess.run([sys.executable, "-c", KILL_AT, point, *args], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
    if point == "creating":
        assert not (index / SQLITE_NAME).exists()  # no half-made index that would refuse to open
    resumed = subprocess.run([*CLI, *args, "--no-progress"], env=env_for(cache_dir), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    state = read_state(index)
    assert len(state.rows) == 12
    assert sorted(state.checkpoint_vids.tolist()) == sorted(state.vids.values())
    assert_opens_consistent(index, point)
