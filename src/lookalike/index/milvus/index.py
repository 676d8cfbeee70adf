"""The Milvus backend: one Milvus collection per index, reached with pymilvus (the ``milvus`` extra).

Collection layout::

    item_id       VARCHAR(512) primary key      the item's id (at most 512 bytes of UTF-8)
    vector        FLOAT_VECTOR(dim)             HNSW (M, efConstruction) or FLAT; metric L2 or COSINE
    location      VARCHAR(65535)                "" stands for None (Milvus 2.3 has no nullable fields)
    content_hash  VARCHAR(65535)                "" stands for None
    metadata      JSON                          filters compile to expressions on it: metadata["label"] == "Dress"
    colour        JSON                          {"h": [12 floats]}, or {} for none (2.3 refuses a bare JSON array);
                                                collections made before colours lack it and read None colours

The index settings (with the embedding descriptor) are stored as JSON in the collection's description, so
:meth:`MilvusIndex.open` recovers them.

How this backend keeps the :class:`VectorIndex` promises:

* Distances and scores follow :func:`score_from_distance`: Milvus's L2 is the *squared* distance (its square
  root is reported) and its COSINE is the similarity (1 - it is reported).
* Reads use the consistency level ``Session`` by default: each read waits until the server has applied every
  write this process made to the collection, so an ``add`` or ``delete`` is visible to the next search,
  ``get`` or ``count`` without a flush. (Milvus 2.3 returns no timestamp for a delete, so ``delete`` ends with
  one Strong read, which makes it take ~0.2 s.) Writes from other processes show up within Milvus's time tick
  (~0.2 s). ``Strong`` (``consistency="Strong"`` on create/open) also waits for other writers, but costs
  ~0.2 s per read (measured: 200-250 ms against 2-4 ms for a query or search on Milvus 2.3.5).
* ``exact=True`` on an HNSW collection cannot switch Milvus to brute force, so the matching vectors are
  fetched (paged by id, with the filter applied by Milvus) and ranked with NumPy: it costs a transfer of every
  matching vector, fine for evaluation and tests, slow for millions of items. A FLAT collection's own search
  is already exact and is used as is; so is a top-k above Milvus's limit of 16384, which goes to NumPy.
* An approximate search that returns fewer than k hits while more items match (HNSW with a very selective
  filter) is answered again by brute force, as the embedded index does.
* Writes are upserts (Milvus deletes the old row and inserts the new one in one request) in batches of at
  most ~16 MB; every item is validated first, so a bad batch changes nothing, but a batch that the server
  refuses half-way may leave the earlier sub-batches written (Milvus has no transactions).
* Rows Milvus has not indexed yet (recent writes) are searched by brute force, or through an "interim" IVF
  index when the server enables it (its default, probing 16 of 128 lists: recall on hard data drops until the
  HNSW index is built and loaded). scripts/milvus-server.sh turns it off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import numpy as np

from lookalike.errors import IndexError_, IndexRequestError
from lookalike.index import filters, validate
from lookalike.index.base import VectorIndex
from lookalike.index.milvus.client import _check_name, _connect, _consistency, _disconnect, _errors
from lookalike.index.milvus.expressions import _id_in, to_expression
from lookalike.index.milvus.reads import MilvusReads
from lookalike.index.milvus.rows import (
    FORMAT,
    ID_CHUNK,
    MAX_DIM,
    MAX_ID_BYTES,
    MAX_METADATA_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOPK,
    _batches,
    _encode_json,
    _metric,
    _settings_from,
    _storable_id,
)
from lookalike.index.results import (
    Hit,
    from_similarity,
    from_squared_l2,
)
from lookalike.index.settings import IndexSettings, shared_record
from lookalike.index.validate import Batch, Limits

with suppress(ImportError):  # pymilvus is not installed: _connect says so before any of these is used
    from lookalike.index.milvus.client import (
        Collection,
        CollectionSchema,
        DataType,
        FieldSchema,
        MilvusException,
        utility,
    )


class MilvusIndex(MilvusReads, VectorIndex):
    """An index in a Milvus collection; open with :meth:`create` or :meth:`open`."""

    limits = Limits("Milvus", max_dim=MAX_DIM)
    """No k limit: a k above Milvus's own (MAX_TOPK) is answered by brute force."""

    def __init__(
        self, uri: str, name: str, alias: str, collection: Any, settings: IndexSettings, consistency: str
    ) -> None:
        self.uri = uri
        self.name = name
        self.settings = settings
        self.consistency = consistency
        self._alias = alias
        self._collection = collection
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._has_colour = any(field.name == "colour" for field in collection.schema.fields)

    @classmethod
    def create(cls, uri: str, name: str, settings: IndexSettings, **connection: Any) -> MilvusIndex:
        """A new, empty collection ``name`` on the server at ``uri`` (which must not hold one of that name).

        ``connection`` goes to ``pymilvus.connections.connect`` (``token``, ``user``, ``password``,
        ``db_name``, ``timeout``...), except ``consistency``: the reads' consistency level (default Session).
        """
        _check_name(name)
        validate.check_settings(settings, cls.limits)  # before connecting: a bad setting never reaches Milvus
        consistency = _consistency(connection)
        description = json.dumps({"lookalike": {"format": FORMAT, "settings": shared_record(settings)}}, sort_keys=True)
        alias = _connect(uri, connection)
        created = False
        try:
            with _errors(f"creating collection {name!r}"):
                if utility.has_collection(name, using=alias):
                    raise IndexError_(f"an index already exists at {uri} ({name})")
                schema = CollectionSchema(
                    [
                        FieldSchema("item_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES),
                        FieldSchema("vector", DataType.FLOAT_VECTOR, dim=settings.dim),
                        FieldSchema("location", DataType.VARCHAR, max_length=MAX_TEXT_BYTES),
                        FieldSchema("content_hash", DataType.VARCHAR, max_length=MAX_TEXT_BYTES),
                        FieldSchema("metadata", DataType.JSON),
                        FieldSchema("colour", DataType.JSON),
                    ],
                    description=description,
                    enable_dynamic_field=False,
                )
                collection = Collection(name, schema, using=alias, shards_num=1, consistency_level=consistency)
                created = True
                if settings.kind == "hnsw":
                    index = {"M": settings.hnsw_m, "efConstruction": settings.ef_construction}
                    params = {"index_type": "HNSW", "metric_type": _metric(settings), "params": index}
                else:
                    params = {"index_type": "FLAT", "metric_type": _metric(settings), "params": {}}
                collection.create_index("vector", params)
                collection.load()
        except BaseException:
            if created:
                with suppress(MilvusException):
                    utility.drop_collection(name, using=alias)
            _disconnect(alias)
            raise
        return cls(uri, name, alias, collection, settings, consistency)

    @classmethod
    def open(cls, uri: str, name: str, **connection: Any) -> MilvusIndex:
        """Open an existing lookalike collection, recovering its settings from the description."""
        _check_name(name)
        consistency = _consistency(connection)
        alias = _connect(uri, connection)
        try:
            with _errors(f"opening collection {name!r}"):
                if not utility.has_collection(name, using=alias):
                    raise IndexError_(f"no index at {uri} ({name})")
                collection = Collection(name, using=alias)
                settings = _settings_from(collection, uri, name)
                collection.load()
        except BaseException:
            _disconnect(alias)
            raise
        return cls(uri, name, alias, collection, settings, consistency)

    @classmethod
    def exists(cls, uri: str, name: str, **connection: Any) -> bool:
        """Whether the server holds a collection called ``name`` (raises IndexError_ if it cannot be reached)."""
        _check_name(name)
        _consistency(connection)
        alias = _connect(uri, connection)
        try:
            with _errors("listing collections"):
                return bool(utility.has_collection(name, using=alias))
        finally:
            _disconnect(alias)

    def drop(self) -> None:
        """Delete the collection and everything in it, then close."""
        with self._lock:
            if not self._closed:
                with _errors(f"dropping collection {self.name!r}"):
                    utility.drop_collection(self.name, using=self._alias)
                self._closed = True
                _disconnect(self._alias)

    def _write(self, batch: Batch) -> None:
        rows = self._rows(batch)
        self._check_open()
        with _errors("writing items"):
            for part in _batches(rows, self.settings.dim):
                self._collection.upsert(list(map(list, zip(*part, strict=True))))
                self._dirty = True

    def _rows(self, batch: Batch) -> list[tuple[Any, ...]]:
        """The batch as Milvus rows, after Milvus's own JSON-size limit (its encoder's bytes, which can exceed
        the contract's compact JSON), before anything is written, so a bad batch changes nothing."""
        metadata = batch.metadata()
        for item, meta in zip(batch.items, metadata, strict=True):
            if len(_encode_json(meta)) > MAX_METADATA_BYTES:
                raise IndexRequestError(
                    f"item {item.id!r} has more than {MAX_METADATA_BYTES} bytes of metadata (as JSON)"
                )
        rows = [
            (item.id, vector, item.location or "", item.content_hash or "", meta)
            for item, vector, meta in zip(batch.items, batch.vectors.tolist(), metadata, strict=True)
        ]
        if not self._has_colour:  # a collection made before colours: they are not kept
            return rows
        return [
            (*row, {} if colour is None else {"h": colour.tolist()})
            for row, colour in zip(rows, batch.colours, strict=True)
        ]

    def delete(self, ids: Iterable[str]) -> int:
        # Ids that cannot be stored (not text, too long, not encodable) cannot exist: they count as absent.
        wanted = list(dict.fromkeys(i for i in ids if _storable_id(i)))
        self._check_open()
        removed = 0
        last: list[str] = []
        with _errors("deleting items"):
            for start in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[start : start + ID_CHUNK]
                found = [row["item_id"] for row in self._query(_id_in(chunk), ["item_id"], limit=len(chunk))]
                if found:
                    self._collection.delete(_id_in(found))
                    self._dirty = True
                    removed += len(found)
                    last = found
            if removed:
                # Milvus 2.3 answers a delete without its timestamp, so a Session read would not wait for it:
                # one Strong read (~0.2 s) has the server apply every delete before this returns.
                self._collection.query(_id_in(last), output_fields=["item_id"], consistency_level="Strong")
        return removed

    def _knn(self, query: np.ndarray, k: int, conditions: list[filters.Condition], exact: bool) -> list[Hit]:
        expression = to_expression(conditions)
        self._check_open()
        if expression is None:  # a condition nothing can satisfy
            return []
        with _errors("searching"):
            if k > MAX_TOPK or (exact and self.settings.kind != "exact"):
                return self._brute_force(query, k, expression)
            results = self._search(query, k, expression)
            if len(results) < k and self._count(expression) > len(results):
                return self._brute_force(query, k, expression)  # the graph walk ran out before k matches
            return results

    def _search(self, query: np.ndarray, k: int, expression: str) -> list[Hit]:
        params: dict[str, Any] = {"metric_type": _metric(self.settings), "params": {}}
        if self.settings.kind == "hnsw":
            params["params"] = {"ef": min(max(self.settings.ef_search, k), 32_768)}
        hits = self._collection.search(
            [query.tolist()],
            "vector",
            params,
            limit=k,
            expr=expression or None,
            output_fields=["location", "metadata"],
            consistency_level=self.consistency,
        )[0]
        return [
            Hit(
                str(hit.id), self._distance(float(hit.distance)), hit.entity.get("metadata"), hit.entity.get("location")
            )
            for hit in hits
        ]

    def _distance(self, raw: float) -> float:
        """Milvus gives squared L2 or the cosine similarity; report Euclidean distance or 1 - cosine."""
        return from_similarity(raw) if self.settings.metric == "cosine" else from_squared_l2(raw)

    def _brute_force(self, query: np.ndarray, k: int, expression: str) -> list[Hit]:
        """Exact top k: every matching vector is fetched, page by page, and ranked with NumPy in float64."""
        q = query.astype(np.float64)
        q_norm = float(np.linalg.norm(q))
        best_ids: list[str] = []
        best = np.zeros(0, dtype=np.float64)
        page = max(100, min(10_000, 4_000_000 // (4 * self.settings.dim)))
        for rows in self._pages(expression, ["vector"], page):
            matrix = np.asarray([row["vector"] for row in rows], dtype=np.float32).astype(np.float64)
            if self.settings.metric == "l2":
                distances = np.sqrt(np.maximum(((matrix - q) ** 2).sum(axis=1), 0.0))
            else:
                norms = np.linalg.norm(matrix, axis=1) * q_norm
                with np.errstate(divide="ignore", invalid="ignore"):
                    similarity = np.where(norms > 0, (matrix @ q) / np.where(norms > 0, norms, 1.0), 0.0)
                distances = 1.0 - similarity
            ids = best_ids + [row["item_id"] for row in rows]
            merged = np.concatenate([best, distances])
            keep = np.argsort(merged, kind="stable")[:k]
            best_ids, best = [ids[i] for i in keep], merged[keep]
        if not best_ids:
            return []
        details = {row["item_id"]: row for row in self._fetch(best_ids, ["location", "metadata"])}
        return [
            Hit(item_id, distance, details[item_id].get("metadata"), details[item_id].get("location"))
            for item_id, distance in zip(best_ids, best.tolist(), strict=True)
            if item_id in details  # not deleted by someone else in between
        ]

    def save(self) -> None:
        """Flush: seal the segments written so far and persist them to Milvus's storage. (Writes are already
        durable in Milvus's log once acknowledged; a flush also lets Milvus build their HNSW index.)"""
        with self._lock:
            self._check_open()
            if self._dirty:
                with _errors("flushing"):
                    self._collection.flush()
                self._dirty = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
        try:
            self.save()
        finally:
            with self._lock:
                self._closed = True
                _disconnect(self._alias)

    def _check_open(self) -> None:
        if self._closed:
            raise IndexError_(f"the index {self.name!r} at {self.uri} is closed")

    def __repr__(self) -> str:
        return f"MilvusIndex({self.uri!r}, {self.name!r})"
