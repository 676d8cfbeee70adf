"""What a catalogue source yields: items with a stable id, metadata, and a way to read their bytes.

Reading is deferred (``read``) so that ingest can skip already-indexed items and read the rest in
parallel workers; a source never decodes images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class SourceItem:
    """One image to index."""

    id: str
    """Stable across runs: the manifest's ``id``, else the path relative to the source root, else the URL."""
    location: str
    """Where the image lives (local path, s3:// or http(s):// URL), kept with the item for display."""
    read: Callable[[], bytes]
    """Returns the image bytes; raises :class:`~lookalike.errors.SourceError` when it cannot."""
    metadata: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """An iterable of :class:`SourceItem`; ``__len__`` is known up front for a progress bar."""

    def __iter__(self) -> Iterator[SourceItem]: ...

    def __len__(self) -> int: ...
