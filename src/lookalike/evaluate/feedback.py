"""Does "less like that" work? The share of a rejected label in the results, before and after.

For each sampled real-class item as a "more like this" query, the first of its k neighbours whose label is
not the query's is marked negative (what a shopper clicking "less like this" on a wrong result does). The
query is then moved by :func:`lookalike.feedback.steer`, exactly as a search with ``negative`` is, and the
k results are compared, the query and the negative left out of both: the share of results carrying the
negative's label should fall, and the share carrying the query's own label should not.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import faiss
import numpy as np

from lookalike.evaluate.neighbours import Snapshot, _prepared
from lookalike.evaluate.precision import label_queries
from lookalike.feedback import steer


@dataclass
class FeedbackReport:
    queries: int
    """Queries that had a neighbour of another label to reject."""
    k: int
    rejected_label_share_before: float
    rejected_label_share_after: float
    precision_before: float
    precision_after: float


def negative_feedback_effect(
    snapshot: Snapshot,
    label_field: str = "label",
    ignore_labels: Iterable[str] = (),
    k: int = 10,
    sample: int = 500,
    seed: int = 0,
) -> FeedbackReport:
    """The measure above over ``sample`` seeded queries (exact search over the snapshot)."""
    labels = np.array([str(value) for value in snapshot.values(label_field)], dtype=object)
    candidates = list(label_queries(snapshot, label_field, ignore_labels))
    chosen = np.asarray(random.Random(seed).sample(candidates, min(sample, len(candidates))), dtype=np.int64)
    if not len(chosen):
        return FeedbackReport(0, k, 0.0, 0.0, 0.0, 0.0)
    base = _prepared(snapshot.vectors, snapshot.metric)
    metric = faiss.METRIC_INNER_PRODUCT if snapshot.metric == "cosine" else faiss.METRIC_L2
    wanted = min(k + 2, len(snapshot))
    _, before = faiss.knn(base[chosen], base, wanted, metric=metric)
    kept, negatives = [], []
    for row, query in enumerate(chosen):
        others = [p for p in before[row] if p != query and p >= 0]
        rejected = next((p for p in others[:k] if labels[p] != labels[query]), None)
        if rejected is not None:
            kept.append(row)
            negatives.append(rejected)
    if not kept:
        return FeedbackReport(0, k, 0.0, 0.0, 0.0, 0.0)
    rows = np.asarray(kept)
    queries = chosen[rows]
    moved = np.stack(
        [
            steer(snapshot.vectors[q], [], [snapshot.vectors[n]], snapshot.metric)
            for q, n in zip(queries, negatives, strict=True)
        ]
    )
    _, after = faiss.knn(_prepared(moved, snapshot.metric), base, wanted, metric=metric)
    shares: dict[str, list[float]] = {"before": [], "after": []}
    precision: dict[str, list[float]] = {"before": [], "after": []}
    for i, (query, negative) in enumerate(zip(queries, negatives, strict=True)):
        for name, found in (("before", before[rows[i]]), ("after", after[i])):
            top = [p for p in found if p not in (query, negative) and p >= 0][:k]
            shares[name].append(np.mean([labels[p] == labels[negative] for p in top]))
            precision[name].append(np.mean([labels[p] == labels[query] for p in top]))
    return FeedbackReport(
        len(queries),
        k,
        float(np.mean(shares["before"])),
        float(np.mean(shares["after"])),
        float(np.mean(precision["before"])),
        float(np.mean(precision["after"])),
    )
