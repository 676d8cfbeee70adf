"""What the contract tests share: generated catalogues and the NumPy brute force every answer is held to."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from lookalike.index import IndexSettings, Item, SearchResult, VectorIndex
from lookalike.index.filters import matches, normalize

if TYPE_CHECKING:
    from .conftest import Backend

KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]
DIM = 32


def xfail_on(request: pytest.FixtureRequest, backends: dict[str, str]) -> None:
    """Mark this test an expected (strict) failure on the backends named, with the divergence as the reason."""
    name = request.getfixturevalue("backend").name
    if name in backends:
        request.applymarker(pytest.mark.xfail(strict=True, reason=backends[name]))


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
    """(id, distance) of the ``k`` nearest, best first (ties in the order given)."""
    distances = distances_to(vectors, query, metric)
    order = np.argsort(distances, kind="stable")[:k]
    return [(ids[i], float(distances[i])) for i in order]


def brute_force_items(
    items: list[Item], query: np.ndarray, k: int, metric: str, filter=None
) -> list[tuple[str, float]]:
    """The reference answer over ``items`` passing ``filter`` (``filters.matches``): (id, distance) best first."""
    conditions = normalize(filter)
    kept = [item for item in items if matches(item.metadata, conditions)]
    return brute_force([item.id for item in kept], np.stack([item.vector for item in kept]), query, metric, k)


def expected_score(distance: float, metric: str) -> float:
    return 1.0 / (1.0 + distance**2) if metric == "l2" else 1.0 - distance


def ids_of(results: list[SearchResult]) -> list[str]:
    return [r.id for r in results]


def recall(found: list[str], truth: list[str]) -> float:
    return len(set(found) & set(truth)) / max(len(truth), 1)


def random_items(n: int, dim: int = 16, seed: int = 0, prefix: str = "item") -> list[Item]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        Item(f"{prefix}-{i}", vectors[i], {"label": f"l{i % 5}", "i": i}, f"/img/{prefix}-{i}.jpg", f"h{i}")
        for i in range(n)
    ]


def all_results(index: VectorIndex, query: np.ndarray, **kwargs: Any) -> list[SearchResult]:
    return index.search(query, k=max(index.count(), 1), **kwargs)


def queries_near(items: list[Item], count: int = 15) -> list[np.ndarray]:
    """Perturbed copies of indexed vectors: real-looking queries that are not exactly an indexed vector."""
    rng = np.random.default_rng(7)
    picks = rng.choice(len(items), size=count, replace=False)
    return [items[i].vector + rng.normal(0, 0.05, items[i].vector.shape).astype(np.float32) for i in picks]


def assert_same(results: list[SearchResult], expected: list[tuple[str, float]], tolerance: float = 1e-4) -> None:
    assert [r.id for r in results] == [item_id for item_id, _ in expected]
    for result, (_, distance) in zip(results, expected, strict=True):
        assert result.distance == pytest.approx(distance, abs=tolerance)


KIDS_VALUES: list[Any] = [True, False, 1, 0, "1", "true", 1.0]


def catalogue_metadata(i: int, cluster: int, rng: np.random.Generator) -> dict[str, Any]:
    metadata: dict[str, Any] = {"label": f"c{cluster}", "sku": i}
    if rng.random() < 0.9:
        metadata["colour"] = ["red", "blue", "green"][int(rng.integers(0, 3))]
    if rng.random() < 0.85:
        price = int(rng.integers(0, 400)) / 4
        metadata["price"] = int(price) if rng.random() < 0.5 else price
    metadata["kids"] = KIDS_VALUES[i % len(KIDS_VALUES)]
    return metadata


class Catalogue:
    """Clustered vectors with metadata (2000 embedded, 600 on a server), indexed once per (kind, metric)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        n = backend.catalogue_size
        self.vectors, clusters = clustered(n, DIM, clusters=20, seed=7)
        rng = np.random.default_rng(8)
        self.ids = [f"p{i:04d}" for i in range(n)]
        self.metadata = [catalogue_metadata(i, int(c), rng) for i, c in enumerate(clusters)]
        self.queries = clustered(60, DIM, clusters=20, seed=7, spread=0.6)[0]  # same centres, new points
        self._built: dict[tuple[str, str], tuple[str, VectorIndex]] = {}

    def index(self, kind: str, metric: str) -> VectorIndex:
        if (kind, metric) not in self._built:
            name = self.backend.new_name("catalogue")
            index = self.backend.create(name, IndexSettings(dim=DIM, metric=metric, kind=kind))  # type: ignore[arg-type]
            self._built[(kind, metric)] = (name, index)
            items = [
                Item(i, v, m, f"s3://b/{i}.jpg") for i, v, m in zip(self.ids, self.vectors, self.metadata, strict=True)
            ]
            for start in range(0, len(items), 250):  # several adds, as ingest does
                index.add(items[start : start + 250])
        return self._built[(kind, metric)][1]

    def truth(self, query: np.ndarray, metric: str, k: int, where: Callable[[dict], bool] | None = None):
        keep = [i for i, m in enumerate(self.metadata) if where is None or where(m)]
        return brute_force([self.ids[i] for i in keep], self.vectors[keep], query, metric, k)

    def drop(self) -> None:
        for name, index in self._built.values():
            index.close()
            self.backend.drop(name)
