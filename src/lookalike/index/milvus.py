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
import math
import re
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from lookalike.errors import BackendUnavailableError, FilterError, IndexError_, IndexFormatError, IndexRequestError
from lookalike.index import filters, validate
from lookalike.index.base import Item, VectorIndex
from lookalike.index.results import (
    Hit,
    choose_facets,
    count_values,
    facets_under,
    from_similarity,
    from_squared_l2,
    widen_spans,
)
from lookalike.index.settings import IndexSettings, settings_from_record, shared_record
from lookalike.index.validate import Batch, Limits

try:
    with warnings.catch_warnings():
        # pymilvus 2.3 imports pkg_resources (setuptools warns on every import) and environs 9, which reads a
        # deprecated marshmallow attribute: nothing a user of lookalike can act on.
        warnings.filterwarnings("ignore", message=".*pkg_resources.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
        from pymilvus.exceptions import MilvusException
except ImportError as error:  # the optional extra is not installed
    _IMPORT_ERROR: ImportError | None = error
else:
    _IMPORT_ERROR = None

FORMAT = 1
"""Version of the collection layout, recorded in the description."""
NOTE_PROPERTY = "lookalike.note."
"""Notes are collection properties (Milvus's key-value settings of a collection, which can change after it is
made, unlike the description that holds the settings) named with this prefix."""
MAX_ID_BYTES = validate.MAX_ID_BYTES
MAX_TEXT_BYTES = validate.MAX_TEXT_BYTES
"""Milvus's largest VARCHAR, for location and content hash."""
MAX_METADATA_BYTES = validate.MAX_METADATA_BYTES
"""Milvus 2.3 refuses a JSON value longer than this (as pymilvus encodes it)."""
MAX_DIM = 32_768
MAX_TOPK = 16_384
"""Milvus's limit on a search's k and on a query's offset + limit."""
ID_CHUNK = 1_000
"""Ids per ``item_id in [...]`` expression."""
WRITE_BATCH_BYTES = 16 * 1024 * 1024
"""Rows per upsert request are bounded by size, well under gRPC's message limit."""
DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a connection (pass ``timeout=`` to create/open/exists to change it)."""
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_INT64 = (filters.INT64_MIN, filters.INT64_MAX)


class MilvusIndex(VectorIndex):
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

    # ----------------------------------------------------------------------------------- opening
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

    # ----------------------------------------------------------------------------------- writing
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

    # ----------------------------------------------------------------------------------- reading
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

    def get(self, id: str, with_vector: bool = False) -> Item | None:
        if not _storable_id(id):
            return None
        self._check_open()
        with _errors("reading an item"):
            rows = self._fetch([id], self._item_fields(with_vector))
        return _item(rows[0], with_vector) if rows else None

    def _item_fields(self, with_vector: bool) -> list[str]:
        colour = ["colour"] if self._has_colour else []
        return ["location", "content_hash", "metadata", *colour] + (["vector"] if with_vector else [])

    def colours(self, ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        """One query by ids (per 1,000) for the colour field alone."""
        ids = list(ids)
        found: dict[str, np.ndarray | None] = dict.fromkeys(ids)
        wanted = [item_id for item_id in dict.fromkeys(ids) if _storable_id(item_id)]
        self._check_open()
        if self._has_colour and wanted:
            with _errors("reading colours"):
                found.update((row["item_id"], _colour(row.get("colour"))) for row in self._fetch(wanted, ["colour"]))
        return found

    def count(self) -> int:
        self._check_open()
        with _errors("counting items"):
            return self._count("")

    def _count(self, expression: str) -> int:
        rows = self._collection.query(expression, output_fields=["count(*)"], consistency_level=self.consistency)
        return int(rows[0]["count(*)"]) if rows else 0

    def content_hashes(self) -> dict[str, str | None]:
        self._check_open()
        hashes: dict[str, str | None] = {}
        with _errors("reading content hashes"):
            for rows in self._pages("", ["content_hash"], 10_000):
                hashes.update((row["item_id"], row.get("content_hash") or None) for row in rows)
        return hashes

    def iter_items(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[Item]]:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise IndexError_(f"batch_size must be a positive integer, got {batch_size!r}")
        self._check_open()
        pages = self._pages("", self._item_fields(with_vectors), min(batch_size, MAX_TOPK))
        while True:
            with _errors("reading items"):
                rows = next(pages, None)
            if rows is None:
                return
            yield [_item(row, with_vectors) for row in rows]

    # Facets, ranges and fields are counted here from the paged metadata (Milvus has no aggregation over JSON),
    # by the embedded index's rules; a filter goes into the paging query as the expression searches use, so the
    # counts are of exactly the items a search under that filter can return.
    def fields(self) -> set[str]:
        self._check_open()
        names: set[str] = set()
        with _errors("reading metadata"):
            for rows in self._pages("", ["metadata"], 10_000):
                for row in rows:
                    names.update(_metadata(row.get("metadata")))
        return names

    def _facets(self, max_values: int, conditions: list[filters.Condition]) -> dict[str, dict[str, int]]:
        self._check_open()
        everything = choose_facets(self._value_counts(""), max_values)  # the fields: decided without the filter
        if not conditions:
            return everything
        expression = to_expression(conditions)
        passing = self._value_counts(expression) if expression is not None and everything else {}
        return facets_under(everything, passing)

    def _value_counts(self, expression: str) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        with _errors("reading metadata"):
            for rows in self._pages(expression, ["metadata"], 10_000):
                count_values((_metadata(row.get("metadata")) for row in rows), result)
        return result

    def _ranges(self, conditions: list[filters.Condition]) -> dict[str, tuple[float, float]]:
        self._check_open()
        expression = to_expression(conditions)
        if expression is None:  # a condition nothing can satisfy
            return {}
        spans: dict[str, tuple[float, float]] = {}
        with _errors("reading metadata"):
            for rows in self._pages(expression, ["metadata"], 10_000):
                widen_spans((_metadata(row.get("metadata")) for row in rows), spans)
        return {key: (float(low), float(high)) for key, (low, high) in sorted(spans.items())}

    # ----------------------------------------------------------------------------------- notes
    def notes(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            self._check_open()
            with _errors("reading the notes"):
                properties = self._collection.describe().get("properties") or {}
        return {
            key[len(NOTE_PROPERTY) :]: json.loads(value)
            for key, value in properties.items()
            if key.startswith(NOTE_PROPERTY) and value  # an empty value is a removed note
        }

    def write_note(self, name: str, value: Mapping[str, Any] | None) -> None:
        text = validate.check_note(name, value)
        with self._lock:
            self._check_open()
            with _errors(f"writing note {name!r}"):
                # Milvus 2.3 cannot drop a collection property, so a removed note is kept empty
                self._collection.set_properties({NOTE_PROPERTY + name: text or ""})

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"items": self.count(), "collection": self.name}
        try:
            progress = utility.index_building_progress(self.name, using=self._alias)
            stats["indexed_rows"] = int(progress.get("indexed_rows", 0))
        except MilvusException:
            pass
        return stats

    # ----------------------------------------------------------------------------------- queries
    def _query(self, expression: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"limit": limit} if limit is not None else {}
        return self._collection.query(expression, output_fields=fields, consistency_level=self.consistency, **kwargs)

    def _fetch(self, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), ID_CHUNK):
            chunk = list(ids[start : start + ID_CHUNK])
            rows += self._query(_id_in(chunk), fields, limit=len(chunk))
        return rows

    def _pages(self, expression: str, fields: list[str], size: int) -> Iterator[list[dict[str, Any]]]:
        """Every row matching ``expression`` in pages of at most ``size``, in id order: each page asks for the
        ids after the last one seen (Milvus returns the lowest ``limit`` primary keys of a limited query)."""
        last = ""
        while True:
            cursor = f"item_id > {_quote(last)}"
            rows = self._query(f"({expression}) and {cursor}" if expression else cursor, fields, limit=size)
            if not rows:
                return
            rows.sort(key=lambda row: row["item_id"])
            yield rows
            last = rows[-1]["item_id"]

    # ----------------------------------------------------------------------------------- durability
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


# --------------------------------------------------------------------------------------- filters to expressions


def to_expression(conditions: Iterable[filters.Condition], column: str = "metadata") -> str | None:
    """A Milvus boolean expression equivalent to ``filters.matches``; "" for no condition, None when no item can
    match (an infinite bound, or a value no JSON document holds).

    Milvus 2.3 compares JSON values by type, as ``matches`` does: ``== 1`` matches 1 and 1.0 but neither true
    nor "1"; ``== true`` matches only true; ``== "1"`` only the string; ranges only numbers (never booleans or
    strings); a missing field matches nothing. A one-of list mixing types is split into one ``in`` per type
    (Milvus refuses a mixed list), so the expression grows linearly with the filter.

    The fields' clauses are combined in pairs, ``((a and b) and (c and d))``: Milvus 2.3 nests a plain chain
    ``a and b and c ...`` one level per clause and fails past 49 (measured on 2.3.5: "unsupported expr proto
    node"); paired, the 64 fields a filter may test nest 6 levels deep.
    """
    clauses = []
    for condition in conditions:
        path = f"{column}[{_quote(condition.field)}]"
        if condition.kind in ("eq", "in"):
            groups: dict[str, list[str]] = {}
            for value in condition.values:
                literal = _literal(value)
                if literal is not None:
                    groups.setdefault(_type_group(value), []).append(literal)
            if not groups:
                return None
            alternatives = [
                f"{path} == {literals[0]}" if len(literals) == 1 else f"{path} in [{', '.join(literals)}]"
                for literals in groups.values()
            ]
            clauses.append("(" + " or ".join(alternatives) + ")")
        else:
            parts = []
            for operator, bound in condition.bounds:
                if math.isinf(bound):
                    if (bound > 0) == (operator in ("gt", "gte")):
                        return None  # above +inf or below -inf: nothing
                    continue  # below +inf or above -inf: any number
                parts.append(f"{path} {filters.RANGE_OPERATORS[operator]} {_float(bound)}")
            if not parts:  # only infinite bounds that every number meets: "is a number"
                parts = [f"({path} >= 0 or {path} < 0)"]
            clauses.append("(" + " and ".join(parts) + ")")
    while len(clauses) > 2:
        pairs = [clauses[i : i + 2] for i in range(0, len(clauses), 2)]
        clauses = [f"({pair[0]} and {pair[1]})" if len(pair) == 2 else pair[0] for pair in pairs]
    return " and ".join(clauses)


def _literal(value: filters.Scalar) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return str(value)
        return _float(float(value))
    if isinstance(value, float):
        return None if math.isinf(value) else _float(value)  # JSON holds no infinity
    return _quote(value, FilterError)


def _type_group(value: filters.Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return "int"
    if isinstance(value, int | float):
        return "float"
    return "str"


def _float(value: float) -> str:
    text = repr(float(value))
    return text if ("." in text or "e" in text) else text + ".0"


def _quote(text: str, error: type[Exception] = IndexError_) -> str:
    """A double-quoted Milvus string literal: backslash and quote escaped, anything not printable ASCII as a
    \\u or \\U escape, so no value can end the literal or change the expression."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif 0xD800 <= code <= 0xDFFF:
            raise error(f"{text[:40]!r} is not valid Unicode (a lone surrogate)")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _id_in(ids: Sequence[str]) -> str:
    return f"item_id in [{', '.join(_quote(i) for i in ids)}]"


# --------------------------------------------------------------------------------------- helpers


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise IndexError_(
            f"bad Milvus index name {name!r}: use letters, digits and underscores, starting with a letter or"
            " underscore (at most 255)"
        )


def _consistency(connection: dict[str, Any]) -> str:
    level = connection.pop("consistency", "Session")
    if level not in CONSISTENCY_LEVELS:
        raise IndexError_(f"unknown consistency level {level!r}; choose one of {', '.join(CONSISTENCY_LEVELS)}")
    return level


def _connect(uri: str, connection: dict[str, Any]) -> str:
    """A connection of our own (a fresh alias), so closing one index never closes another's."""
    if _IMPORT_ERROR is not None:
        raise IndexError_(
            f"the Milvus backend needs pymilvus: pip install 'lookalike[milvus]' ({_IMPORT_ERROR})"
        ) from _IMPORT_ERROR
    alias = f"lookalike-{uuid.uuid4().hex}"
    options = {"timeout": DEFAULT_TIMEOUT, **connection}
    try:
        connections.connect(alias=alias, uri=uri, **options)
    except MilvusException as error:
        _disconnect(alias)
        raise BackendUnavailableError(f"cannot reach Milvus at {uri}: {error.message}") from error
    return alias


def _disconnect(alias: str) -> None:
    with suppress(Exception):  # closing is best effort
        connections.disconnect(alias)
        connections.remove_connection(alias)


@contextmanager
def _errors(action: str) -> Iterator[None]:
    """Milvus's failures as IndexError_ naming what was being done; an unreachable or overloaded server as
    BackendUnavailableError (a 503 through the API: the client did nothing wrong)."""
    try:
        yield
    except MilvusException as error:
        kind = BackendUnavailableError if _is_outage(error) else IndexError_
        raise kind(f"Milvus failed {action}: {error.message}") from error
    except Exception as error:  # raw gRPC errors escape pymilvus when the channel itself breaks
        if type(error).__module__.startswith("grpc"):
            raise BackendUnavailableError(f"Milvus failed {action}: {error}") from error
        raise


_OUTAGE_WORDS = ("unavailable", "deadline_exceeded", "deadline exceeded", "connection refused", "fail connecting")


def _is_outage(error: Exception) -> bool:
    """Whether a pymilvus error means the server is gone or overloaded, rather than a refused request."""
    if type(error).__name__ in ("MilvusUnavailableException", "ConnectError", "ConnectionNotExistException"):
        return True
    text = f"{getattr(error, 'message', '')} {error}".lower()
    return any(word in text for word in _OUTAGE_WORDS)


def _settings_from(collection: Any, uri: str, name: str) -> IndexSettings:
    """The settings in the description, by the one policy of every backend (``settings_from_record``)."""
    try:
        record = json.loads(collection.description)["lookalike"]
        settings = record["settings"]
    except (ValueError, KeyError, TypeError) as error:
        raise IndexError_(f"the collection {name} at {uri} is not a lookalike index") from error
    if record.get("format") != FORMAT:
        raise IndexFormatError(
            f"{name} at {uri} has lookalike layout {record.get('format')!r}, expected {FORMAT}: "
            "a newer lookalike probably made it"
        )
    return settings_from_record(settings, f"the Milvus collection {name} at {uri}")


def _metric(settings: IndexSettings) -> str:
    return "COSINE" if settings.metric == "cosine" else "L2"


def _storable_id(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        return len(value.encode("utf-8")) <= MAX_ID_BYTES
    except UnicodeEncodeError:
        return False


def _encode_json(value: Any) -> bytes:
    """The bytes pymilvus sends for a JSON field (compact ujson), whose length Milvus limits."""
    import ujson  # a dependency of pymilvus

    return ujson.dumps(value, ensure_ascii=False).encode("utf-8")


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, bytes | str) and value:
        return json.loads(value)
    return {}


def _colour(value: Any) -> np.ndarray | None:
    """A stored colour ({"h": [...]}; {} or a missing field for none) as float32."""
    histogram = _metadata(value).get("h")
    return None if histogram is None else np.asarray(histogram, dtype=np.float32)


def _item(row: dict[str, Any], with_vector: bool) -> Item:
    vector = np.asarray(row["vector"], dtype=np.float32) if with_vector else None
    return Item(
        row["item_id"],
        vector,
        _metadata(row.get("metadata")),
        row.get("location") or None,
        row.get("content_hash") or None,
        _colour(row.get("colour")),
    )


def _batches(rows: list[tuple[Any, ...]], dim: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        row_size = 4 * dim + len(row[0]) + len(row[2]) + len(row[3]) + sum(len(_encode_json(j)) for j in row[4:])
        if batch and size + row_size > WRITE_BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch
