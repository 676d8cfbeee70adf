"""The default index: FAISS for the vectors, SQLite for ids, metadata and the vectors themselves.

SQLite is the source of truth and every write is one transaction there, so a crash loses nothing that was
committed. The FAISS file is a checkpoint of the search structure, derived from SQLite: on open, vectors
committed after the last checkpoint are added and ones deleted since are hidden. Deletes and upserts never
rebuild: a replaced or deleted vector stays in the graph (still useful for navigation) but is masked by a
bitmap of live positions; ``compact`` rebuilds once dead vectors pile up.

Layout of an index directory::

    index.sqlite    meta (settings as JSON) and items(vid, id, location, content_hash, metadata, vector, colour)
    vectors.faiss   IndexIDMap over the search structure; its ids are the items' vids

The search structure follows ``IndexSettings``: float32 ``IndexFlat`` or ``IndexHNSWFlat`` (the defaults), or
a *lossy* one built with FAISS's index factory (fp16, 8-bit scalar or product quantization; HNSW or IVF; an
optional PCA in front), always wrapped in ``IndexRefineFlat`` so that the float vectors travel with it in the
one checkpoint file. That float store is what ``exact=True`` and selective filters brute-force over, and what
re-scores the candidates the quantized structure finds, so every result carries its exact score. With
``rerank_encoding`` "sq8" or "fp16" that store holds codes instead (``IndexRefine`` over an
``IndexScalarQuantizer``: a quarter or half of the floats' memory) and the final k are re-scored from the float
vectors in SQLite.

Structures that must be trained (IVF, PQ, SQ8, PCA) start as a float ``IndexFlat`` ("staging": every query is
exact brute force) and are trained at the first checkpoint (``save``, ``close``, the end of an ingest) that
finds at least :func:`training_size` live vectors, on a sample of up to ``TRAIN_SAMPLE`` of them; later adds go
into the trained structure without retraining (``rebuild`` retrains, e.g. after the catalogue changed a lot).

A saved checkpoint opens memory-mapped (``IO_FLAG_MMAP_IFC | IO_FLAG_READ_ONLY``): opening costs only the
parts FAISS must copy (IVF lists, HNSW levels, the id map), the pages of codes and graph are shared with the
page cache and with every other process that opens the same index. FAISS cannot write to a mapped structure,
so the first write after opening copies the checkpoint into memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lookalike.errors import IndexError_
from lookalike.index import validate
from lookalike.index.base import VectorIndex
from lookalike.index.embedded import store
from lookalike.index.embedded.planner import PlannerMixin
from lookalike.index.embedded.positions import GRAPH_BATCH, PositionsMixin
from lookalike.index.embedded.store import SQLITE_NAME, StoreMixin, _has_colour_column
from lookalike.index.embedded.structure import FAISS_NAME, StructureMixin, structure_name, structure_of, training_size
from lookalike.index.embedded.summaries import SummariesMixin
from lookalike.index.embedded.sync import SyncMixin
from lookalike.index.settings import IndexSettings, full_record, settings_from_record
from lookalike.index.validate import Batch, Limits


class EmbeddedIndex(SyncMixin, PlannerMixin, PositionsMixin, StructureMixin, SummariesMixin, StoreMixin, VectorIndex):
    """FAISS + SQLite in one directory; open with :meth:`create` or :meth:`open`.

    Each job is a mixin of its own module (store, summaries, structure, positions, planner, sync); this class
    holds the state they share and the operations that span them: opening, writing, stats, rebuilding."""

    limits = Limits("the embedded backend", embedded_options=True)
    _use_mmap = False  # open() sets it: map a saved checkpoint instead of reading it

    def __init__(self, path: Path, connection: sqlite3.Connection, settings: IndexSettings) -> None:
        self.path = path
        self.settings = settings
        self._db = connection
        self._colour_column = _has_colour_column(connection)
        self._lock = threading.RLock()
        self._faiss: faiss.Index
        self._faiss_owner: faiss.Index | None  # the checkpoint's IndexIDMap2, which owns self._faiss
        self._vids: np.ndarray  # position in self._faiss -> vid
        self._live: np.ndarray  # position -> still an item
        self._mapped = False  # self._faiss is a read-only memory map of the checkpoint
        self._stages = training_size(settings) > 0  # starts as a float IndexFlat until trained
        self._reset_faiss()
        self._dirty = False
        self._data_version = -1  # SQLite's counter of other connections' commits, when we last caught up
        self._writes = 0  # writes through this object: with data_version, whether the items changed
        self._summaries: dict[str, Any] = {}  # unfiltered facets, ranges and fields (see _cached)
        self._summaries_version: tuple[int, int] | None = None
        self._seen_delete = 0  # the newest deleted_vids entry reflected in self._live
        self._mark_synced()

    @classmethod
    def create(cls, path: str | Path, settings: IndexSettings) -> EmbeddedIndex:
        """A new, empty index at ``path`` (which must not hold one already)."""
        path = Path(path)
        if (path / SQLITE_NAME).exists():
            raise IndexError_(f"an index already exists at {path}")
        validate.check_settings(settings, cls.limits)
        path.mkdir(parents=True, exist_ok=True)
        # Made under a temporary name and renamed: a crash here leaves no index rather than one without settings.
        staging = path / (SQLITE_NAME + ".tmp")
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
            leftover.unlink(missing_ok=True)
        with contextlib.closing(store._connect(staging)) as connection, connection:
            connection.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(full_record(settings)),))
            connection.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION}")
        os.replace(staging, path / SQLITE_NAME)
        connection = store._connect(path / SQLITE_NAME)
        index = cls(path, connection, settings)
        index.save()
        return index

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True) -> EmbeddedIndex:
        """Open an existing index, bringing its FAISS checkpoint up to date with SQLite.

        ``mmap``: map a saved checkpoint rather than read it (fast start, one copy shared by processes).
        """
        path = Path(path)
        if not (path / SQLITE_NAME).is_file():
            raise IndexError_(f"no index at {path} (build one with: lookalike index SOURCE --index {path})")
        connection = store._connect(path / SQLITE_NAME)
        row = connection.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            raise IndexError_(f"{path / SQLITE_NAME} has no settings: not a lookalike index")
        settings = settings_from_record(json.loads(row[0]), f"the index at {path}")
        store.migrate(connection)  # an index made by an earlier release: brought up to this schema (if writable)
        index = cls(path, connection, settings)
        index._use_mmap = mmap
        with index._snapshot():
            index._load_checkpoint()
        return index

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / SQLITE_NAME).is_file()

    def _write(self, batch: Batch) -> None:
        items, vectors, metadata, colours = batch.items, batch.vectors, batch.metadata_json, batch.colours
        ids = batch.ids
        # An old index opened read-only has no colour column; the insert then fails as any write would there.
        columns = ("id", "location", "content_hash", "metadata", "vector", "colour")[: 6 if self._colour_column else 5]
        insert = f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) RETURNING vid"
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")  # the write lock first, so no one commits between
                self._catch_up()  # catching up and our insert: our new vids follow every vid we know
                replaced = self._vids_of(ids)
                if replaced:
                    self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])
                new_vids = [
                    self._db.execute(
                        insert,
                        (
                            item.id,
                            item.location,
                            item.content_hash,
                            text,
                            vector.tobytes(),
                            None if colour is None else colour.tobytes(),
                        )[: len(columns)],
                    ).fetchone()[0]
                    for item, text, vector, colour in zip(items, metadata, vectors, colours, strict=True)
                ]
            self._writes += 1
            if replaced:
                self._flush_pending()
                self._mark_dead(list(replaced.values()))
            self._pending_vids += new_vids
            self._pending_vectors.append(vectors)
            if len(self._pending_vids) >= GRAPH_BATCH:
                self._flush_pending()
            self._dirty = True

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._catch_up()
                found = self._vids_of(ids)
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in found])
            self._writes += 1
            self._flush_pending()
            self._mark_dead(list(found.values()))
            self._dirty = self._dirty or bool(found)
            return len(found)

    def stats(self) -> dict[str, Any]:
        """Counts worth showing in ``lookalike info``."""
        with self._lock:
            self._catch_up()
            self._flush_pending()
            stats: dict[str, Any] = {
                "items": self.count(),
                "vectors_in_graph": int(self._faiss.ntotal),
                "dead_vectors": int((~self._live).sum()),
            }
            if self.settings.is_lossy():
                stats |= {
                    "structure": structure_name(self.settings),
                    "trained": not self._staging(),
                    "memory_mapped": self._mapped,
                }
            return stats

    @classmethod
    def rebuild(cls, path: str | Path, settings: IndexSettings) -> EmbeddedIndex:
        """Give an index another search structure (kind, encoding, PCA, ...), built from the vectors in SQLite.

        What the vectors are (dimension, metric, model) cannot change: that needs re-embedding.
        """
        validate.check_settings(settings, cls.limits)
        with cls.open(path, mmap=True) as index:
            old = index.settings
        if (settings.dim, settings.metric, dict(settings.embedding)) != (old.dim, old.metric, dict(old.embedding)):
            raise IndexError_("rebuild changes the structure only; dim, metric and model must stay as they are")
        path = Path(path)
        structure_kept = structure_of(settings) == structure_of(old)
        connection = store._connect(path / SQLITE_NAME)
        with connection:
            connection.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(full_record(settings)),))
        connection.close()
        if not structure_kept:  # only query-time parameters changed: the checkpoint stays as it is
            (path / FAISS_NAME).unlink(missing_ok=True)
        index = cls.open(path)
        index.save()
        return index

    @classmethod
    def reproject(
        cls,
        path: str | Path,
        transform: Callable[[np.ndarray], np.ndarray],
        embedding: Mapping[str, Any],
        batch_size: int = 10_000,
    ) -> EmbeddedIndex:
        """Replace every stored vector ``v`` by ``transform(v)`` and the recorded model descriptor by
        ``embedding``, as one SQLite transaction (``lookalike adapt``): either every vector and the
        descriptor change, or nothing does. The search structure is then rebuilt from SQLite.

        The checkpoint is deleted before the commit: a crash between the two leaves the old vectors and a
        structure to rebuild from them, never a checkpoint of vectors SQLite no longer holds. Processes that
        have the index open keep searching their old structure until they reopen it.
        """
        path = Path(path)
        with cls.open(path, mmap=True) as index:
            settings = index.settings
        changed = IndexSettings(**{**asdict(settings), "embedding": dict(embedding)})
        connection = store._connect(path / SQLITE_NAME)
        try:
            connection.execute("BEGIN IMMEDIATE")
            last = -1
            while rows := connection.execute(
                "SELECT vid, id, vector FROM items WHERE vid > ? ORDER BY vid LIMIT ?", (last, batch_size)
            ).fetchall():
                last = rows[-1][0]
                vectors = transform(np.stack([np.frombuffer(row[2], dtype=np.float32) for row in rows]))
                updates = [
                    (validate.check_vector(row[1], vector, settings.dim, settings.metric).tobytes(), row[0])
                    for row, vector in zip(rows, vectors, strict=True)
                ]
                connection.executemany("UPDATE items SET vector = ? WHERE vid = ?", updates)
            connection.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(full_record(changed)),))
            (path / FAISS_NAME).unlink(missing_ok=True)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()
        index = cls.open(path)
        index.save()
        return index

    def close(self) -> None:
        with self._lock:
            self.save()
            self._db.close()
