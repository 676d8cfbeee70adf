"""The read half of the index contract, written once: hits to :class:`SearchResult`, scores from distances,
and the order facets are given in.

A backend's ``_knn`` answers with :class:`Hit` values in its own terms (a distance already converted to the
metric's own: Euclidean, or 1 - cosine), best first; :func:`to_results` makes them results every backend
scores alike, so their answers compare (tests/contract/). The converters below turn what each engine
reports (squared L2, inner product, similarity) into that distance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lookalike.index.settings import Metric


@dataclass
class SearchResult:
    """One hit. ``score`` is higher-is-better; ``distance`` is the metric's own (L2, or 1 - cosine)."""

    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    location: str | None
    tier: str | None = None
    """``same_item``, ``similar`` or ``none`` once a calibrated search has judged it (see lookalike.confidence)."""
    duplicates: list[str] = field(default_factory=list)
    """Ids of near-identical items folded under this one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "distance": self.distance,
            "metadata": self.metadata,
            "location": self.location,
            "tier": self.tier,
            "duplicates": self.duplicates,
        }


class Hit(NamedTuple):
    """One candidate found by a backend: its id, the metric's distance, and what a result shows."""

    id: str
    distance: float
    metadata: Mapping[str, Any] | str | bytes | None
    """A dict, or the JSON text a backend stores (parsed here, once, only for the hits returned)."""
    location: str | None


def score_from_distance(distance: float, metric: Metric) -> float:
    """One scoring rule for every backend, so their answers compare.

    L2 follows OpenSearch's ``1 / (1 + d^2)``; cosine reports the cosine similarity itself.
    """
    if metric == "l2":
        return 1.0 / (1.0 + distance * distance)
    return 1.0 - distance


def from_squared_l2(raw: float) -> float:
    """Euclidean distance from the squared L2 FAISS and Milvus report (never negative: rounding can make it so)."""
    return math.sqrt(max(raw, 0.0))


def from_similarity(similarity: float) -> float:
    """Cosine distance (1 - cosine) from a cosine similarity or a unit vectors' inner product."""
    return 1.0 - similarity


def from_unit_squared_l2(raw: float) -> float:
    """Cosine distance from the squared L2 between unit vectors, which is 2 - 2 cos."""
    return raw / 2.0


def to_results(hits: Iterable[Hit], metric: Metric, k: int) -> list[SearchResult]:
    """The best ``k`` hits (given best first) as results, scored by :func:`score_from_distance`."""
    results: list[SearchResult] = []
    for hit in hits:
        if len(results) == k:
            break
        results.append(
            SearchResult(
                hit.id,
                score_from_distance(hit.distance, metric),
                hit.distance,
                metadata_of(hit.metadata),
                hit.location or None,
            )
        )
    return results


def metadata_of(value: Mapping[str, Any] | str | bytes | None) -> dict[str, Any]:
    """Stored metadata as a dict: JSON text is parsed, a missing or empty value is ``{}``."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str | bytes) and value:
        return json.loads(value)
    return {}


# --------------------------------------------------------------------------------------- facets and ranges
def facet_key(value: Any) -> str | None:
    """How a metadata value is counted in facets: booleans as "true"/"false", integers and text as text (so 1
    and "1" share a key); None for what is not counted (floats, lists, objects, null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    return None


def is_number(value: Any) -> bool:
    """Whether a metadata value counts in :meth:`VectorIndex.ranges`: an integer or a float, not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def by_count(values: Mapping[str, int]) -> dict[str, int]:
    """Values highest count first (ties keep their order)."""
    return dict(sorted(values.items(), key=lambda kv: -kv[1]))


def choose_facets(counts: Mapping[str, Mapping[str, int]], max_values: int) -> dict[str, dict[str, int]]:
    """The facets of the counted values: fields with at most ``max_values`` distinct values, by name."""
    return {key: by_count(values) for key, values in sorted(counts.items()) if len(values) <= max_values}


def facets_under(
    everything: Mapping[str, Mapping[str, int]], passing: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """The fields of ``everything`` (the unfiltered facets) with the counts of the passing items."""
    return {key: by_count(passing.get(key, {})) for key in everything}


def count_values(documents: Iterable[Mapping[str, Any]], counts: dict[str, dict[str, int]]) -> None:
    """Add each document's countable values (:func:`facet_key`) to ``counts`` (field -> value -> items): for
    backends that count facets from the metadata themselves (Milvus has no aggregation over JSON)."""
    for metadata in documents:
        for key, value in metadata.items():
            text = facet_key(value)
            if text is not None:
                values = counts.setdefault(key, {})
                values[text] = values.get(text, 0) + 1


def widen_spans(documents: Iterable[Mapping[str, Any]], spans: dict[str, tuple[float, float]]) -> None:
    """Widen ``spans`` (field -> (low, high)) by each document's numeric values (:func:`is_number`)."""
    for metadata in documents:
        for key, value in metadata.items():
            if is_number(value):
                low, high = spans.get(key, (value, value))
                spans[key] = (min(low, value), max(high, value))
