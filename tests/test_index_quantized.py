"""Quantized and trained structures of the embedded index: every setting keeps the index's guarantees.

The data is clustered and non-negative, like real CNN features (random Gaussian data would make every
approximate index look worse than it is on embeddings). Recall floors: measured on this data (64-d, 1,600
vectors, 40 clusters), every setting reaches >= 0.97 recall@10 against exact search; the floor of 0.9 leaves
room for FAISS's thread-order nondeterminism in training and graph building without letting a broken
structure (which gives ~0.1-0.5) through.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from lookalike.errors import IndexError_, VectorSizeError
from lookalike.index.base import IndexSettings, Item, refuse_unsupported
from lookalike.index.embedded import EmbeddedIndex, factory_string, training_size

DIM = 64
N = 1600
RECALL_FLOOR = 0.9
SETTINGS = {
    "hnsw-fp16": dict(kind="hnsw", encoding="fp16", hnsw_m=16, ef_construction=80, ef_search=64),
    "hnsw-sq8": dict(kind="hnsw", encoding="sq8", hnsw_m=16, ef_construction=80, ef_search=64),
    "exact-sq8": dict(kind="exact", encoding="sq8"),
    "ivf-sq8": dict(kind="ivf", encoding="sq8", ivf_lists=16, nprobe=6),
    "ivf-pq": dict(kind="ivf", encoding="pq", ivf_lists=16, nprobe=6, pq_m=16, pq_bits=4, rerank=8),
    "hnsw-sq8-no-rescoring": dict(kind="hnsw", encoding="sq8", hnsw_m=16, ef_construction=80, ef_search=64, rerank=0),
    "pca-hnsw": dict(kind="hnsw", reduce_dim=32, hnsw_m=16, ef_construction=80, ef_search=64, rerank=4),
    "pca-hnsw-sq8-sq8-store": dict(
        kind="hnsw", reduce_dim=32, encoding="sq8", hnsw_m=16, ef_construction=80, rerank=4, rerank_encoding="sq8"
    ),
    "ivf-pq-fp16-store": dict(
        kind="ivf", encoding="pq", ivf_lists=16, nprobe=6, pq_m=16, pq_bits=4, rerank=8, rerank_encoding="fp16"
    ),
}


def clustered(n: int, seed: int, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).gamma(1.0, 1.0, (clusters, DIM)).astype(np.float32)
    which = rng.integers(0, clusters, n)
    return np.maximum(centres[which] + rng.normal(0, 0.35, (n, DIM)).astype(np.float32), 0)


def items(vectors: np.ndarray, start: int = 0) -> list[Item]:
    return [
        Item(f"item-{start + i}", v, {"label": f"c{(start + i) % 7}", "n": start + i}, f"/img/{start + i}.jpg")
        for i, v in enumerate(vectors)
    ]


def exact_ids(index: EmbeddedIndex, query: np.ndarray, k: int = 10) -> list[str]:
    return [r.id for r in index.search(query, k, exact=True)]


def recall(index: EmbeddedIndex, queries: np.ndarray, k: int = 10) -> float:
    hits = sum(
        len({r.id for r in index.search(q, k)} & set(exact_ids(index, q, k)))
        for q in queries  # exact=True is brute force over the float store
    )
    return hits / (k * len(queries))


def brute_force_ids(vectors: np.ndarray, query: np.ndarray, k: int = 10) -> list[str]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    return [f"item-{i}" for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(N, seed=1), clustered(60, seed=2)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_setting_lifecycle(tmp_path, data, name):
    vectors, queries = data
    settings = IndexSettings(dim=DIM, **SETTINGS[name])
    index = EmbeddedIndex.create(tmp_path / "ix", settings)
    for start in range(0, N, 400):
        index.add(items(vectors[start : start + 400], start))

    # Before the first checkpoint a trained structure is still staging: brute force, so exact answers.
    needs_training = training_size(settings) > 0
    assert index.stats()["trained"] is not needs_training
    if needs_training:
        assert [r.id for r in index.search(queries[0], 10)] == brute_force_ids(vectors, queries[0])
    index.save()
    stats = index.stats()
    assert stats["trained"] is True and stats["vectors_in_graph"] == N
    assert factory_string(settings) in stats["structure"]

    # exact=True is float brute force: the same ids as NumPy over the true vectors, exact cosine scores.
    for query in queries[:5]:
        assert exact_ids(index, query) == brute_force_ids(vectors, query)
    top = index.search(queries[0], 10)
    true = vectors[[int(r.id.split("-")[1]) for r in top]]
    cosines = true @ queries[0] / np.linalg.norm(true, axis=1) / np.linalg.norm(queries[0])
    # re-scored with float vectors: exact; without re-scoring the 8-bit codes' distances are within ~1 %
    np.testing.assert_allclose([r.score for r in top], cosines, atol=1e-4 if settings.rerank else 1e-2)
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    measured = recall(index, queries)
    print(f"{name}: recall@10 {measured:.3f}")
    assert measured >= RECALL_FLOOR, f"{name}: recall@10 {measured:.3f}"
    before = [[r.id for r in index.search(q, 10)] for q in queries[:10]]
    index.close()

    # Reopen memory-mapped (the default) and in memory: the same answers.
    for mmap in (True, False):
        with EmbeddedIndex.open(tmp_path / "ix", mmap=mmap) as reopened:
            assert reopened.stats()["memory_mapped"] is mmap
            assert [[r.id for r in reopened.search(q, 10)] for q in queries[:10]] == before

    # Upsert and delete on a mapped index: no rebuild (the structure grows by one, the old vector is masked).
    index = EmbeddedIndex.open(tmp_path / "ix")
    moved = queries[1] * 1.01
    index.add([Item("item-5", moved, {"label": "moved"}, "/img/5b.jpg")])
    assert index.search(queries[1], 1)[0].id == "item-5"
    assert index.get("item-5").metadata == {"label": "moved"}
    stats = index.stats()
    assert (stats["vectors_in_graph"], stats["dead_vectors"], stats["memory_mapped"]) == (N + 1, 1, False)
    assert index.delete(["item-6", "item-7", "never-there"]) == 2
    assert all(r.id not in ("item-6", "item-7") for q in [vectors[6], vectors[7]] for r in index.search(q, 10))
    assert index.count() == N - 2

    # Filters: every hit matches, and k hits come back when k items match (graph or brute force).
    for flt in ({"label": "c3"}, {"n": {"lt": 50}}, {"label": ["c1", "c2"], "n": {"gte": 1000}}):
        hits = index.search(queries[2], 10, filter=flt)
        assert len(hits) == 10
        for hit in hits:
            if "label" in flt:
                assert hit.metadata["label"] in (flt["label"] if isinstance(flt["label"], list) else [flt["label"]])
            if "n" in flt:
                bound = flt["n"]
                assert hit.metadata["n"] < bound.get("lt", 10**9) and hit.metadata["n"] >= bound.get("gte", -1)
    index.close()

    # Writes survive a reopen, and the checkpoint did not need a rebuild to get there.
    with EmbeddedIndex.open(tmp_path / "ix") as reopened:
        assert reopened.count() == N - 2 and reopened.get("item-6") is None
        assert reopened.search(queries[1], 1)[0].id == "item-5"
        assert reopened.settings == settings


def test_incremental_index_trains_at_the_checkpoint_that_has_enough(tmp_path, data):
    vectors, queries = data
    settings = IndexSettings(dim=DIM, kind="ivf", encoding="fp16", ivf_lists=16, nprobe=16)
    assert training_size(settings) == 39 * 16
    index = EmbeddedIndex.create(tmp_path / "ix", settings)
    index.add(items(vectors[:300]))
    index.save()  # too few to train: stays a float staging index, persisted as such
    assert index.stats()["trained"] is False
    index.close()
    index = EmbeddedIndex.open(tmp_path / "ix")
    assert index.stats()["trained"] is False and index.stats()["memory_mapped"] is True  # no rebuild on open
    assert [r.id for r in index.search(queries[0], 10)] == brute_force_ids(vectors[:300], queries[0])
    index.add(items(vectors[300:1000], 300))
    index.close()  # the checkpoint at close trains on what is there, and adds everything
    with EmbeddedIndex.open(tmp_path / "ix") as index:
        assert index.stats()["trained"] is True and index.count() == 1000
        index.add(items(vectors[1000:1200], 1000))  # later adds go into the trained structure
        assert recall(index, queries[:20]) >= RECALL_FLOOR


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (dict(encoding="pq", pq_m=10), "pq_m"),
        (dict(encoding="int4"), "encoding"),
        (dict(kind="annoy"), "kind"),
        (dict(reduce_dim=DIM), "reduce_dim"),
        (dict(kind="ivf", ivf_lists=8, nprobe=9), "nprobe"),
        (dict(rerank=-1), "rerank"),
        (dict(encoding="pq", pq_m=8, pq_bits=12), "pq_bits"),
        (dict(metric="dot"), "metric"),
        (dict(encoding="sq8", rerank_encoding="pq"), "rerank_encoding"),
        (dict(kind="hnsw", rerank_encoding="sq8"), "rerank_encoding needs a lossy structure"),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path, change, named):
    with pytest.raises(IndexError_, match=named):
        EmbeddedIndex.create(tmp_path / "ix", IndexSettings(dim=DIM, **change))
    assert not (tmp_path / "ix").exists()


def test_bad_vectors_change_nothing(tmp_path, data):
    vectors, _ = data
    index = EmbeddedIndex.create(tmp_path / "ix", IndexSettings(dim=DIM, kind="hnsw", encoding="sq8"))
    index.add(items(vectors[:1200]))
    index.save()
    bad = [*items(vectors[1200:1210], 1200), Item("wrong", np.ones(DIM + 1, dtype=np.float32))]
    with pytest.raises(VectorSizeError, match="65-d"):
        index.add(bad)
    with pytest.raises(VectorSizeError):
        index.search(np.ones(DIM - 1, dtype=np.float32))
    assert index.count() == 1200 and index.stats()["vectors_in_graph"] == 1200
    index.close()


def test_old_settings_json_without_the_new_fields_still_opens(tmp_path, data):
    vectors, queries = data
    index = EmbeddedIndex.create(tmp_path / "ix", IndexSettings(dim=DIM, kind="hnsw"))
    index.add(items(vectors[:300]))
    index.close()
    connection = sqlite3.connect(tmp_path / "ix" / "index.sqlite")
    old = {"dim": DIM, "metric": "cosine", "kind": "hnsw", "hnsw_m": 32, "ef_construction": 200, "ef_search": 128}
    with connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps({**old, "embedding": {}}),))
    connection.close()
    with EmbeddedIndex.open(tmp_path / "ix") as index:
        assert index.settings.encoding == "none" and index.settings.reduce_dim == 0 and not index.settings.is_lossy()
        assert [r.id for r in index.search(queries[0], 10)] == brute_force_ids(vectors[:300], queries[0])


def test_rebuild_changes_the_structure_from_sqlite(tmp_path, data):
    vectors, queries = data
    index = EmbeddedIndex.create(tmp_path / "ix", IndexSettings(dim=DIM, kind="hnsw"))
    index.add(items(vectors[:1500]))
    index.close()
    settings = IndexSettings(dim=DIM, **SETTINGS["ivf-sq8"])
    with EmbeddedIndex.rebuild(tmp_path / "ix", settings) as rebuilt:
        assert rebuilt.settings == settings and rebuilt.stats()["trained"] is True and rebuilt.count() == 1500
        assert recall(rebuilt, queries[:20]) >= RECALL_FLOOR
    with pytest.raises(IndexError_, match="dim, metric and model"):
        EmbeddedIndex.rebuild(tmp_path / "ix", replace(settings, metric="l2"))


def test_rebuild_of_query_time_settings_keeps_the_structure(tmp_path, data):
    vectors, queries = data
    settings = IndexSettings(dim=DIM, **SETTINGS["ivf-sq8"])
    with EmbeddedIndex.create(tmp_path / "ix", settings) as index:
        index.add(items(vectors[:1500]))
    checkpoint = tmp_path / "ix" / "vectors.faiss"
    written = checkpoint.stat().st_mtime_ns
    wider = replace(settings, nprobe=16, rerank=3)
    with EmbeddedIndex.rebuild(tmp_path / "ix", wider) as changed:
        assert changed.settings == wider and changed.stats()["trained"] is True
        assert checkpoint.stat().st_mtime_ns == written  # neither retrained nor rewritten
        assert recall(changed, queries[:20]) >= RECALL_FLOOR
    with EmbeddedIndex.rebuild(tmp_path / "ix", replace(wider, ivf_lists=32)) as rebuilt:
        assert checkpoint.stat().st_mtime_ns != written and rebuilt.count() == 1500


def test_l2_metric_with_quantization(tmp_path, data):
    vectors, queries = data
    settings = IndexSettings(dim=DIM, metric="l2", **SETTINGS["hnsw-sq8"])
    with EmbeddedIndex.create(tmp_path / "ix", settings) as index:
        index.add(items(vectors[:1500]))
        index.save()
        hit = index.search(queries[0], 1)[0]
        true = np.linalg.norm(vectors[int(hit.id.split("-")[1])] - queries[0])
        assert hit.distance == pytest.approx(true, rel=1e-4)
        assert recall(index, queries[:20]) >= RECALL_FLOOR


def test_server_backends_refuse_embedded_only_settings():
    for change, named in (
        (dict(encoding="sq8"), "encoding"),
        (dict(kind="ivf"), "kind"),
        (dict(reduce_dim=8), "reduce"),
    ):
        for backend in ("OpenSearch", "Milvus"):
            with pytest.raises(IndexError_, match=f"{backend} does not support {named}"):
                refuse_unsupported(IndexSettings(dim=DIM, **change), backend)
    refuse_unsupported(IndexSettings(dim=DIM, kind="exact"), "Milvus")  # the defaults pass


def test_opensearch_create_refuses_before_connecting():
    from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

    with pytest.raises(IndexError_, match="encoding"):
        OpenSearchIndex.create(
            OpenSearchConfig.from_url("http://127.0.0.1:9"), "x", IndexSettings(dim=8, encoding="pq")
        )


def test_milvus_create_refuses_before_connecting():
    pytest.importorskip("pymilvus")
    from lookalike.index.milvus import MilvusIndex

    with pytest.raises(IndexError_, match="reduce_dim"):
        MilvusIndex.create("http://127.0.0.1:9", "x", IndexSettings(dim=8, reduce_dim=4))


def test_server_backends_record_only_what_they_honour():
    from lookalike.index.base import SERVER_FIELDS, server_record

    record = server_record(IndexSettings(dim=8, embedding={"model": "m"}))
    assert set(record) == set(SERVER_FIELDS) and record["embedding"] == {"model": "m"}
    assert IndexSettings(**record) == IndexSettings(dim=8, embedding={"model": "m"})  # reopens with the defaults


def test_a_quantized_rescoring_store_shrinks_the_checkpoint_and_keeps_exact_scores(tmp_path, data):
    """``rerank_encoding="sq8"`` stores d bytes a vector instead of 4·d; the final k are re-scored from SQLite."""
    vectors, queries = data
    float_store = IndexSettings(dim=DIM, kind="hnsw", encoding="sq8", hnsw_m=16, ef_construction=80, rerank=3)
    with EmbeddedIndex.create(tmp_path / "float", float_store) as index:
        index.add(items(vectors))
    sq8_store = replace(float_store, rerank_encoding="sq8")
    with EmbeddedIndex.create(tmp_path / "sq8", sq8_store) as index:
        index.add(items(vectors))
    sizes = {name: (tmp_path / name / "vectors.faiss").stat().st_size for name in ("float", "sq8")}
    assert sizes["float"] - sizes["sq8"] == pytest.approx(3 * DIM * N, rel=0.02)  # 4 bytes a value -> 1
    with EmbeddedIndex.open(tmp_path / "sq8") as index:
        assert index.stats()["structure"] == "IndexRefine(HNSW16,SQ8; store SQ8)"
        for query in queries[:10]:
            hits = index.search(query, 10)
            true = vectors[[int(hit.id.split("-")[1]) for hit in hits]]
            cosines = true @ query / np.linalg.norm(true, axis=1) / np.linalg.norm(query)
            np.testing.assert_allclose([hit.score for hit in hits], cosines, atol=1e-5)  # float, not 8-bit, scores
            assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
        assert recall(index, queries) >= RECALL_FLOOR


def test_rebuild_swaps_the_rescoring_store(tmp_path, data):
    """The store's encoding is part of the structure: a checkpoint with a float store is not reused for sq8."""
    vectors, queries = data
    settings = IndexSettings(dim=DIM, **SETTINGS["hnsw-sq8"])
    with EmbeddedIndex.create(tmp_path / "ix", settings) as index:
        index.add(items(vectors))
    before = (tmp_path / "ix" / "vectors.faiss").stat().st_size
    with EmbeddedIndex.rebuild(tmp_path / "ix", replace(settings, rerank_encoding="sq8")) as rebuilt:
        assert rebuilt.stats()["structure"].endswith("store SQ8)")
        assert recall(rebuilt, queries[:20]) >= RECALL_FLOOR
    assert (tmp_path / "ix" / "vectors.faiss").stat().st_size < before - 2 * DIM * N
    with EmbeddedIndex.rebuild(tmp_path / "ix", settings) as back:
        assert back.stats()["structure"] == "IndexRefineFlat(HNSW16,SQ8)"
        assert [r.id for r in back.search(queries[0], 10, exact=True)] == brute_force_ids(vectors, queries[0])
