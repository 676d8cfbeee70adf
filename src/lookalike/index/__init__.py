"""Vector indexes behind one interface (:class:`VectorIndex`)."""

from lookalike.index.base import Filter, IndexSettings, Item, SearchResult, VectorIndex, score_from_distance
from lookalike.index.embedded import EmbeddedIndex

__all__ = [
    "EmbeddedIndex",
    "Filter",
    "IndexSettings",
    "Item",
    "SearchResult",
    "VectorIndex",
    "score_from_distance",
]
