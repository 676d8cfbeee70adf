"""The one interface every vector index implements (embedded FAISS+SQLite, OpenSearch, Milvus).

An index stores vectors with ids, metadata and where each image lives. It knows no model: the model
descriptor it records is an opaque dict that the service layer compares (see ``IndexSettings.embedding``).

The contract is held here, not copied into each backend: :meth:`VectorIndex.add` validates a batch
(:mod:`lookalike.index.validate`, against the backend's declared :class:`~lookalike.index.validate.Limits`)
and hands it to the backend's ``_write``; :meth:`VectorIndex.search` checks k, the query and the filter, asks
the backend's ``_knn`` for hits and builds the results (:mod:`lookalike.index.results`). A backend implements
only what is its own: storing and finding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lookalike.index import validate
from lookalike.index.filters import Condition, normalize
from lookalike.index.known import KnownFields
from lookalike.index.results import (  # noqa: F401  (re-exported: their home before results.py)
    Hit,
    SearchResult,
    by_count,
    choose_facets,
    facet_key,
    facets_under,
    is_number,
    score_from_distance,
    to_results,
)
from lookalike.index.settings import (  # noqa: F401  (re-exported: their home before settings.py)
    ENCODINGS,
    INDEX_KINDS,
    SERVER_FIELDS,
    STORE_ENCODINGS,
    Encoding,
    IndexKind,
    IndexSettings,
    Metric,
    StoreEncoding,
    refuse_unsupported,
    server_record,
)
from lookalike.index.validate import Batch, Limits

Filter = Mapping[str, Any]
"""Metadata filter: ``{"label": "Dress"}`` (equality), ``{"label": ["Dress", "Skirt"]}`` (one of),
``{"price": {"gte": 10, "lt": 50}}`` (numeric range); several keys must all hold."""


@dataclass
class Item:
    """One catalogue entry: what ingest writes and ``get`` returns."""

    id: str
    vector: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    location: str | None = None
    """Where the image lives (path or URL), so a result can be shown."""
    content_hash: str | None = None
    """Hash of the image bytes, so a re-run notices a changed file."""
    colour: np.ndarray | None = None
    """A small colour descriptor of the image (``lookalike.colour.describe``: ``validate.COLOUR_SIZE`` floats,
    a histogram over named colours), kept beside the vector so a query can weigh colour against shape; None
    for items indexed before colours were (or added without one). The index only stores it."""


class VectorIndex(ABC):
    """k-NN over vectors with metadata. Writes are upserts by id; nothing needs a rebuild."""

    settings: IndexSettings
    limits: ClassVar[Limits]
    """What this backend can hold (largest dimension and k, embedded-only settings): checked by the contract."""

    def add(self, items: Sequence[Item]) -> None:
        """Insert or replace items by id. Every item needs a vector of ``settings.dim`` floats.

        The whole batch is validated first, so a batch with one bad item changes nothing."""
        if not items:
            return
        self._write(validate.check_batch(items, self.settings))
        self._learn_fields(items)

    @abstractmethod
    def _write(self, batch: Batch) -> None:
        """Store a validated batch (upserts by id; its ids are distinct)."""

    @abstractmethod
    def delete(self, ids: Iterable[str]) -> int:
        """Remove items by id; returns how many existed."""

    def search(
        self, vector: np.ndarray, k: int = 10, filter: Filter | None = None, exact: bool = False
    ) -> list[SearchResult]:
        """The k nearest items to ``vector`` that match ``filter``, best first.

        ``exact=True`` forces brute force even on an approximate index (the ground truth for recall).
        """
        validate.check_k(k, self.limits)
        query = validate.check_query(vector, self.settings.dim, self.settings.metric)
        hits = self._knn(query, k, normalize(filter), exact)
        return to_results(hits, self.settings.metric, k)

    @abstractmethod
    def _knn(self, query: np.ndarray, k: int, conditions: list[Condition], exact: bool) -> Sequence[Hit]:
        """At most ``k`` hits for a validated query (float32, the index's dimension) passing ``conditions``,
        best first, with distances in the metric's own terms (:mod:`lookalike.index.results` converts)."""

    @abstractmethod
    def get(self, id: str, with_vector: bool = False) -> Item | None:
        """One item by id, or None (with its colour when it has one; the vector only if asked)."""

    def colours(self, ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        """id -> stored colour descriptor (None: no colour, or no such item) of each of ``ids``.

        Re-ranking a page of results by colour asks for 50 to 100 ids a query, so backends answer it in one
        read (one SQL query, one multi-get, one query by ids); this fallback reads item by item."""
        found = {}
        for item_id in ids:
            item = self.get(item_id)
            found[item_id] = item.colour if item is not None else None
        return found

    @abstractmethod
    def count(self) -> int:
        """How many live items."""

    @abstractmethod
    def content_hashes(self) -> dict[str, str | None]:
        """id -> content hash of every item: what a resumed ingest compares against."""

    @abstractmethod
    def iter_items(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[Item]]:
        """Every item in batches (for evaluation and migration)."""

    def facets(self, max_values: int = 50, filter: Filter | None = None) -> dict[str, dict[str, int]]:
        """Metadata field -> value -> how many items passing ``filter`` (all items without one) have it, for
        building filter choices.

        What counts: text, integers and booleans (as "true"/"false"; 1 and "1" share a key); floats, lists,
        objects and null do not. Which fields: those with at most ``max_values`` distinct values over the
        *whole* index, decided without the filter, so every filter gives the same fields (a field that no
        passing item has maps to ``{}``, and one with too many values overall stays out even where a filter
        leaves few). Values come highest count first. ``filter`` is checked like a search's
        (:meth:`check_filter`: an unknown field is a FilterError).

        Deciding the fields takes the unfiltered counts too: the embedded index keeps them until an item
        changes, OpenSearch gets both in one request (a ``global`` aggregation), Milvus pages the metadata
        twice."""
        return self._facets(max_values, self.check_filter(filter))

    @abstractmethod
    def _facets(self, max_values: int, conditions: list[Condition]) -> dict[str, dict[str, int]]:
        """:meth:`facets` over the items passing ``conditions`` (validated; empty: every item)."""

    def ranges(self, filter: Filter | None = None) -> dict[str, tuple[float, float]]:
        """Numeric metadata field -> (lowest, highest) value among the items passing ``filter`` (all items
        without one), for range controls such as a price slider.

        Integers and floats count (as floats: an integer beyond 2**53 is rounded), booleans and numeric text
        do not; a field with some numeric values spans those. Fields that no passing item holds a number in
        are left out. ``filter`` is checked like a search's (:meth:`check_filter`)."""
        return self._ranges(self.check_filter(filter))

    @abstractmethod
    def _ranges(self, conditions: list[Condition]) -> dict[str, tuple[float, float]]:
        """:meth:`ranges` over the items passing ``conditions`` (validated; empty: every item)."""

    @abstractmethod
    def fields(self) -> set[str]:
        """The top-level metadata field names that at least one item has (whatever their values).

        Read from the index (every item's metadata on Milvus and on the embedded index, which reuses its last
        answer until an item changes; the mapping on OpenSearch, which has no field for a value that was only
        ever null or an empty list): per request, use :meth:`check_filter`, which caches them
        (:mod:`lookalike.index.known`)."""

    def known_fields(self) -> KnownFields:
        """This index object's cache of :meth:`fields`, made at first use."""
        cache = self.__dict__.get("_known_fields")
        if cache is None:  # setdefault: two threads racing here share one cache
            cache = self.__dict__.setdefault("_known_fields", KnownFields(self.fields))
        return cache

    def check_filter(self, filter: Filter | None) -> list[Condition]:
        """``filter`` validated (:func:`filters.normalize`), and refused with a FilterError naming the known
        fields when it tests a field that no item has. Every search (``lookalike.search``), ``facets`` and
        ``ranges`` pass through here; the fields are cached, so a check costs a set lookup (see
        :mod:`lookalike.index.known` for when the cache is read again)."""
        conditions = normalize(filter)
        if conditions:
            self.known_fields().check(condition.field for condition in conditions)
        return conditions

    def _learn_fields(self, items: Iterable[Item]) -> None:
        """Tell the field cache (if there is one yet) about items just written. Call with no lock held."""
        cache = self.__dict__.get("_known_fields")
        if cache is not None:
            cache.learn(name for item in items for name in item.metadata)

    @abstractmethod
    def notes(self) -> dict[str, dict[str, Any]]:
        """Every note kept with the index, by name.

        Notes are what is learned from the catalogue after the index was made (its match calibration), so
        unlike the settings they change: each backend keeps them where its settings live (SQLite's ``meta``
        table, OpenSearch's mapping ``_meta``, Milvus's collection properties): one read when asked, never
        per item or per search."""

    @abstractmethod
    def write_note(self, name: str, value: Mapping[str, Any] | None) -> None:
        """Keep ``value`` (a JSON object, checked by ``validate.check_note``) as note ``name``, replacing
        the one before; ``None`` removes it. Durable when this returns; items are never touched."""

    def bulk_load(self) -> AbstractContextManager[Any]:
        """Wrap a large ingest: backends that can defer work (OpenSearch stops refreshing) do so here."""
        return nullcontext()

    def stats(self) -> dict[str, Any]:
        """Counts worth showing in ``lookalike info``; backends add what they know."""
        return {"items": self.count()}

    @abstractmethod
    def save(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Release files and connections."""
        self.save()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
