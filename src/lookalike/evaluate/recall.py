"""Recall@k of approximate search against exact search on the same index."""

from __future__ import annotations

import numpy as np

from lookalike.index import VectorIndex


def recall_against_exact(index: VectorIndex, k: int = 10, queries: int = 500, seed: int = 0) -> float:
    """Mean share of the exact top-k that approximate search also returns, over sampled indexed vectors."""
    vectors = [item.vector for batch in index.iter_items(with_vectors=True) for item in batch]
    if not vectors:
        return float("nan")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)
    total = 0.0
    for position in chosen:
        exact_ids = {r.id for r in index.search(vectors[position], k, exact=True)}
        approximate_ids = {r.id for r in index.search(vectors[position], k, exact=False)}
        total += len(exact_ids & approximate_ids) / max(len(exact_ids), 1)
    return total / len(chosen)
