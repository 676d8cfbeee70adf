"""Where each vector sits in the FAISS structure, and the buffer of vectors not in it yet.

FAISS positions map to vids (``self._vids``, appended in increasing order, so a binary search finds a vid) and a
bitmap says which are still items (``self._live``: a replaced or deleted vector stays in the graph, masked).
New vectors reach an HNSW graph in batches of :data:`GRAPH_BATCH` (far faster per vector than small inserts);
until then they wait in the pending buffer, durable in SQLite, and searches brute-force them and merge them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from lookalike.index.embedded.state import EmbeddedState

GRAPH_BATCH = 2048
"""New vectors reach the HNSW graph in batches this large: FAISS builds a graph ~10x faster per vector in big
parallel batches than 32 at a time (0.18 against ~2 ms per 1280-d vector on 2 cores). They are durable in
SQLite at once, and a search brute-forces the ones not in the graph yet and merges them in, so nobody sees the
difference (and a server catching up with another process's small commits does not pay for small inserts)."""


class PositionsMixin(EmbeddedState):
    """Positions, liveness and the pending buffer of :class:`EmbeddedIndex`."""

    def _append(self, vids: Sequence[int], vectors: np.ndarray) -> None:
        """Add committed vectors (every caller passes rows that are in SQLite already)."""
        self._make_writable()
        self._faiss.add(self._for_faiss(vectors))
        self._vids = np.concatenate([self._vids, np.asarray(vids, dtype=np.int64)])
        self._live = np.concatenate([self._live, np.ones(len(vids), dtype=bool)])

    def _flush_pending(self) -> None:
        """Add the vectors committed since the last flush to the FAISS structure."""
        if self._pending_vids:
            vids, vectors = self._pending_vids, np.concatenate(self._pending_vectors)
            self._pending_vids, self._pending_vectors, self._pending_cache = [], [], None
            self._append(vids, vectors)

    def _mark_dead(self, vids: Sequence[int]) -> None:
        if vids:
            self._live[self._positions(np.asarray(vids, dtype=np.int64))] = False

    def _positions(self, vids: np.ndarray) -> np.ndarray:
        """Vids to FAISS positions: vids are appended in increasing order, so a binary search finds them."""
        positions = np.searchsorted(self._vids, vids)
        inside = positions < len(self._vids)
        positions, vids = positions[inside], vids[inside]
        return positions[self._vids[positions] == vids]

    def _for_faiss(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.settings.metric == "cosine":
            vectors = vectors.copy()
            faiss.normalize_L2(vectors)
        return vectors

    def _drop_pending(self, dead: np.ndarray) -> None:
        """Forget pending vectors that were deleted before they reached the graph."""
        vids = np.asarray(self._pending_vids, dtype=np.int64)
        keep = ~np.isin(vids, dead)
        if not keep.all():
            vectors = np.concatenate(self._pending_vectors)[keep]
            self._pending_vids, self._pending_cache = vids[keep].tolist(), None
            self._pending_vectors = [vectors] if len(vectors) else []

    def _newest_vid(self) -> int:
        if self._pending_vids:
            return int(self._pending_vids[-1])
        return int(self._vids[-1]) if self._vids.size else 0

    def _search_pending(
        self, query: np.ndarray, where: tuple[str, list[Any]] | None, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Brute force over the vectors committed but not yet in the graph: (raw distances, vids), or None.

        Inserting vectors into an HNSW graph a few at a time costs milliseconds each (~10x more than in a
        batch of GRAPH_BATCH), so a reader does not insert another process's every small commit before each
        query; up to GRAPH_BATCH vectors are searched exactly instead (about a millisecond for 2,048)."""
        if not self._pending_vids:
            return None
        vids = np.asarray(self._pending_vids, dtype=np.int64)
        if self._pending_cache is None or self._pending_cache[0] != vids.size:
            self._pending_cache = (vids.size, self._for_faiss(np.concatenate(self._pending_vectors)))
        vectors = self._pending_cache[1]
        if where is not None:
            clause, params = where
            passing = self._db.execute(f"SELECT vid FROM items WHERE vid >= ? AND {clause}", [int(vids[0]), *params])
            keep = np.isin(vids, np.fromiter((r[0] for r in passing), dtype=np.int64))
            vids, vectors = vids[keep], vectors[keep]
            if not vids.size:
                return None
        metric = self._float_store().metric_type
        distances, order = faiss.knn(self._for_faiss(query[None]), vectors, min(k, vids.size), metric=metric)
        return distances[0], vids[order[0]]
