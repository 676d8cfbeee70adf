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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lookalike.errors import IndexError_
from lookalike.index import filters, validate
from lookalike.index.base import Item, VectorIndex
from lookalike.index.results import (
    Hit,
    choose_facets,
    facets_under,
    from_similarity,
    from_squared_l2,
    from_unit_squared_l2,
)
from lookalike.index.settings import IndexSettings, full_record, settings_from_record
from lookalike.index.validate import Batch, Limits

SQLITE_NAME = "index.sqlite"
FAISS_NAME = "vectors.faiss"
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
COLOUR_COLUMN = "ALTER TABLE items ADD COLUMN colour BLOB"
"""Indexes made before colour descriptors lack the column; opening one for writing adds it (instant in SQLite:
old rows read NULL, no row is rewritten). Read-only, it is left as it is and every colour reads None."""
NOTE_PREFIX, NOTE_PREFIX_END = "note:", "note;"
"""Notes live in ``meta`` under ``note:NAME`` (``;`` follows ``:``, so the two bound a range scan)."""
TOMBSTONES_KEPT = 100_000
"""``deleted_vids`` logs every deleted vid so that other processes can mask them without rescanning; ``save``
trims it to the newest entries. A reader further behind than that reconciles with a scan of the vids instead."""
EXACT_SUBSET_FRACTION = 0.05
"""A filter matching fewer than this share of the items is answered by brute force over the matches: faster
than walking the graph, and it always finds k results when k exist (what OpenSearch's filtering does too)."""
COMPACT_DEAD_FRACTION = 0.25
MAX_EF_SEARCH = 4096
"""Upper bound of the widened candidate list of a filtered graph walk (see ``_approximate``)."""
GRAPH_BATCH = 2048
"""New vectors reach the HNSW graph in batches this large: FAISS builds a graph ~10x faster per vector in big
parallel batches than 32 at a time (0.18 against ~2 ms per 1280-d vector on 2 cores). They are durable in
SQLite at once, and a search brute-forces the ones not in the graph yet and merges them in, so nobody sees the
difference (and a server catching up with another process's small commits does not pay for small inserts)."""


TRAIN_SAMPLE = 100_000
"""At most this many vectors train a structure: FAISS's k-means uses at most 256 per IVF cell anyway, and PQ,
SQ ranges and PCA are stable well before (training on 100,000 1280-d vectors: ~1 min on 2 cores for IVF1024)."""
ADD_CHUNK = 50_000
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
STORE_RECHECK = 3
"""Brute force over a quantized re-scoring store hands this many times k candidates to the float check."""
STORE_QUANTIZERS = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
"""The re-scoring store's codes for ``rerank_encoding`` ("none" is ``IndexRefineFlat``'s float store)."""


FACTORY_CODES = {"none": "Flat", "fp16": "SQfp16", "sq8": "SQ8"}
"""FAISS index-factory names of the encodings (PQ's depends on its settings: see ``factory_string``)."""


def factory_string(settings: IndexSettings) -> str:
    """The FAISS index-factory description of a lossy structure (inside its ``IndexRefineFlat``)."""
    code = FACTORY_CODES | {"pq": f"PQ{settings.pq_m}x{settings.pq_bits}"}
    parts = [f"PCA{settings.reduce_dim}"] if settings.reduce_dim else []
    if settings.kind == "exact":
        parts.append(code[settings.encoding])
    elif settings.kind == "hnsw":
        parts.append(f"HNSW{settings.hnsw_m}" + ("" if settings.encoding == "none" else f",{code[settings.encoding]}"))
    else:
        parts.append(f"IVF{settings.ivf_lists},{code[settings.encoding]}")
    return ",".join(parts)


def structure_name(settings: IndexSettings) -> str:
    """How ``lookalike info`` names a lossy structure: the refine wrapper, its structure and its store."""
    if settings.rerank_encoding == "none":
        return f"IndexRefineFlat({factory_string(settings)})"
    return f"IndexRefine({factory_string(settings)}; store {FACTORY_CODES[settings.rerank_encoding]})"


def training_size(settings: IndexSettings) -> int:
    """Live vectors needed before training: FAISS wants >= 39 points per k-means centroid (IVF cells, PQ
    codewords); SQ8 ranges and PCA need a fair sample of the catalogue. 0 = nothing to train."""
    need = 0
    if settings.kind == "ivf":
        need = max(need, 39 * settings.ivf_lists)
    if settings.encoding == "pq":
        need = max(need, 39 * 2**settings.pq_bits)
    if settings.encoding == "sq8":
        need = max(need, 1000)
    if settings.reduce_dim:
        need = max(need, 4 * settings.reduce_dim)
    return need


QUERY_TIME_SETTINGS = ("ef_search", "nprobe", "rerank")
"""Settings read at query time only: ``rebuild`` changes them without touching the structure."""


def structure_of(settings: IndexSettings) -> dict[str, Any]:
    """The settings that make the FAISS structure what it is (all but the query-time ones)."""
    return {key: value for key, value in asdict(settings).items() if key not in QUERY_TIME_SETTINGS}


def _core(index: faiss.Index) -> faiss.Index:
    """The structure under the refine and PCA wrappers (where HNSW or IVF parameters live)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def _store_kind(index: faiss.Index) -> str:
    """What a refine wrapper re-scores with ("flat", or the scalar quantizer's type), "" for other indexes."""
    index = faiss.downcast_index(index)
    if not isinstance(index, faiss.IndexRefine):
        return ""
    store = faiss.downcast_index(index.refine_index)
    return f"sq{store.sq.qtype}" if isinstance(store, faiss.IndexScalarQuantizer) else "flat"


class EmbeddedIndex(VectorIndex):
    """FAISS + SQLite in one directory; open with :meth:`create` or :meth:`open`."""

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

    # ----------------------------------------------------------------------------------- opening
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
        with contextlib.closing(_connect(staging)) as connection, connection:
            connection.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(full_record(settings)),))
        os.replace(staging, path / SQLITE_NAME)
        connection = _connect(path / SQLITE_NAME)
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
        connection = _connect(path / SQLITE_NAME)
        row = connection.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            raise IndexError_(f"{path / SQLITE_NAME} has no settings: not a lookalike index")
        settings = settings_from_record(json.loads(row[0]), f"the index at {path}")
        _add_colour_column(connection)
        index = cls(path, connection, settings)
        index._use_mmap = mmap
        with index._snapshot():
            index._load_checkpoint()
        return index

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / SQLITE_NAME).is_file()

    def _new_faiss(self) -> faiss.Index:
        """The (empty, possibly untrained) search structure the settings describe."""
        settings = self.settings
        if not settings.is_lossy():
            metric = faiss.METRIC_INNER_PRODUCT if settings.metric == "cosine" else faiss.METRIC_L2
            if settings.kind == "exact":
                return faiss.IndexFlat(settings.dim, metric)
            index = faiss.IndexHNSWFlat(settings.dim, settings.hnsw_m, metric)
            index.hnsw.efConstruction = settings.ef_construction
            index.hnsw.efSearch = settings.ef_search
            return index
        # Lossy structures compare by L2, also for cosine (over unit vectors, where it orders like the inner
        # product): PCA centres the data and k-means assumes L2, which the inner product would not survive.
        structure = faiss.index_factory(settings.dim, factory_string(settings), faiss.METRIC_L2)
        if settings.rerank_encoding == "none":
            refined = faiss.IndexRefineFlat(structure)
        else:
            quantizer = STORE_QUANTIZERS[settings.rerank_encoding]
            store = faiss.IndexScalarQuantizer(settings.dim, quantizer, faiss.METRIC_L2)
            refined = faiss.IndexRefine(structure, store)  # FAISS's Python layer keeps both alive with it
        self._configure(refined)
        return refined

    def _configure(self, index: faiss.Index) -> None:
        core = _core(index)
        if isinstance(core, faiss.IndexHNSW):
            core.hnsw.efConstruction = self.settings.ef_construction
            core.hnsw.efSearch = self.settings.ef_search
        if isinstance(core, faiss.IndexIVF):
            core.nprobe = self.settings.nprobe

    def _staging(self) -> bool:
        """Whether the structure still waits for training (and is a float IndexFlat meanwhile)."""
        return self._stages and not isinstance(self._faiss, faiss.IndexRefine)

    def _reset_faiss(self) -> None:
        # Only lossy structures need training, and they compare by L2: so does their staging IndexFlat.
        fresh = faiss.IndexFlat(self.settings.dim, faiss.METRIC_L2) if self._stages else self._new_faiss()
        self._faiss, self._faiss_owner, self._mapped = fresh, None, False
        self._vids, self._live = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        self._pending_vids: list[int] = []
        self._pending_vectors: list[np.ndarray] = []
        self._pending_cache: tuple[int, np.ndarray] | None = None  # (how many, the pending vectors as FAISS has them)

    def _load_checkpoint(self) -> None:
        checkpoint = self.path / FAISS_NAME
        if checkpoint.is_file():
            try:
                # an IndexIDMap (IndexIDMap2 before) that owns the inner index
                wrapper = faiss.read_index(str(checkpoint), MMAP_FLAGS if self._use_mmap else 0)
                wrapped = isinstance(wrapper, faiss.IndexIDMap | faiss.IndexIDMap2)
                inner = faiss.downcast_index(wrapper.index) if wrapped else None
                if inner is None or not self._is_ours(inner):
                    raise ValueError(f"{checkpoint} is not this index's checkpoint")
                self._vids = faiss.vector_to_array(wrapper.id_map).astype(np.int64)
                self._faiss = inner
                self._faiss_owner = wrapper  # keeps the inner index alive exactly as long as we use it
                self._mapped = self._use_mmap
                self._configure(inner)
            except (RuntimeError, ValueError):
                self._reset_faiss()  # unreadable or foreign checkpoint: rebuilt from SQLite below
        live_vids = np.fromiter((r[0] for r in self._db.execute("SELECT vid FROM items")), dtype=np.int64)
        self._live = np.isin(self._vids, live_vids)
        missing = np.setdiff1d(live_vids, self._vids, assume_unique=True)
        if self._vids.size and missing.size and missing.min() < self._vids.max():
            # Vids only grow, so anything older than the checkpoint's newest must already be in it.
            self._reset_faiss()
            missing = np.sort(live_vids)
        for chunk in np.array_split(missing, max(1, len(missing) // 10_000)):
            if chunk.size:
                rows = self._db.execute(
                    f"SELECT vid, vector FROM items WHERE vid IN ({','.join('?' * len(chunk))}) ORDER BY vid",
                    [int(v) for v in chunk],
                ).fetchall()
                self._append([r[0] for r in rows], np.stack([self._from_blob(r[1]) for r in rows]))
        self._dirty = bool(missing.size)

    # ----------------------------------------------------------------------------------- writing
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

    def _vids_of(self, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT id, vid FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update(rows)
        return found

    def _is_ours(self, inner: faiss.Index) -> bool:
        """Whether a checkpoint's structure is what these settings build (or their untrained staging)."""
        if inner.d != self.settings.dim:
            return False
        # isinstance, not type equality: FAISS reads an IndexFlat back as IndexFlatIP or IndexFlatL2.
        if self._stages and isinstance(inner, faiss.IndexFlat):
            return inner.metric_type == faiss.METRIC_L2
        expected = self._new_faiss()
        return (
            isinstance(inner, type(expected))
            and isinstance(_core(inner), type(_core(expected)))
            and inner.metric_type == expected.metric_type
            and _store_kind(inner) == _store_kind(expected)
        )

    def _make_writable(self) -> None:
        """FAISS aborts the process on a write to a mapped structure: copy the checkpoint into memory first."""
        if not self._mapped:
            return
        wrapper = faiss.read_index(str(self.path / FAISS_NAME))
        inner = faiss.downcast_index(wrapper.index)
        ids = faiss.vector_to_array(wrapper.id_map)
        if not (inner.ntotal == self._faiss.ntotal and np.array_equal(ids, self._vids) and self._is_ours(inner)):
            # Another process replaced the checkpoint since we mapped it (a server beside an ingest): copy the
            # mapping itself into memory (FAISS serialises from it; ~14 ms per 5,000 64-d vectors) rather
            # than rebuild the whole graph from SQLite while every query waits.
            wrapper = faiss.deserialize_index(faiss.serialize_index(self._faiss_owner))
            inner = faiss.downcast_index(wrapper.index)
        self._faiss, self._faiss_owner, self._mapped = inner, wrapper, False
        self._configure(inner)

    def _append(self, vids: Sequence[int], vectors: np.ndarray) -> None:
        """Add committed vectors (every caller passes rows that are in SQLite already)."""
        self._make_writable()
        self._faiss.add(self._for_faiss(vectors))
        self._vids = np.concatenate([self._vids, np.asarray(vids, dtype=np.int64)])
        self._live = np.concatenate([self._live, np.ones(len(vids), dtype=bool)])

    def _flush_pending(self) -> None:
        """Add the vectors committed since the last flush to the FAISS structure."""
        if self._pending_vids:
            vids, vectors = self._pending_vids, np.concatenate(self._pending_vectors)
            self._pending_vids, self._pending_vectors, self._pending_cache = [], [], None
            self._append(vids, vectors)

    def _mark_dead(self, vids: Sequence[int]) -> None:
        if vids:
            self._live[self._positions(np.asarray(vids, dtype=np.int64))] = False

    def _positions(self, vids: np.ndarray) -> np.ndarray:
        """Vids to FAISS positions: vids are appended in increasing order, so a binary search finds them."""
        positions = np.searchsorted(self._vids, vids)
        inside = positions < len(self._vids)
        positions, vids = positions[inside], vids[inside]
        return positions[self._vids[positions] == vids]

    def _for_faiss(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.settings.metric == "cosine":
            vectors = vectors.copy()
            faiss.normalize_L2(vectors)
        return vectors

    def _from_blob(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=np.float32)

    # ----------------------------------------------------------------------------------- reading
    def _knn(self, query: np.ndarray, k: int, conditions: list[filters.Condition], exact: bool) -> list[Hit]:
        # Compiled before taking the lock: only running the statement holds it up for other requests.
        where = filters.to_sql(conditions) if conditions else None
        with self._lock:
            self._catch_up()
            if not (self._mapped or isinstance(_core(self._faiss), faiss.IndexHNSW)):
                self._flush_pending()  # cheap to add to anything but a graph or a mapped (read-only) checkpoint
            allowed = self._allowed(where)
            n_allowed = int(allowed.sum())
            # A quantized re-scoring store's distances are re-checked with the floats (not while staging: a
            # float brute force is exact already).
            rescore = self.settings.rerank_encoding != "none" and self.settings.rerank > 0 and not self._staging()
            pending = self._search_pending(query, where, k)
            if n_allowed == 0 and pending is None:
                return []
            distances, positions = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
            if n_allowed:
                k_eff = min(k, n_allowed)
                plain_flat = self.settings.kind == "exact" and not self.settings.is_lossy()
                brute = exact or plain_flat or self._staging() or n_allowed < EXACT_SUBSET_FRACTION * allowed.size
                # Brute force over a quantized store re-checks more than k with the floats, so that codes
                # ranking a true neighbour just below the k-th cannot drop it.
                k_brute = min(n_allowed, STORE_RECHECK * k_eff) if rescore else k_eff
                if brute:
                    distances, positions = self._exact(query, allowed, k_brute)
                else:
                    distances, positions = self._approximate(query, allowed, n_allowed, k_eff)
                if len(positions) < k_eff:  # the graph walk ran out before finding k matches
                    distances, positions = self._exact(query, allowed, k_brute)
            vids = self._vids[positions]
            if pending is not None:
                distances, vids = np.concatenate([distances, pending[0]]), np.concatenate([vids, pending[1]])
                larger_is_better = self._float_store().metric_type == faiss.METRIC_INNER_PRODUCT
                order = np.argsort(-distances if larger_is_better else distances, kind="stable")
                distances, vids = distances[order], vids[order]
            return self._results(distances, vids, k, query if rescore else None)

    def _search_pending(
        self, query: np.ndarray, where: tuple[str, list[Any]] | None, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Brute force over the vectors committed but not yet in the graph: (raw distances, vids), or None.

        Inserting vectors into an HNSW graph a few at a time costs milliseconds each (~10x more than in a
        batch of GRAPH_BATCH), so a reader does not insert another process's every small commit before each
        query; up to GRAPH_BATCH vectors are searched exactly instead (about a millisecond for 2,048)."""
        if not self._pending_vids:
            return None
        vids = np.asarray(self._pending_vids, dtype=np.int64)
        if self._pending_cache is None or self._pending_cache[0] != vids.size:
            self._pending_cache = (vids.size, self._for_faiss(np.concatenate(self._pending_vectors)))
        vectors = self._pending_cache[1]
        if where is not None:
            clause, params = where
            passing = self._db.execute(f"SELECT vid FROM items WHERE vid >= ? AND {clause}", [int(vids[0]), *params])
            keep = np.isin(vids, np.fromiter((r[0] for r in passing), dtype=np.int64))
            vids, vectors = vids[keep], vectors[keep]
            if not vids.size:
                return None
        metric = self._float_store().metric_type
        distances, order = faiss.knn(self._for_faiss(query[None]), vectors, min(k, vids.size), metric=metric)
        return distances[0], vids[order[0]]

    def _allowed(self, where: tuple[str, list[Any]] | None) -> np.ndarray:
        """Mask over FAISS positions of live items that pass the filter, compiled by ``filters.to_sql`` (None:
        no filter). The statement's size does not grow with the number of values, so preparing it is cheap."""
        if where is None:
            return self._live
        clause, params = where
        vids = np.fromiter(
            (r[0] for r in self._db.execute(f"SELECT vid FROM items WHERE {clause}", params)), dtype=np.int64
        )
        mask = np.zeros_like(self._live)
        mask[self._positions(np.sort(vids))] = True
        return mask & self._live

    def _approximate(
        self, query: np.ndarray, allowed: np.ndarray, n_allowed: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n_allowed`` is ``allowed.sum()``, which the caller has: another pass over a million-entry mask
        costs about 0.6 ms, a fifth of a query."""
        core = _core(self._faiss)
        params: Any
        if isinstance(core, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()
            ef = max(self.settings.ef_search, 2 * k * (max(self.settings.rerank, 1) if self.settings.is_lossy() else 1))
            # Filtered-out nodes (dead copies of replaced items, or items a filter rejects) still fill the walk's
            # candidate list: widen it by the share that passes, so as many *passing* candidates are weighed as
            # in an unfiltered search (below EXACT_SUBSET_FRACTION the search is brute force instead).
            passing = max(n_allowed / allowed.size, EXACT_SUBSET_FRACTION)
            params.efSearch = int(min(ef / passing, MAX_EF_SEARCH))
        elif isinstance(core, faiss.IndexIVF):
            params = faiss.SearchParametersIVF()
            params.nprobe = self.settings.nprobe
        else:
            params = faiss.SearchParameters()
        keep_alive = [params]  # SWIG holds raw pointers: the Python objects must outlive the search
        if n_allowed < allowed.size:
            selector = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
            params.sel = selector
            keep_alive.append(selector)
        if self.settings.reduce_dim:
            outer = faiss.SearchParametersPreTransform()
            outer.index_params = params
            params = outer
            keep_alive.append(params)
        searched = self._faiss
        if isinstance(searched, faiss.IndexRefine) and self.settings.rerank == 0:
            # No re-scoring: the quantized distances are the scores, and a query never reads the float store,
            # so the resident memory is the codes and the graph or lists alone.
            searched = faiss.downcast_index(searched.base_index)
        elif isinstance(searched, faiss.IndexRefine):
            outer = faiss.IndexRefineSearchParameters()
            outer.k_factor = float(self.settings.rerank)
            outer.base_index_params = params
            params = outer
            keep_alive.append(params)
        # One query's graph walk or list scan is too small to split: an OpenMP team costs more than it saves
        # (IndexRefine over HNSW-SQ8, 1M vectors, busy 2-core machine: 7.5 ms with 2 threads, 1.6 ms with 1).
        # omp_set_num_threads only changes the calling thread's setting, so restore it for builds.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            distances, labels = searched.search(self._for_faiss(query[None]), k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        del keep_alive
        keep = labels[0] >= 0
        return distances[0][keep], labels[0][keep]

    def _exact(self, query: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force: over the few matching vectors gathered, or over all with a bitmap when many match."""
        storage = self._float_store()
        query = self._for_faiss(query[None])
        positions = np.flatnonzero(allowed)
        if positions.size <= EXACT_SUBSET_FRACTION * allowed.size:
            distances, order = faiss.knn(query, storage.reconstruct_batch(positions), k, metric=storage.metric_type)
            return distances[0], positions[order[0]]
        params = faiss.SearchParameters()
        selector = (
            faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little")) if positions.size < allowed.size else None
        )
        params.sel = selector
        distances, labels = storage.search(query, k, params=params)
        keep = labels[0] >= 0
        return distances[0][keep], labels[0][keep]

    def _float_store(self) -> faiss.Index:
        """The vectors by position: the flat index itself, HNSW's storage, or the refine store (float, or the
        codes of a ``rerank_encoding``)."""
        index = self._faiss
        if isinstance(index, faiss.IndexRefine):
            return faiss.downcast_index(index.refine_index)
        if isinstance(index, faiss.IndexHNSW):
            return faiss.downcast_index(index.storage)
        return index

    def _results(
        self, distances: np.ndarray, found: np.ndarray, k: int, rescore: np.ndarray | None = None
    ) -> list[Hit]:
        """The best ``k`` of ``found`` (ordered by ``distances``) as results, in one read of their rows.

        ``rescore`` (the query): replace the distances with exact squared L2 from the float vectors read in
        the same query, and re-order. A quantized re-scoring store ranks candidates to within its 8- or
        16-bit error; the floats of the few winners (~5 KB each) make scores and order exact."""
        if rescore is None:  # the order is final: read only the k rows shown
            distances, found = distances[:k], found[:k]
        vids = [int(v) for v in found]
        vector_column = ", vector" if rescore is not None else ""
        rows = {
            r[0]: r[1:]
            for r in self._db.execute(
                f"SELECT vid, id, metadata, location{vector_column} FROM items "
                f"WHERE vid IN ({','.join('?' * len(vids))})",
                vids,
            )
        }
        hits = [(float(raw), vid) for raw, vid in zip(distances, vids, strict=True) if vid in rows]
        if rescore is not None and hits:
            query = self._for_faiss(rescore[None])
            floats = self._for_faiss(np.stack([self._from_blob(rows[vid][3]) for _, vid in hits]))
            exact = ((floats - query) ** 2).sum(axis=1)
            hits = sorted(zip(exact.tolist(), (vid for _, vid in hits), strict=True), key=lambda hit: hit[0])
        return [Hit(rows[vid][0], self._distance(raw), rows[vid][1], rows[vid][2]) for raw, vid in hits[:k]]

    def _distance(self, raw: float) -> float:
        """FAISS gives squared L2 or inner product; report Euclidean distance or 1 - cosine."""
        if self.settings.metric == "cosine":
            # lossy structures compare unit vectors by squared L2, which is 2 - 2 cos
            return from_unit_squared_l2(raw) if self.settings.is_lossy() else from_similarity(raw)
        return from_squared_l2(raw)

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

    # ----------------------------------------------------------------------------------- metadata summaries
    # Facets, ranges and fields read every item's metadata (about 2 s for unfiltered facets over 100,000 items
    # of six fields, one of them an id). The unfiltered answers are kept until the items change (a write
    # through this object, or another process's commit: PRAGMA data_version), so the shop page's every-request
    # "facets of the whole catalogue" and the field cache's refreshes cost nothing while nothing is written.
    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` (a read of the items' metadata), or its answer kept from the same state of the items."""
        with self._lock:
            # Read before the statement: a commit in between makes the next call compute again (never stale).
            version = (self._db.execute("PRAGMA data_version").fetchone()[0], self._writes)
            if version != self._summaries_version or len(self._summaries) > 16:
                self._summaries, self._summaries_version = {}, version
            if name not in self._summaries:
                with self._snapshot():
                    self._summaries[name] = compute()
            return self._summaries[name]

    def fields(self) -> set[str]:
        def read() -> frozenset[str]:
            rows = self._db.execute("SELECT DISTINCT j.key FROM items, json_each(items.metadata) AS j")
            return frozenset(row[0] for row in rows)

        return set(self._cached("fields", read))

    def _facets(self, max_values: int, conditions: list[filters.Condition]) -> dict[str, dict[str, int]]:
        everything = self._cached(f"facets:{max_values}", lambda: choose_facets(self._value_counts(), max_values))
        if not conditions:
            return {key: dict(values) for key, values in everything.items()}
        where = filters.to_sql(conditions, "items.metadata")
        with self._lock:
            passing = self._value_counts(where, list(everything)) if everything else {}
        return facets_under(everything, passing)

    def _value_counts(
        self, where: tuple[str, list[Any]] | None = None, keys: list[str] | None = None
    ) -> dict[str, dict[str, int]]:
        """Field -> counted value -> items, over the items passing ``where`` and the fields in ``keys``."""
        clause, params = where or ("1", [])
        if keys is not None:
            clause += " AND j.key IN (SELECT value FROM json_each(?))"
            params = [*params, json.dumps(keys, ensure_ascii=False)]
        with self._lock:
            rows = self._db.execute(
                "SELECT j.key, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE j.value END, "
                "COUNT(*) FROM items, json_each(items.metadata) AS j "
                f"WHERE j.type IN ('text', 'integer', 'true', 'false') AND {clause} GROUP BY j.key, j.type, j.value",
                params,
            ).fetchall()
        result: dict[str, dict[str, int]] = {}
        for key, value, count in rows:
            values = result.setdefault(key, {})
            values[str(value)] = values.get(str(value), 0) + count  # 1 and "1" share a key: add, not overwrite
        return result

    def _ranges(self, conditions: list[filters.Condition]) -> dict[str, tuple[float, float]]:
        if not conditions:
            return dict(self._cached("ranges", self._spans))
        return self._spans(filters.to_sql(conditions, "items.metadata"))

    def _spans(self, where: tuple[str, list[Any]] | None = None) -> dict[str, tuple[float, float]]:
        clause, params = where or ("1", [])
        with self._lock:
            rows = self._db.execute(
                "SELECT j.key, MIN(j.value), MAX(j.value) FROM items, json_each(items.metadata) AS j "
                f"WHERE j.type IN ('integer', 'real') AND {clause} GROUP BY j.key ORDER BY j.key",
                params,
            ).fetchall()
        return {key: (float(low), float(high)) for key, low, high in rows}

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

    # ----------------------------------------------------------------------------------- notes
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

    # ----------------------------------------------------------------------------------- durability
    def save(self) -> None:
        """Write the FAISS checkpoint atomically (SQLite is already durable); compact first if worthwhile."""
        with self._lock:
            self._flush_pending()
            self._train_if_ready()
            dead = int((~self._live).sum())
            if dead and dead > COMPACT_DEAD_FRACTION * max(len(self._live), 1):
                self.compact()
            if not self._dirty and (self.path / FAISS_NAME).exists():
                return
            self._trim_tombstones()
            # IndexIDMap2 only wraps an empty index, so wrap a blank one and swap ours in: one file, one rename.
            # (IndexIDMap, not IndexIDMap2: the reverse map it would build on every open is never used.)
            wrapper = faiss.IndexIDMap(faiss.IndexFlat(self.settings.dim))
            # FAISS's SWIG layer hands ownership of an index assigned to a field over to the C++ side: take
            # it back, or the structure is never freed (every compacting save leaked the previous one).
            owned = self._faiss.this.own()
            wrapper.index, wrapper.ntotal = self._faiss, self._faiss.ntotal
            self._faiss.this.own(owned)
            faiss.copy_array_to_vector(self._vids, wrapper.id_map)
            tmp = self.path / (FAISS_NAME + ".tmp")
            faiss.write_index(wrapper, str(tmp))
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / FAISS_NAME)
            self._dirty = False

    def compact(self) -> None:
        """Rebuild the FAISS structure from the live vectors in SQLite, dropping dead ones."""
        with self._lock:
            self._reset_faiss()  # pending vectors are in SQLite, so the rebuild includes them
            for batch in self._iter_vectors():
                self._append([vid for vid, _ in batch], np.stack([vector for _, vector in batch]))
            self._train_if_ready()
            self._dirty = True

    def _train_if_ready(self) -> None:
        """Staging float vectors -> the trained structure, once there are enough live ones to train on."""
        if not self._staging() or int(self._live.sum()) < training_size(self.settings):
            return
        staging, total = self._faiss, int(self._faiss.ntotal)
        live = np.flatnonzero(self._live)
        sample = np.sort(np.random.default_rng(0).choice(live, size=min(TRAIN_SAMPLE, live.size), replace=False))
        structure = self._new_faiss()
        structure.train(staging.reconstruct_batch(sample))  # already unit vectors for cosine
        base = faiss.downcast_index(structure.base_index)
        for start in range(0, total, ADD_CHUNK):
            base.add(staging.reconstruct_n(start, min(ADD_CHUNK, total - start)))
        if self._faiss_owner is None and not self._mapped and self.settings.rerank_encoding == "none":
            # The staging vectors become the float store as they are: no second copy of 4·d bytes a vector
            # (5 GB at a million). The structure owns (and frees) it from now on.
            staging.this.disown()
            structure.refine_index = staging
        else:  # staging belongs to a checkpoint's wrapper (or its memory map), or the store encodes: copy it
            store = faiss.downcast_index(structure.refine_index)
            for start in range(0, total, ADD_CHUNK):
                store.add(staging.reconstruct_n(start, min(ADD_CHUNK, total - start)))
        structure.ntotal = base.ntotal
        self._faiss, self._faiss_owner, self._mapped = structure, None, False
        self._dirty = True

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
        connection = _connect(path / SQLITE_NAME)
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
        connection = _connect(path / SQLITE_NAME)
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

    def _iter_vectors(self, batch_size: int = 10_000) -> Iterator[list[tuple[int, np.ndarray]]]:
        last = -1
        while rows := self._db.execute(
            "SELECT vid, vector FROM items WHERE vid > ? ORDER BY vid LIMIT ?", (last, batch_size)
        ).fetchall():
            last = rows[-1][0]
            yield [(vid, self._from_blob(blob)) for vid, blob in rows]

    def close(self) -> None:
        with self._lock:
            self.save()
            self._db.close()

    # ----------------------------------------------------------------------------------- other processes
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

    def _newest_vid(self) -> int:
        if self._pending_vids:
            return int(self._pending_vids[-1])
        return int(self._vids[-1]) if self._vids.size else 0

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

    def _drop_pending(self, dead: np.ndarray) -> None:
        """Forget pending vectors that were deleted before they reached the graph."""
        vids = np.asarray(self._pending_vids, dtype=np.int64)
        keep = ~np.isin(vids, dead)
        if not keep.all():
            vectors = np.concatenate(self._pending_vectors)[keep]
            self._pending_vids, self._pending_cache = vids[keep].tolist(), None
            self._pending_vectors = [vectors] if len(vectors) else []

    def _trim_tombstones(self) -> None:
        oldest, newest = self._db.execute("SELECT MIN(seq), MAX(seq) FROM deleted_vids").fetchone()
        if newest is not None and newest - oldest >= 2 * TOMBSTONES_KEPT:
            with self._db:
                self._db.execute("DELETE FROM deleted_vids WHERE seq <= ?", (newest - TOMBSTONES_KEPT,))


def _has_colour_column(connection: sqlite3.Connection) -> bool:
    return any(row[1] == "colour" for row in connection.execute("PRAGMA table_info(items)"))


def _add_colour_column(connection: sqlite3.Connection) -> None:
    """Give an index made before colour descriptors its column, if it can be written (see COLOUR_COLUMN)."""
    if _has_colour_column(connection):
        return
    try:
        with connection:
            connection.execute("BEGIN IMMEDIATE")  # two processes opening one old index: one adds it
            if not _has_colour_column(connection):
                connection.execute(COLOUR_COLUMN)
    except sqlite3.OperationalError as error:
        if "readonly" not in str(error) and "read-only" not in str(error):
            raise


def _colour_of(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


def _connect(path: Path) -> sqlite3.Connection:
    # A generous busy timeout: a writer waits for another writer's transaction (WAL readers never wait).
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60.0)
    connection.isolation_level = "DEFERRED"
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(SCHEMA)
    return connection
