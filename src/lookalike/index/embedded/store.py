"""The SQLite store of an embedded index: the source of truth for items, notes and settings.

Every write is one transaction here, so a crash loses nothing that was committed; the FAISS structure is derived
from it (``structure.py``). Layout::

    meta         key -> value: the settings as JSON, notes under ``note:NAME``
    items        vid (grows, never reused), id, location, content_hash, metadata (JSON), vector, colour
    deleted_vids a log of deleted vids, so other processes mask them without rescanning (``sync.py``)

The layout has a schema version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`) and an explicit migration
path: :func:`migrate` brings a store made by an earlier release up to date, one step a version (each step one
write transaction), when it is opened for writing; a read-only store of a known older version is read as it
is. A store newer than this code is refused by :func:`_connect` with an :class:`IndexFormatError`, before any
statement could misread it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import IndexFormatError
from lookalike.index import validate
from lookalike.index.base import Item
from lookalike.index.embedded.state import EmbeddedState

SQLITE_NAME = "index.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    vid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    location TEXT,
    content_hash TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    vector BLOB NOT NULL,
    colour BLOB
);
CREATE TABLE IF NOT EXISTS deleted_vids (seq INTEGER PRIMARY KEY AUTOINCREMENT, vid INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS items_deleted AFTER DELETE ON items BEGIN
    INSERT INTO deleted_vids (vid) VALUES (old.vid);
END;
"""

SCHEMA_VERSION = 1
"""The layout this code writes. 0: every release before the store was versioned (an index made before colour
descriptors lacks the ``colour`` column); 1: the colour column is there and the version is recorded."""
COLOUR_COLUMN = "ALTER TABLE items ADD COLUMN colour BLOB"
"""Indexes made before colour descriptors lack the column; opening one for writing adds it (instant in SQLite:
old rows read NULL, no row is rewritten). Read-only, it is left as it is and every colour reads None."""

NOTE_PREFIX, NOTE_PREFIX_END = "note:", "note;"
"""Notes live in ``meta`` under ``note:NAME`` (``;`` follows ``:``, so the two bound a range scan)."""


class StoreMixin(EmbeddedState):
    """The item and note reads and the note writes of :class:`EmbeddedIndex` (``self._db``, under ``self._lock``)."""

    def get(self, id: str, with_vector: bool = False) -> Item | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT id, vector, metadata, location, content_hash, {self._colour()} FROM items WHERE id = ?", (id,)
            ).fetchone()
        if row is None:
            return None
        return self._item(row, with_vector)

    def _item(self, row: tuple[Any, ...], with_vector: bool) -> Item:
        item_id, blob, metadata, location, content_hash, colour = row
        vector = self._from_blob(blob).copy() if with_vector else None
        return Item(item_id, vector, json.loads(metadata), location, content_hash, _colour_of(colour))

    def _colour(self) -> str:
        """The colour column to select (NULL in an old index opened read-only, which has none)."""
        return "colour" if self._colour_column else "NULL"

    def colours(self, ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        ids = list(ids)
        found: dict[str, np.ndarray | None] = dict.fromkeys(ids)
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._db.execute(
                    f"SELECT id, {self._colour()} FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((item_id, _colour_of(blob)) for item_id, blob in rows)
        return found

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def content_hashes(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._db.execute("SELECT id, content_hash FROM items"))

    def iter_items(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[Item]]:
        last = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT vid, id, vector, metadata, location, content_hash, {self._colour()} FROM items "
                    "WHERE vid > ? ORDER BY vid LIMIT ?",
                    (last, batch_size),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [self._item(row[1:], with_vectors) for row in rows]

    def _vids_of(self, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT id, vid FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update(rows)
        return found

    def _iter_vectors(self, batch_size: int = 10_000) -> Iterator[list[tuple[int, np.ndarray]]]:
        last = -1
        while rows := self._db.execute(
            "SELECT vid, vector FROM items WHERE vid > ? ORDER BY vid LIMIT ?", (last, batch_size)
        ).fetchall():
            last = rows[-1][0]
            yield [(vid, self._from_blob(blob)) for vid, blob in rows]

    def _from_blob(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=np.float32)

    def notes(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (NOTE_PREFIX, NOTE_PREFIX_END)
            ).fetchall()
        return {key[len(NOTE_PREFIX) :]: json.loads(value) for key, value in rows}

    def write_note(self, name: str, value: Mapping[str, Any] | None) -> None:
        text = validate.check_note(name, value)
        with self._lock, self._db:
            if text is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (NOTE_PREFIX + name,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (NOTE_PREFIX + name, text))


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _to_version_1(connection: sqlite3.Connection) -> None:
    """0 -> 1: give an index made before colour descriptors its column (instant in SQLite: old rows read
    NULL, no row is rewritten)."""
    if not _has_colour_column(connection):
        connection.execute(COLOUR_COLUMN)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _to_version_1}
"""version -> the step that makes a store of that version the next one (inside its write transaction)."""


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the store up to :data:`SCHEMA_VERSION`, one step a version, each in a write transaction of its own
    (so a crash leaves a whole version), re-reading the version under the write lock (two processes opening one
    old index: one migrates). A read-only store is left as it is: every version this code knows reads as is."""
    try:
        while (version := schema_version(connection)) < SCHEMA_VERSION:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                if schema_version(connection) == version:
                    MIGRATIONS[version](connection)
                    connection.execute(f"PRAGMA user_version = {version + 1}")
    except sqlite3.OperationalError as error:
        if "readonly" not in str(error) and "read-only" not in str(error):
            raise


def _check_version(connection: sqlite3.Connection, path: Path) -> None:
    version = schema_version(connection)
    if version > SCHEMA_VERSION:
        raise IndexFormatError(
            f"the index store {path} has schema version {version}; this lookalike knows up to {SCHEMA_VERSION}. "
            "A newer lookalike probably made it: upgrade lookalike to open it"
        )


def _has_colour_column(connection: sqlite3.Connection) -> bool:
    return any(row[1] == "colour" for row in connection.execute("PRAGMA table_info(items)"))


def _colour_of(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


def _connect(path: Path) -> sqlite3.Connection:
    # A generous busy timeout: a writer waits for another writer's transaction (WAL readers never wait).
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60.0)
    connection.isolation_level = "DEFERRED"
    try:
        _check_version(connection, path)  # before any statement: a newer layout must not be touched
    except IndexFormatError:
        connection.close()
        raise
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(SCHEMA)
    return connection
