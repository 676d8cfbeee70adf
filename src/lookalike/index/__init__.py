"""Vector indexes behind one interface (:class:`VectorIndex`).

Importing this package loads no backend: ``EmbeddedIndex`` (FAISS) is imported on first use, so the pure
parts (``lookalike.index.filters``, ``validate``, ``settings``) cost no FAISS import in a process that needs
only them (the API's request checks, a CLI that talks to a server backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lookalike.index.base import Filter, IndexSettings, Item, SearchResult, VectorIndex, score_from_distance

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "EmbeddedIndex":
        from lookalike.index.embedded import EmbeddedIndex

        return EmbeddedIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
