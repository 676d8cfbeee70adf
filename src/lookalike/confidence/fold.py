"""Fold near-duplicates: five copies of one photo should be one hit, not a result page.

Two results are the same picture when the score between their own vectors reaches ``identical``, or reaches
``candidate`` and ``confirm`` (geometric verification) agrees. Each result joins
the first earlier hit it duplicates, or starts a hit of its own, so the order of the list is kept and each
hit is its best-scoring copy. The candidates' vectors are compared
with one matrix product: no n x n matrix of the catalogue, only of the page's candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from lookalike.index.base import Metric, SearchResult, VectorIndex


def vectors_of(index: VectorIndex, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The stored vectors of ``ids`` (those that exist), to compare results with each other."""
    vectors = {}
    for item_id in ids:
        item = index.get(item_id, with_vector=True)
        if item is not None and item.vector is not None:
            vectors[item_id] = item.vector
    return vectors


def pairwise_scores(vectors: np.ndarray, metric: Metric) -> np.ndarray:
    """Scores between every two rows, by the rule every backend reports (see ``score_from_distance``)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / np.where(norms == 0, 1, norms)
        return unit @ unit.T
    squares = (vectors * vectors).sum(axis=1)
    distances2 = np.maximum(squares[:, None] + squares[None, :] - 2 * vectors @ vectors.T, 0)
    return 1.0 / (1.0 + distances2)


def fold(
    results: Sequence[SearchResult],
    vectors: Mapping[str, np.ndarray],
    metric: Metric,
    identical: float,
    candidate: float | None = None,
    confirm: Callable[[SearchResult, SearchResult], bool] | None = None,
) -> list[SearchResult]:
    """The results that head a hit, best first, each listing the ids folded under it in ``duplicates``;
    results without a vector stand alone."""
    known = [n for n, result in enumerate(results) if result.id in vectors]
    scores = pairwise_scores(np.stack([vectors[results[n].id] for n in known]), metric) if known else None
    row = {n: i for i, n in enumerate(known)}
    hits: list[SearchResult] = []
    heads: list[int] = []  # row of each hit's first result (None-free: only results with vectors)
    owners: list[int] = []  # index into hits of each head
    for n, result in enumerate(results):
        owner = None
        if n in row and scores is not None and heads:
            between = scores[row[n], heads]
            floor = identical if candidate is None or confirm is None else min(candidate, identical)
            for position in np.nonzero(between >= floor)[0]:
                hit_index = owners[int(position)]
                if between[position] >= identical or (confirm is not None and confirm(hits[hit_index], result)):
                    owner = hit_index
                    break
        if owner is not None:
            hits[owner].duplicates.append(result.id)
            continue
        hits.append(replace(result, duplicates=[]))  # the caller's results stay as they were
        if n in row:
            heads.append(row[n])
            owners.append(len(hits) - 1)
    return hits
