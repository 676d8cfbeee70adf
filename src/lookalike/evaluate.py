"""Retrieval quality, measured the same way on every backend through the VectorIndex interface.

* same-label precision@k, leave-one-out: every labelled item is a query, the item itself is left out of
  its own results, and precision is the share of the k neighbours carrying the query's label;
* recall@k of approximate search against exact search on the same index.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lookalike.index import Item, VectorIndex


@dataclass
class PrecisionReport:
    k_values: tuple[int, ...]
    precision: dict[int, float]
    queries: int
    exact: bool


def _labelled(index: VectorIndex, label_field: str, ignore: Iterable[str]) -> list[Item]:
    ignored = set(ignore)
    return [
        item
        for batch in index.iter_items(with_vectors=True)
        for item in batch
        if item.metadata.get(label_field) is not None and str(item.metadata[label_field]) not in ignored
    ]


def same_label_precision(
    index: VectorIndex,
    k_values: tuple[int, ...] = (1, 10),
    label_field: str = "label",
    exact: bool = True,
    ignore_labels: Iterable[str] = (),
    sample: int | None = None,
    seed: int = 0,
) -> PrecisionReport:
    """Leave-one-out same-label precision at each k in ``k_values``."""
    items = _labelled(index, label_field, ignore_labels)
    if sample is not None and sample < len(items):
        items = random.Random(seed).sample(items, sample)
    k_max = max(k_values)
    hits = {k: 0.0 for k in k_values}
    for item in items:
        neighbours = [r for r in index.search(item.vector, k_max + 1, exact=exact) if r.id != item.id][:k_max]
        same = [r.metadata.get(label_field) == item.metadata[label_field] for r in neighbours]
        for k in k_values:
            hits[k] += sum(same[:k]) / k
    count = max(len(items), 1)
    return PrecisionReport(k_values, {k: hits[k] / count for k in k_values}, len(items), exact)


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
