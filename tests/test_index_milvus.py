"""What only the Milvus backend does, against a real server: collection names and layouts, filter expressions,
dropping, closing, write batches, the top-k limit and the command line on Milvus.

The behaviours every backend shares (exact answers, recall, filters, upserts, deletes, bad input, facets, ids)
are written once in tests/contract/, which runs them on this server as ``[milvus]`` (the same skip and
MILVUS_REQUIRED rule; tests/contract/conftest.py).

The whole module skips (one line, in about a second) when no server answers on MILVUS_URI (default
http://127.0.0.1:19530); MILVUS_REQUIRED=1 turns that skip into a failure. The server listens on every
interface, so it runs, with the tests, in a private network namespace that has only loopback:

    scripts/in-private-netns.sh bash -c 'scripts/milvus-server.sh start &&
        MILVUS_REQUIRED=1 .venv/bin/pytest tests/contract tests/test_index_milvus.py; rc=$?;
        scripts/milvus-server.sh stop; exit $rc'

Every test works in collections of its own (random names), dropped at the end.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from lookalike.errors import FilterError, IndexError_, VectorSizeError
from lookalike.index import IndexSettings, Item
from lookalike.index import milvus as milvus_module
from lookalike.index.filters import normalize
from lookalike.index.milvus import MilvusIndex, to_expression

MILVUS_URI = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")
REQUIRED = os.environ.get("MILVUS_REQUIRED") == "1"
KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]
DIM = 32
N = 600


def _unreachable(uri: str) -> str | None:
    """Why no Milvus server can be used at ``uri``, or None: a TCP probe of at most 1 s, then a real connection."""
    if milvus_module._IMPORT_ERROR is not None:
        return f"pymilvus is not installed (pip install -e '.[milvus]'): {milvus_module._IMPORT_ERROR}"
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 19530), timeout=1):
            pass
    except OSError as error:
        return f"no Milvus server at {uri} ({error}); see scripts/milvus-server.sh"
    try:
        MilvusIndex.exists(uri, "lookalike_probe", timeout=2)
    except IndexError_ as error:
        return f"the server at {uri} does not answer as Milvus: {error}"
    return None


_REASON = _unreachable(MILVUS_URI)
if _REASON is not None:
    if REQUIRED:
        pytest.fail(f"MILVUS_REQUIRED=1 but {_REASON}", pytrace=False)
    pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture(scope="module")
def milvus() -> str:
    return MILVUS_URI


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def new_index(milvus: str) -> Iterator[Callable[..., MilvusIndex]]:
    """Makes indexes in fresh collections and drops them all after the test."""
    made: list[MilvusIndex] = []

    def make(metric: str = "l2", kind: str = "exact", dim: int = 16, **settings: Any) -> MilvusIndex:
        index = MilvusIndex.create(
            milvus,
            unique_name(),
            IndexSettings(dim=dim, metric=metric, kind=kind, **settings),  # type: ignore[arg-type]
        )
        made.append(index)
        return index

    yield make
    for index in made:
        _drop(milvus, index.name)


def _drop(uri: str, name: str) -> None:
    """Drop through a connection of its own, whether or not the test closed its index."""
    if MilvusIndex.exists(uri, name):
        index = MilvusIndex.open(uri, name)
        index.drop()


# ----------------------------------------------------------------------------------------- helpers


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    assignment = rng.integers(0, clusters, size=n)
    vectors = centres[assignment] + spread * rng.normal(size=(n, dim))
    return vectors.astype(np.float32), assignment


def distances_to(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    vectors, query = vectors.astype(np.float64), np.asarray(query, dtype=np.float64)
    if metric == "l2":
        return np.sqrt(((vectors - query) ** 2).sum(axis=1))
    similarity = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return 1.0 - similarity


def brute_force(ids: list[str], vectors: np.ndarray, query: np.ndarray, metric: str, k: int) -> list[tuple[str, float]]:
    distances = distances_to(vectors, query, metric)
    order = np.argsort(distances, kind="stable")[:k]
    return [(ids[i], float(distances[i])) for i in order]


def random_items(n: int, dim: int = 16, seed: int = 0, prefix: str = "item") -> list[Item]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        Item(f"{prefix}-{i}", vectors[i], {"label": f"l{i % 5}", "i": i}, f"/img/{prefix}-{i}.jpg", f"h{i}")
        for i in range(n)
    ]


# ----------------------------------------------------------------------------------------- opening and closing


def test_drop_removes_the_collection_and_closes(milvus: str) -> None:
    """Creating, reopening and recovering the settings are the contract's (tests/contract/test_create.py)."""
    name = unique_name()
    index = MilvusIndex.create(milvus, name, IndexSettings(dim=24, metric="l2", kind="hnsw"))
    try:
        index.add(random_items(5, dim=24))
        assert index.search(np.ones(24), k=5, exact=True)
    finally:
        index.drop()
    assert not MilvusIndex.exists(milvus, name)
    with pytest.raises(IndexError_, match="no index"):
        MilvusIndex.open(milvus, name)
    with pytest.raises(IndexError_, match="closed"):
        index.count()


@pytest.mark.parametrize("name", ["with-dash", "1starts_with_digit", "", "has space", "ü", "x" * 256])
def test_bad_collection_names_are_refused(milvus: str, name: str) -> None:
    with pytest.raises(IndexError_, match="bad Milvus index name"):
        MilvusIndex.create(milvus, name, IndexSettings(dim=4))


@pytest.mark.parametrize("dim", [40_000])  # 0 and -3: tests/contract/test_create.py
def test_bad_dimension_is_refused(milvus: str, dim: int) -> None:
    name = unique_name()
    with pytest.raises(VectorSizeError):
        MilvusIndex.create(milvus, name, IndexSettings(dim=dim))
    assert not MilvusIndex.exists(milvus, name)


def test_a_foreign_collection_is_not_opened(milvus: str) -> None:
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections

    name = unique_name("foreign")
    connections.connect(alias=name, uri=milvus, timeout=5)
    try:
        schema = CollectionSchema(
            [
                FieldSchema("pk", DataType.INT64, is_primary=True),
                FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
            ],
            description="somebody else's",
        )
        Collection(name, schema, using=name)
        with pytest.raises(IndexError_, match="not a lookalike index"):
            MilvusIndex.open(milvus, name)
    finally:
        Collection(name, using=name).drop()
        connections.disconnect(name)


def test_a_collection_made_before_colours_opens_and_works(milvus: str) -> None:
    """The layout of the release before colour descriptors (no colour field): opened, written and read as
    ever, every colour None (2.3 cannot add a field to a collection)."""
    import json

    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections

    from lookalike.index.base import server_record

    name = unique_name("old")
    settings = IndexSettings(dim=16, metric="cosine", kind="exact")
    connections.connect(alias=name, uri=milvus, timeout=5)
    try:
        schema = CollectionSchema(
            [
                FieldSchema("item_id", DataType.VARCHAR, is_primary=True, max_length=512),
                FieldSchema("vector", DataType.FLOAT_VECTOR, dim=16),
                FieldSchema("location", DataType.VARCHAR, max_length=65_535),
                FieldSchema("content_hash", DataType.VARCHAR, max_length=65_535),
                FieldSchema("metadata", DataType.JSON),
            ],
            description=json.dumps({"lookalike": {"format": 1, "settings": server_record(settings)}}),
        )
        old = Collection(name, schema, using=name, shards_num=1)
        old.create_index("vector", {"index_type": "FLAT", "metric_type": "COSINE", "params": {}})
        index = MilvusIndex.open(milvus, name)
        items = random_items(5)
        items[0].colour = np.full(12, 1 / 12, dtype=np.float32)
        index.add(items)
        assert index.count() == 5 and index.search(items[0].vector, k=1)[0].id == items[0].id
        got = index.get(items[0].id)
        assert got is not None and got.colour is None and got.metadata == items[0].metadata
        assert index.colours([items[0].id, "missing"]) == {items[0].id: None, "missing": None}
        assert all(item.colour is None for batch in index.iter_items() for item in batch)
        index.drop()
    finally:
        connections.disconnect(name)
        _drop(milvus, name)


def test_unreachable_server_is_an_index_error() -> None:
    started = time.monotonic()
    with pytest.raises(IndexError_, match="cannot reach Milvus"):
        MilvusIndex.exists("http://127.0.0.1:1", "anything", timeout=1)
    assert time.monotonic() - started < 5


def test_closed_index_refuses_work_and_close_is_idempotent(new_index) -> None:
    index = new_index()
    index.add(random_items(3))
    index.close()
    index.close()
    for call in (index.count, index.content_hashes, lambda: index.search(np.ones(16), 1), lambda: index.get("x")):
        with pytest.raises(IndexError_, match="closed"):
            call()


# ----------------------------------------------------------------------------------------- exactness and recall


@pytest.mark.parametrize("kind", KINDS)
def test_k_above_the_top_k_limit_is_answered_by_brute_force(new_index, kind: str) -> None:
    """20000 is above Milvus's top-k limit (16384); k up to 1000 is the contract's (tests/contract/test_search.py)."""
    index = new_index("cosine", kind)
    items = random_items(25)
    index.add(items)
    query = np.ones(16, dtype=np.float32)
    truth = brute_force([i.id for i in items], np.stack([i.vector for i in items]), query, "cosine", 25)
    for exact in (False, True):
        results = index.search(query, k=20_000, exact=exact)
        assert sorted(r.id for r in results) == sorted(item.id for item in items)
        np.testing.assert_allclose([r.distance for r in results], [d for _, d in truth], atol=1e-5)


# ----------------------------------------------------------------------------------------- filtered search


def test_expressions_quote_values_safely() -> None:
    assert to_expression(normalize({"label": "Dress"})) == '(metadata["label"] == "Dress")'
    assert to_expression(normalize({"a": 'x" or item_id != "'})) == '(metadata["a"] == "x\\" or item_id != \\"")'
    assert to_expression(normalize({"a": "é\n"})) == '(metadata["a"] == "\\u00e9\\u000a")'
    assert to_expression(normalize({"a": [True, 1, 1.5, "1"]})) == (
        '(metadata["a"] == true or metadata["a"] == 1 or metadata["a"] == 1.5 or metadata["a"] == "1")'
    )
    assert to_expression(normalize({"a": ["x", "y"], "b": {"gte": 1, "lt": 2.5}})) == (
        '(metadata["a"] in ["x", "y"]) and (metadata["b"] >= 1.0 and metadata["b"] < 2.5)'
    )
    with pytest.raises(FilterError):
        normalize({"a": {"gt": float("inf")}})
    with pytest.raises(FilterError):
        normalize({"a": 2**70})
    assert to_expression(normalize(None)) == ""
    with pytest.raises(FilterError):
        to_expression(normalize({"a": "\ud800"}))


# ----------------------------------------------------------------------------------------- writes


# ----------------------------------------------------------------------------------------- bad input


# ----------------------------------------------------------------------------------------- durability


def test_save_close_and_reopen(milvus: str) -> None:
    name = unique_name()
    index = MilvusIndex.create(milvus, name, IndexSettings(dim=16, metric="l2", kind="hnsw"))
    try:
        items = random_items(50)
        index.add(items)
        index.save()
        index.save()  # nothing new: no flush
        index.close()
        reopened = MilvusIndex.open(milvus, name)
        assert reopened.count() == 50
        assert reopened.stats()["items"] == 50
        assert reopened.search(items[7].vector, k=1)[0].id == items[7].id
        reopened.close()
    finally:
        _drop(milvus, name)


def test_writes_go_in_bounded_batches(new_index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(milvus_module.rows, "WRITE_BATCH_BYTES", 2_000)  # a few rows per request
    index = new_index()
    items = random_items(45)
    index.add(items)
    assert index.count() == 45
    assert index.content_hashes() == {item.id: item.content_hash for item in items}


# ------------------------------------------------------------------------------- the command line


def test_cli_index_migrate_and_search_on_milvus(milvus: str, cache_dir, lite0, photo_folder: Path, tmp_path) -> None:
    """A user's path: index a folder on Milvus with --backend, migrate an embedded index there, same answers."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lookalike.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )

    direct, migrated = unique_name("cli"), unique_name("mig")
    server = ["--backend", "milvus", "--url", milvus]
    try:
        result = run("index", str(photo_folder), *server, "--name", direct, "--no-progress")
        assert result.returncode == 0, result.stderr
        assert "12 indexed" in result.stdout
        local = str(tmp_path / "local")
        assert run("index", str(photo_folder), "--index", local, "--no-progress").returncode == 0
        result = run(
            "migrate", "--index", local, "--to", "milvus", "--to-url", milvus, "--to-name", migrated, "--no-progress"
        )
        assert result.returncode == 0, result.stderr
        assert "12 copied" in result.stdout

        def top(*where: str) -> list[str]:
            answer = run("search", "tops/item-03.jpg", "--id", "-k", "5", "--exact", "--json", *where)
            assert answer.returncode == 0, answer.stderr
            return [hit["id"] for hit in json.loads(answer.stdout)["results"]]

        expected = top("--index", local)
        assert len(expected) == 5 and "tops/item-03.jpg" not in expected  # more like this leaves itself out
        assert top(*server, "--name", direct) == expected
        assert top(*server, "--name", migrated) == expected
        info = json.loads(run("info", *server, "--name", migrated, "--json").stdout)
        assert (info["model"], info["items"]) == ("efficientnet-lite0", 12)
    finally:
        for name in (direct, migrated):
            _drop(milvus, name)
