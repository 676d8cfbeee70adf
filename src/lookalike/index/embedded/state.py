"""The state :class:`EmbeddedIndex`'s mixins share, declared once.

Each job of the embedded index is a mixin in a module of its own (store, summaries, structure, positions,
planner, sync); they work on one object, set up by ``EmbeddedIndex.__init__``. Declaring that state and the few
methods one mixin calls on another here lets each module be read, and type-checked, on its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from lookalike.index.settings import IndexSettings


class EmbeddedState:
    """What every mixin of :class:`EmbeddedIndex` may read and write (see ``EmbeddedIndex.__init__``)."""

    path: Path
    settings: IndexSettings
    _db: sqlite3.Connection
    """The one SQLite connection (the store); every use holds ``_lock``."""
    _lock: threading.RLock
    _colour_column: bool
    """Whether ``items`` has the colour column (an old index opened read-only has not)."""
    _use_mmap: bool
    _faiss: faiss.Index
    """The search structure (``structure.py``)."""
    _faiss_owner: faiss.Index | None
    """The checkpoint's ID map, which owns ``_faiss`` when it was read from a file."""
    _mapped: bool
    _stages: bool
    """Whether the structure must be trained (it is a float IndexFlat until then)."""
    _dirty: bool
    """Whether the checkpoint is behind what is in memory."""
    _vids: np.ndarray
    """FAISS position -> vid (``positions.py``)."""
    _live: np.ndarray
    """FAISS position -> still an item."""
    _pending_vids: list[int]
    _pending_vectors: list[np.ndarray]
    _pending_cache: tuple[int, np.ndarray] | None
    _data_version: int
    """SQLite's counter of other connections' commits when we last caught up (``sync.py``)."""
    _seen_delete: int
    _writes: int
    """Writes through this object (with ``_data_version``: whether the items changed)."""
    _summaries: dict[str, Any]
    _summaries_version: tuple[int, int] | None

    if TYPE_CHECKING:  # the methods one mixin calls on another (each defined in one mixin)

        def _catch_up(self) -> None: ...
        def _snapshot(self) -> contextlib.AbstractContextManager[None]: ...
        def _trim_tombstones(self) -> None: ...
        def _flush_pending(self) -> None: ...
        def _append(self, vids: Sequence[int], vectors: np.ndarray) -> None: ...
        def _mark_dead(self, vids: Sequence[int]) -> None: ...
        def _positions(self, vids: np.ndarray) -> np.ndarray: ...
        def _for_faiss(self, vectors: np.ndarray) -> np.ndarray: ...
        def _drop_pending(self, dead: np.ndarray) -> None: ...
        def _newest_vid(self) -> int: ...
        def _search_pending(
            self, query: np.ndarray, where: tuple[str, list[Any]] | None, k: int
        ) -> tuple[np.ndarray, np.ndarray] | None: ...
        def _make_writable(self) -> None: ...
        def _float_store(self) -> faiss.Index: ...
        def _staging(self) -> bool: ...
        def _from_blob(self, blob: bytes) -> np.ndarray: ...
        def _iter_vectors(self, batch_size: int = 10_000) -> Iterator[list[tuple[int, np.ndarray]]]: ...
