"""The one interface every vector index implements (embedded FAISS+SQLite, OpenSearch, Milvus).

An index stores vectors with ids, metadata and where each image lives. It knows no model: the model
descriptor it records is an opaque dict that the service layer compares (see ``IndexSettings.embedding``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Metric = Literal["l2", "cosine"]
IndexKind = Literal["exact", "hnsw"]
Filter = Mapping[str, Any]
"""Metadata filter: ``{"label": "Dress"}`` (equality), ``{"label": ["Dress", "Skirt"]}`` (one of),
``{"price": {"gte": 10, "lt": 50}}`` (numeric range); several keys must all hold."""


@dataclass(frozen=True)
class IndexSettings:
    """What an index is: fixed at creation and recorded with it."""

    dim: int
    metric: Metric = "cosine"
    kind: IndexKind = "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    embedding: Mapping[str, Any] = field(default_factory=dict)
    """The model that made the vectors (name, dim, preprocessing): compared by the service layer."""


@dataclass
class Item:
    """One catalogue entry: what ingest writes and ``get`` returns."""

    id: str
    vector: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    location: str | None = None
    """Where the image lives (path or URL), so a result can be shown."""
    content_hash: str | None = None
    """Hash of the image bytes, so a re-run notices a changed file."""


@dataclass
class SearchResult:
    """One hit. ``score`` is higher-is-better; ``distance`` is the metric's own (L2, or 1 - cosine)."""

    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    location: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "distance": self.distance,
            "metadata": self.metadata,
            "location": self.location,
        }


def score_from_distance(distance: float, metric: Metric) -> float:
    """One scoring rule for every backend, so their answers compare.

    L2 follows OpenSearch's ``1 / (1 + d^2)``; cosine reports the cosine similarity itself.
    """
    if metric == "l2":
        return 1.0 / (1.0 + distance * distance)
    return 1.0 - distance


class VectorIndex(ABC):
    """k-NN over vectors with metadata. Writes are upserts by id; nothing needs a rebuild."""

    settings: IndexSettings

    @abstractmethod
    def add(self, items: Sequence[Item]) -> None:
        """Insert or replace items by id. Every item needs a vector of ``settings.dim`` floats."""

    @abstractmethod
    def delete(self, ids: Iterable[str]) -> int:
        """Remove items by id; returns how many existed."""

    @abstractmethod
    def search(
        self, vector: np.ndarray, k: int = 10, filter: Filter | None = None, exact: bool = False
    ) -> list[SearchResult]:
        """The k nearest items to ``vector`` that match ``filter``, best first.

        ``exact=True`` forces brute force even on an approximate index (the ground truth for recall).
        """

    @abstractmethod
    def get(self, id: str, with_vector: bool = False) -> Item | None:
        """One item by id, or None."""

    @abstractmethod
    def count(self) -> int:
        """How many live items."""

    @abstractmethod
    def content_hashes(self) -> dict[str, str | None]:
        """id -> content hash of every item: what a resumed ingest compares against."""

    @abstractmethod
    def iter_items(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[Item]]:
        """Every item in batches (for evaluation and migration)."""

    @abstractmethod
    def facets(self, max_values: int = 50) -> dict[str, dict[str, int]]:
        """Metadata field -> value -> count, for building filter choices."""

    def bulk_load(self) -> AbstractContextManager[Any]:
        """Wrap a large ingest: backends that can defer work (OpenSearch stops refreshing) do so here."""
        return nullcontext()

    def stats(self) -> dict[str, Any]:
        """Counts worth showing in ``lookalike info``; backends add what they know."""
        return {"items": self.count()}

    @abstractmethod
    def save(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Release files and connections."""
        self.save()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
