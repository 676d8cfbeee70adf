"""Catching up with other processes that write the same embedded index.

Several processes may open one index (a server answering queries while ``lookalike index`` or ``lookalike
delete`` writes). Each keeps its own FAISS structure, so before every read it asks SQLite whether another
connection committed since it last looked (``PRAGMA data_version``: a counter in shared memory, about a
microsecond) and, if so, catches up the way opening does: vids only grow, so new rows are those above the
newest vid it knows, and deleted ones are listed in ``deleted_vids``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from lookalike.index.embedded.positions import GRAPH_BATCH
from lookalike.index.embedded.state import EmbeddedState

TOMBSTONES_KEPT = 100_000
"""``deleted_vids`` logs every deleted vid so that other processes can mask them without rescanning; ``save``
trims it to the newest entries. A reader further behind than that reconciles with a scan of the vids instead."""


class SyncMixin(EmbeddedState):
    """What :class:`EmbeddedIndex` knows of SQLite's state (``self._data_version``, ``self._seen_delete``)."""

    # Several processes may open one index (a server answering queries while ``lookalike index`` or
    # ``lookalike delete`` writes). Each keeps its own FAISS structure, so before every read it asks SQLite
    # whether another connection committed since it last looked (``PRAGMA data_version``: a counter in
    # shared memory, about a microsecond) and, if so, catches up the way opening does: vids only grow, so new
    # rows are those above the newest vid it knows, and deleted ones are listed in ``deleted_vids``.
    def _mark_synced(self) -> None:
        """Record SQLite's state as reflected in memory; call *before* reading that state (catching up twice
        is harmless, missing a commit is not)."""
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._seen_delete = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM deleted_vids").fetchone()[0]

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        """A read transaction: every SELECT inside sees one committed state (a no-op inside a transaction)."""
        if self._db.in_transaction:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def transaction() -> Iterator[None]:
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

        return transaction()

    def _catch_up(self) -> None:
        """Reflect what other processes committed since we last looked (nothing to do: one PRAGMA)."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        with self._snapshot():
            rows = self._db.execute(
                "SELECT vid, vector FROM items WHERE vid > ? ORDER BY vid", (self._newest_vid(),)
            ).fetchall()
            if rows:
                self._pending_vids += [r[0] for r in rows]
                self._pending_vectors.append(np.stack([self._from_blob(r[1]) for r in rows]))
                self._dirty = True
            oldest, newest = self._db.execute("SELECT MIN(seq), MAX(seq) FROM deleted_vids").fetchone()
            if newest is not None and newest > self._seen_delete:
                if oldest > self._seen_delete + 1:  # the log was trimmed past us: compare with every vid
                    live = np.fromiter((r[0] for r in self._db.execute("SELECT vid FROM items")), np.int64)
                    known = np.concatenate([self._vids, np.asarray(self._pending_vids, dtype=np.int64)])
                    dead = known[~np.isin(known, live)]
                else:
                    logged = self._db.execute("SELECT vid FROM deleted_vids WHERE seq > ?", (self._seen_delete,))
                    dead = np.fromiter((r[0] for r in logged), np.int64)
                self._drop_pending(dead)
                self._mark_dead(dead.tolist())
                self._seen_delete = newest
                self._dirty = True
            if len(self._pending_vids) >= GRAPH_BATCH:
                self._flush_pending()
            self._data_version = version

    def _trim_tombstones(self) -> None:
        oldest, newest = self._db.execute("SELECT MIN(seq), MAX(seq) FROM deleted_vids").fetchone()
        if newest is not None and newest - oldest >= 2 * TOMBSTONES_KEPT:
            with self._db:
                self._db.execute("DELETE FROM deleted_vids WHERE seq <= ?", (newest - TOMBSTONES_KEPT,))
