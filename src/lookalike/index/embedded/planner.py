"""How an embedded index answers a query: which search path, and the hits it finds.

The choice (:func:`plan`) is one pure function of the settings and the query's situation, so it can be read and
tested apart from FAISS: brute force when asked (``exact``), when the structure is a plain flat index or still
staging, or when the filter passes few items; a graph walk or list scan otherwise; and whether a quantized
re-scoring store's candidates are re-checked with the float vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from lookalike.index import filters
from lookalike.index.embedded.state import EmbeddedState
from lookalike.index.embedded.structure import _core
from lookalike.index.results import (
    Hit,
    from_similarity,
    from_squared_l2,
    from_unit_squared_l2,
)
from lookalike.index.settings import IndexSettings

EXACT_SUBSET_FRACTION = 0.05
"""A filter matching fewer than this share of the items is answered by brute force over the matches: faster
than walking the graph, and it always finds k results when k exist (what OpenSearch's filtering does too)."""

MAX_EF_SEARCH = 4096
"""Upper bound of the widened candidate list of a filtered graph walk (see ``_approximate``)."""

STORE_RECHECK = 3
"""Brute force over a quantized re-scoring store hands this many times k candidates to the float check."""


@dataclass(frozen=True)
class Plan:
    """The search path for one query."""

    brute: bool
    """Brute force over the float store (exact), rather than the graph or the IVF lists."""
    rescore: bool
    """Re-score the candidates with the float vectors (a quantized re-scoring store ranks them)."""
    k_brute: int
    """Candidates a brute force asks for: more than k when a quantized store's order is re-checked."""


def plan(settings: IndexSettings, *, exact: bool, staging: bool, allowed: int, total: int, k: int) -> Plan:
    """The path for a query asking ``k`` of ``allowed`` passing positions among ``total`` (with ``allowed`` 0,
    only the pending buffer can match, and only ``rescore`` is read)."""
    # A quantized re-scoring store's distances are re-checked with the floats (not while staging: a float brute
    # force is exact already).
    rescore = settings.rerank_encoding != "none" and settings.rerank > 0 and not staging
    plain_flat = settings.kind == "exact" and not settings.is_lossy()
    brute = exact or plain_flat or staging or allowed < EXACT_SUBSET_FRACTION * total
    # Brute force over a quantized store re-checks more than k with the floats, so that codes ranking a true
    # neighbour just below the k-th cannot drop it.
    k_brute = min(allowed, STORE_RECHECK * k) if rescore else k
    return Plan(brute, rescore, k_brute)


class PlannerMixin(EmbeddedState):
    """The search path of :class:`EmbeddedIndex` (``_knn``, which the contract's ``search`` calls)."""

    def _knn(self, query: np.ndarray, k: int, conditions: list[filters.Condition], exact: bool) -> list[Hit]:
        # Compiled before taking the lock: only running the statement holds it up for other requests.
        where = filters.to_sql(conditions) if conditions else None
        with self._lock:
            self._catch_up()
            if not (self._mapped or isinstance(_core(self._faiss), faiss.IndexHNSW)):
                self._flush_pending()  # cheap to add to anything but a graph or a mapped (read-only) checkpoint
            allowed = self._allowed(where)
            n_allowed = int(allowed.sum())
            pending = self._search_pending(query, where, k)
            if n_allowed == 0 and pending is None:
                return []
            k_eff = min(k, n_allowed) if n_allowed else k
            path = plan(
                self.settings, exact=exact, staging=self._staging(), allowed=n_allowed, total=allowed.size, k=k_eff
            )
            distances, positions = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
            if n_allowed:
                if path.brute:
                    distances, positions = self._exact(query, allowed, path.k_brute)
                else:
                    distances, positions = self._approximate(query, allowed, n_allowed, k_eff)
                if len(positions) < k_eff:  # the graph walk ran out before finding k matches
                    distances, positions = self._exact(query, allowed, path.k_brute)
            vids = self._vids[positions]
            if pending is not None:
                distances, vids = np.concatenate([distances, pending[0]]), np.concatenate([vids, pending[1]])
                larger_is_better = self._float_store().metric_type == faiss.METRIC_INNER_PRODUCT
                order = np.argsort(-distances if larger_is_better else distances, kind="stable")
                distances, vids = distances[order], vids[order]
            return self._results(distances, vids, k, query if path.rescore else None)

    def _allowed(self, where: tuple[str, list[Any]] | None) -> np.ndarray:
        """Mask over FAISS positions of live items that pass the filter, compiled by ``filters.to_sql`` (None:
        no filter). The statement's size does not grow with the number of values, so preparing it is cheap."""
        if where is None:
            return self._live
        clause, params = where
        vids = np.fromiter(
            (r[0] for r in self._db.execute(f"SELECT vid FROM items WHERE {clause}", params)), dtype=np.int64
        )
        mask = np.zeros_like(self._live)
        mask[self._positions(np.sort(vids))] = True
        return mask & self._live

    def _approximate(
        self, query: np.ndarray, allowed: np.ndarray, n_allowed: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n_allowed`` is ``allowed.sum()``, which the caller has: another pass over a million-entry mask
        costs about 0.6 ms, a fifth of a query."""
        core = _core(self._faiss)
        params: Any
        if isinstance(core, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()
            ef = max(self.settings.ef_search, 2 * k * (max(self.settings.rerank, 1) if self.settings.is_lossy() else 1))
            # Filtered-out nodes (dead copies of replaced items, or items a filter rejects) still fill the walk's
            # candidate list: widen it by the share that passes, so as many *passing* candidates are weighed as
            # in an unfiltered search (below EXACT_SUBSET_FRACTION the search is brute force instead).
            passing = max(n_allowed / allowed.size, EXACT_SUBSET_FRACTION)
            params.efSearch = int(min(ef / passing, MAX_EF_SEARCH))
        elif isinstance(core, faiss.IndexIVF):
            params = faiss.SearchParametersIVF()
            params.nprobe = self.settings.nprobe
        else:
            params = faiss.SearchParameters()
        keep_alive = [params]  # SWIG holds raw pointers: the Python objects must outlive the search
        if n_allowed < allowed.size:
            selector = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
            params.sel = selector
            keep_alive.append(selector)
        if self.settings.reduce_dim:
            outer = faiss.SearchParametersPreTransform()
            outer.index_params = params
            params = outer
            keep_alive.append(params)
        searched = self._faiss
        if isinstance(searched, faiss.IndexRefine) and self.settings.rerank == 0:
            # No re-scoring: the quantized distances are the scores, and a query never reads the float store,
            # so the resident memory is the codes and the graph or lists alone.
            searched = faiss.downcast_index(searched.base_index)
        elif isinstance(searched, faiss.IndexRefine):
            outer = faiss.IndexRefineSearchParameters()
            outer.k_factor = float(self.settings.rerank)
            outer.base_index_params = params
            params = outer
            keep_alive.append(params)
        # One query's graph walk or list scan is too small to split: an OpenMP team costs more than it saves
        # (IndexRefine over HNSW-SQ8, 1M vectors, busy 2-core machine: 7.5 ms with 2 threads, 1.6 ms with 1).
        # omp_set_num_threads only changes the calling thread's setting, so restore it for builds.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            distances, labels = searched.search(self._for_faiss(query[None]), k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        del keep_alive
        keep = labels[0] >= 0
        return distances[0][keep], labels[0][keep]

    def _exact(self, query: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force: over the few matching vectors gathered, or over all with a bitmap when many match."""
        storage = self._float_store()
        query = self._for_faiss(query[None])
        positions = np.flatnonzero(allowed)
        if positions.size <= EXACT_SUBSET_FRACTION * allowed.size:
            distances, order = faiss.knn(query, storage.reconstruct_batch(positions), k, metric=storage.metric_type)
            return distances[0], positions[order[0]]
        params = faiss.SearchParameters()
        selector = (
            faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little")) if positions.size < allowed.size else None
        )
        params.sel = selector
        distances, labels = storage.search(query, k, params=params)
        keep = labels[0] >= 0
        return distances[0][keep], labels[0][keep]

    def _results(
        self, distances: np.ndarray, found: np.ndarray, k: int, rescore: np.ndarray | None = None
    ) -> list[Hit]:
        """The best ``k`` of ``found`` (ordered by ``distances``) as results, in one read of their rows.

        ``rescore`` (the query): replace the distances with exact squared L2 from the float vectors read in
        the same query, and re-order. A quantized re-scoring store ranks candidates to within its 8- or
        16-bit error; the floats of the few winners (~5 KB each) make scores and order exact."""
        if rescore is None:  # the order is final: read only the k rows shown
            distances, found = distances[:k], found[:k]
        vids = [int(v) for v in found]
        vector_column = ", vector" if rescore is not None else ""
        rows = {
            r[0]: r[1:]
            for r in self._db.execute(
                f"SELECT vid, id, metadata, location{vector_column} FROM items "
                f"WHERE vid IN ({','.join('?' * len(vids))})",
                vids,
            )
        }
        hits = [(float(raw), vid) for raw, vid in zip(distances, vids, strict=True) if vid in rows]
        if rescore is not None and hits:
            query = self._for_faiss(rescore[None])
            floats = self._for_faiss(np.stack([self._from_blob(rows[vid][3]) for _, vid in hits]))
            exact = ((floats - query) ** 2).sum(axis=1)
            hits = sorted(zip(exact.tolist(), (vid for _, vid in hits), strict=True), key=lambda hit: hit[0])
        return [Hit(rows[vid][0], self._distance(raw), rows[vid][1], rows[vid][2]) for raw, vid in hits[:k]]

    def _distance(self, raw: float) -> float:
        """FAISS gives squared L2 or inner product; report Euclidean distance or 1 - cosine."""
        if self.settings.metric == "cosine":
            # lossy structures compare unit vectors by squared L2, which is 2 - 2 cos
            return from_unit_squared_l2(raw) if self.settings.is_lossy() else from_similarity(raw)
        return from_squared_l2(raw)
