"""What a Milvus index reads back: items by id, pages of rows, counts, facets, ranges, fields and notes.

Facets, ranges and fields are counted here from the paged metadata (Milvus has no aggregation over JSON), by
the embedded index's rules; a filter goes into the paging query as the expression searches use, so the counts
are of exactly the items a search under that filter can return.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.errors import IndexError_
from lookalike.index import filters, validate
from lookalike.index.base import Item
from lookalike.index.milvus.client import _errors
from lookalike.index.milvus.expressions import _id_in, _quote, to_expression
from lookalike.index.milvus.rows import ID_CHUNK, MAX_TOPK, NOTE_PROPERTY, _colour, _item, _metadata, _storable_id
from lookalike.index.results import (
    choose_facets,
    count_values,
    facets_under,
    widen_spans,
)

with suppress(ImportError):  # pymilvus is not installed: _connect says so before any of these is used
    from lookalike.index.milvus.client import MilvusException, utility


class MilvusReads:
    """The reads of :class:`MilvusIndex` (``self._collection``, at ``self.consistency``)."""

    # Set by MilvusIndex.__init__; declared here so this module reads (and type-checks) on its own.
    name: str
    consistency: str
    _alias: str
    _collection: Any
    _lock: threading.Lock
    _has_colour: bool

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

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
