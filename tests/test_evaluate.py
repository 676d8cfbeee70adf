"""Retrieval quality: leave-one-out same-label precision and recall of approximate against exact search."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.evaluate import recall_against_exact, same_label_precision
from lookalike.index import EmbeddedIndex, IndexSettings, Item

KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]


def build(path: Path, vectors: np.ndarray, metadata: list[dict[str, Any]], kind: str, metric: str) -> EmbeddedIndex:
    index = EmbeddedIndex.create(path, IndexSettings(dim=vectors.shape[1], metric=metric, kind=kind))
    index.add([Item(f"i{n}", v, m) for n, (v, m) in enumerate(zip(vectors, metadata, strict=True))])
    return index


def separated_clusters(clusters: int, per_cluster: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters far apart (and in different directions, so cosine separates them too)."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.linalg.qr(rng.normal(size=(dim, dim)))[0][:clusters]  # orthogonal directions
    assignment = np.repeat(np.arange(clusters), per_cluster)
    vectors = centres[assignment] + 0.2 * rng.normal(size=(len(assignment), dim))
    return vectors.astype(np.float32), assignment


@pytest.fixture
def clustered_index(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmbeddedIndex]:
    kind, metric = request.param
    vectors, assignment = separated_clusters(8, 30, 16, seed=0)
    index = build(tmp_path / "i", vectors, [{"label": f"c{c}"} for c in assignment], kind, metric)
    yield index
    index.close()


@pytest.mark.parametrize(
    "clustered_index", [(k, m) for k in KINDS for m in METRICS], indirect=True, ids=lambda p: "-".join(p)
)
@pytest.mark.parametrize("exact", [True, False])
def test_precision_is_perfect_on_separated_labelled_clusters(clustered_index: EmbeddedIndex, exact: bool) -> None:
    report = same_label_precision(clustered_index, k_values=(1, 10), exact=exact)
    assert report.precision == {1: 1.0, 10: 1.0}
    assert report.queries == 240
    assert report.k_values == (1, 10)
    assert report.exact is exact


@pytest.mark.parametrize("kind", KINDS)
def test_precision_with_random_labels_is_chance(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    labels = rng.integers(0, 4, size=600)
    index = build(tmp_path / "i", vectors, [{"label": f"l{x}"} for x in labels], kind, "l2")
    report = same_label_precision(index, k_values=(1, 10), exact=False)
    assert report.queries == 600
    assert report.precision[10] == pytest.approx(0.25, abs=0.04)
    assert report.precision[1] == pytest.approx(0.25, abs=0.07)
    index.close()


def test_the_query_item_itself_never_counts(tmp_path: Path) -> None:
    vectors, _ = separated_clusters(12, 1, 16, seed=2)
    index = build(tmp_path / "i", vectors, [{"label": f"only-{n}"} for n in range(12)], "exact", "l2")
    report = same_label_precision(index, k_values=(1, 5, 10))
    assert report.precision == {1: 0.0, 5: 0.0, 10: 0.0}
    assert report.queries == 12
    index.close()


@pytest.mark.parametrize("kind", KINDS)
def test_leave_one_out_counts_only_the_twin(tmp_path: Path, kind: str) -> None:
    """Pairs of near-identical items sharing a label: the twin is the one same-label neighbour, never itself."""
    base, _ = separated_clusters(15, 1, 16, seed=3)
    vectors = np.repeat(base, 2, axis=0) + 0.01 * np.random.default_rng(4).normal(size=(30, 16)).astype(np.float32)
    metadata = [{"label": f"pair-{n // 2}"} for n in range(30)]
    index = build(tmp_path / "i", vectors.astype(np.float32), metadata, kind, "cosine")
    report = same_label_precision(index, k_values=(1, 2, 10))
    assert report.precision[1] == pytest.approx(1.0)
    assert report.precision[2] == pytest.approx(0.5)
    assert report.precision[10] == pytest.approx(0.1)
    index.close()


def test_duplicate_vectors_do_not_hide_the_neighbour(tmp_path: Path) -> None:
    """Exact duplicates tie with the query item itself: whichever comes first, the other still counts."""
    base, _ = separated_clusters(10, 1, 16, seed=5)
    vectors = np.repeat(base, 2, axis=0)
    index = build(tmp_path / "i", vectors, [{"label": f"pair-{n // 2}"} for n in range(20)], "exact", "l2")
    assert same_label_precision(index, k_values=(1,)).precision == {1: pytest.approx(1.0)}
    index.close()


def test_ignore_labels_and_unlabelled_items(tmp_path: Path) -> None:
    vectors, assignment = separated_clusters(4, 20, 16, seed=6)
    metadata: list[dict[str, Any]] = []
    for n, cluster in enumerate(assignment):
        if n % 10 == 0:
            metadata.append({})  # no label at all
        elif n % 10 == 1:
            metadata.append({"label": None})
        elif cluster == 3:
            metadata.append({"label": "unknown"})
        elif cluster == 2:
            metadata.append({"label": 7})  # a number: ignore_labels compares its text
        else:
            metadata.append({"label": f"c{cluster}"})
    index = build(tmp_path / "i", vectors, metadata, "exact", "l2")
    labelled = sum(1 for m in metadata if m.get("label") is not None)
    assert same_label_precision(index).queries == labelled == 64
    report = same_label_precision(index, ignore_labels=["unknown"])
    assert report.queries == 48
    report = same_label_precision(index, ignore_labels=["unknown", "7"])
    assert report.queries == 32
    report = same_label_precision(index, ignore_labels={"c0", "c1", "7", "unknown"})
    assert report.queries == 0
    assert report.precision == {1: 0.0, 10: 0.0}
    # Another label field altogether.
    assert same_label_precision(index, label_field="colour").queries == 0
    index.close()


def test_sample_limits_the_queries(tmp_path: Path) -> None:
    vectors, assignment = separated_clusters(6, 25, 16, seed=7)
    rng = np.random.default_rng(8)
    metadata = [{"label": f"c{c}" if rng.random() < 0.8 else f"x{rng.integers(3)}"} for c in assignment]
    index = build(tmp_path / "i", vectors, metadata, "hnsw", "l2")
    calls: list[int] = []
    search = index.search
    index.search = lambda *a, **kw: (calls.append(1), search(*a, **kw))[1]  # type: ignore[method-assign]

    report = same_label_precision(index, k_values=(1, 5), sample=25, seed=3)
    assert report.queries == 25
    assert len(calls) == 25
    assert same_label_precision(index, k_values=(1, 5), sample=25, seed=3) == report  # the seed fixes the sample
    assert same_label_precision(index, sample=10_000).queries == 150  # more than there are: all of them
    full = same_label_precision(index, k_values=(1, 5))
    assert full.queries == 150
    assert 0.0 < full.precision[5] < 1.0
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_recall_against_exact_is_one_on_an_exact_index(tmp_path: Path, metric: str) -> None:
    vectors = np.random.default_rng(9).normal(size=(500, 24)).astype(np.float32)
    index = build(tmp_path / "i", vectors, [{}] * 500, "exact", metric)
    assert recall_against_exact(index, k=10, queries=100) == 1.0
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_recall_against_exact_is_high_on_hnsw(tmp_path: Path, metric: str) -> None:
    rng = np.random.default_rng(10)
    centres = rng.normal(size=(20, 32))
    vectors = (centres[rng.integers(0, 20, size=2000)] + 0.4 * rng.normal(size=(2000, 32))).astype(np.float32)
    index = build(tmp_path / "i", vectors, [{}] * 2000, "hnsw", metric)
    value = recall_against_exact(index, k=10, queries=200)
    assert 0.95 <= value <= 1.0
    index.close()


def test_recall_against_exact_can_see_a_poor_graph(tmp_path: Path) -> None:
    """The measure is not a constant: a deliberately starved HNSW scores clearly below 1."""
    vectors = np.random.default_rng(11).normal(size=(2000, 32)).astype(np.float32)
    index = EmbeddedIndex.create(
        tmp_path / "i", IndexSettings(dim=32, metric="l2", kind="hnsw", hnsw_m=4, ef_construction=8, ef_search=1)
    )
    index.add([Item(f"i{n}", v) for n, v in enumerate(vectors)])
    index.save()  # into the graph: until then, fewer than GRAPH_BATCH new vectors are searched exactly
    assert index.stats()["vectors_in_graph"] == 2000
    assert recall_against_exact(index, k=10, queries=100) < 0.9
    index.close()


def test_recall_on_an_empty_index_is_nan_and_queries_are_capped(tmp_path: Path) -> None:
    index = EmbeddedIndex.create(tmp_path / "i", IndexSettings(dim=8, metric="l2", kind="hnsw"))
    assert math.isnan(recall_against_exact(index))
    index.add([Item(f"i{n}", v) for n, v in enumerate(np.random.default_rng(12).normal(size=(5, 8)))])
    assert recall_against_exact(index, k=10, queries=500) == 1.0  # 5 items, k > count, fewer than 500 queries
    index.close()
