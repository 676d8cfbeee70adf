"""More like these, less like that: moving a query by a shopper's feedback on results.

Rocchio's relevance feedback (1971), as image retrieval still uses it: the query moves toward the mean of
the items marked "more like this" and away from the mean of those marked "less like this",

    q' = QUERY * q + POSITIVE * mean(p) - NEGATIVE * mean(n),

every vector taken to unit length first under cosine, so one photo's feature norm does not outweigh
another's. Without a query image, the positives alone are the query. The weights are Rocchio's classic
1 and 0.75 for the query and the positives. The negative weight was measured with ``lookalike eval``'s
feedback measure (:mod:`lookalike.evaluate.feedback`) on the clothing catalogue, Lite0, 354 queries with a
wrong result to reject (vectors of the catalogue as indexed; `lookalike eval` on a Lite0 index gives 10.7 %
at 0.25): the rejected label's share of the top 10 falls from 15.7 % to 10.6 / 7.3 / 5.6 /
3.5 % at weights 0.25 / 0.5 / 0.75 / 1, while the query's own label goes from 57.9 % to 59.2 / 56.3 / 47.7 /
31.6 %. 0.25 is the weight that takes the wrong kind away without losing the right one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.errors import LookalikeError

QUERY = 1.0
POSITIVE = 0.75
NEGATIVE = 0.25
MAX_FEEDBACK = 20
"""Ids a search may name as positive (and as negative): enough for a shopper, bounded for the server."""


class FeedbackError(LookalikeError):
    """Feedback that cannot make a query (only negatives, no query image)."""


def steer(
    query: np.ndarray | None,
    positives: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray],
    metric: str = "cosine",
) -> np.ndarray:
    """The query moved by the feedback (see the module docstring); ``query`` None: the positives'."""
    if query is None and not positives:
        raise FeedbackError(
            "a search needs a query image, an id or at least one positive; negatives alone say only what not to find"
        )
    parts: list[np.ndarray] = []
    if query is not None:
        parts.append(QUERY * _unit(np.asarray(query, dtype=np.float32)[None], metric)[0])
    if positives:
        parts.append(POSITIVE * _unit(np.stack(positives), metric).mean(axis=0))
    if negatives:
        parts.append(-NEGATIVE * _unit(np.stack(negatives), metric).mean(axis=0))
    moved = np.sum(parts, axis=0).astype(np.float32)
    if not np.isfinite(moved).all() or not moved.any():
        raise FeedbackError("the feedback cancels the query out (the same items marked both ways?)")
    return moved


def _unit(vectors: np.ndarray, metric: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if metric != "cosine":
        return vectors
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
