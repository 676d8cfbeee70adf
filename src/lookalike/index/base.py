"""The one interface every vector index implements (embedded FAISS+SQLite, OpenSearch, Milvus).

An index stores vectors with ids, metadata and where each image lives. It knows no model: the model
descriptor it records is an opaque dict that the service layer compares (see ``IndexSettings.embedding``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lookalike.index.filters import Condition, normalize
from lookalike.index.known import KnownFields

Metric = Literal["l2", "cosine"]
IndexKind = Literal["exact", "hnsw", "ivf"]
Encoding = Literal["none", "fp16", "sq8", "pq"]
ENCODINGS: tuple[Encoding, ...] = ("none", "fp16", "sq8", "pq")
StoreEncoding = Literal["none", "fp16", "sq8"]
STORE_ENCODINGS: tuple[StoreEncoding, ...] = ("none", "fp16", "sq8")
INDEX_KINDS: tuple[IndexKind, ...] = ("exact", "hnsw", "ivf")
Filter = Mapping[str, Any]
"""Metadata filter: ``{"label": "Dress"}`` (equality), ``{"label": ["Dress", "Skirt"]}`` (one of),
``{"price": {"gte": 10, "lt": 50}}`` (numeric range); several keys must all hold."""


@dataclass(frozen=True)
class IndexSettings:
    """What an index is: fixed at creation and recorded with it."""

    dim: int
    metric: Metric = "cosine"
    kind: IndexKind = "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    embedding: Mapping[str, Any] = field(default_factory=dict)
    """The model that made the vectors (name, dim, preprocessing): compared by the service layer."""
    # Quantization and index structure (embedded backend). Every field has a default that keeps what an
    # index without it (an older settings JSON) always was: float32 vectors, no reduction.
    encoding: Encoding = "none"
    """How the search structure stores vectors: float32 ("none"), fp16, 8-bit scalar ("sq8") or product
    quantization ("pq"). The float vectors are always kept too (in SQLite, and unless ``rerank_encoding``
    says otherwise in a float store for exact search and re-scoring), so results carry exact scores whatever
    the encoding."""
    pq_m: int = 64
    """Sub-quantizers for ``encoding="pq"`` (8 bits each, so ``pq_m`` bytes a vector); must divide the
    (reduced) dimension."""
    pq_bits: int = 8
    """Bits per sub-quantizer code (4 to 8): 2**bits codewords each, so 39 * 2**bits vectors to train."""
    ivf_lists: int = 1024
    """Inverted lists (k-means cells) for ``kind="ivf"``: ~4·sqrt(n) is the usual choice."""
    nprobe: int = 16
    """Cells an IVF query visits: more is slower and finds more."""
    reduce_dim: int = 0
    """PCA to this many dimensions before the search structure (0 = off), learned on the catalogue."""
    rerank: int = 1
    """Lossy settings fetch ``rerank * k`` candidates and re-score them with the float vectors (1 = only
    re-score the k found, which still makes the scores and their order exact; 0 = no re-scoring: scores are
    the quantized distances and queries never touch the float store, the least resident memory)."""
    rerank_encoding: StoreEncoding = "none"
    """How the re-scoring store keeps the vectors: float32 ("none"), fp16 or 8-bit ("sq8", a quarter of the
    float store: 1.3 GB instead of 5.1 GB at a million 1280-d vectors, so it stays in memory where the float
    store would be paged from disk). Candidates are then re-scored with the store's codes and the final k
    with the float vectors in SQLite, so scores stay exact; ``exact=True`` brute-forces the codes."""

    def is_lossy(self) -> bool:
        """Whether the search structure holds anything but the float vectors (so needs the float store)."""
        return self.encoding != "none" or self.reduce_dim > 0 or self.kind == "ivf"

    def check(self) -> None:
        """Refuse settings that cannot work, naming the setting (raised before anything is created)."""
        from lookalike.errors import IndexError_

        if self.metric not in ("l2", "cosine"):
            raise IndexError_(f"metric must be cosine or l2, got {self.metric!r}")
        if self.kind not in INDEX_KINDS:
            raise IndexError_(f"kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        if self.encoding not in ENCODINGS:
            raise IndexError_(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        if not isinstance(self.rerank, int) or isinstance(self.rerank, bool) or self.rerank < 0:
            raise IndexError_(f"rerank must be 0 (no re-scoring) or a positive integer, got {self.rerank!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "ivf_lists", "nprobe", "pq_m"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise IndexError_(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.reduce_dim, int) or not 0 <= self.reduce_dim < self.dim:
            raise IndexError_(f"reduce_dim must be 0 (off) or below the dimension {self.dim}, got {self.reduce_dim!r}")
        if self.rerank_encoding not in STORE_ENCODINGS:
            raise IndexError_(
                f"rerank_encoding must be one of {', '.join(STORE_ENCODINGS)}, got {self.rerank_encoding!r}"
            )
        if self.rerank_encoding != "none" and not self.is_lossy():
            raise IndexError_(
                "rerank_encoding needs a lossy structure (encoding, reduce_dim or kind=ivf): "
                "a float structure is its own store"
            )
        if self.pq_bits not in range(4, 9):
            raise IndexError_(f"pq_bits must be 4 to 8, got {self.pq_bits!r}")
        if self.nprobe > self.ivf_lists:
            raise IndexError_(f"nprobe ({self.nprobe}) cannot exceed ivf_lists ({self.ivf_lists})")
        searched = self.reduce_dim or self.dim
        if self.encoding == "pq" and searched % self.pq_m:
            raise IndexError_(f"pq_m ({self.pq_m}) must divide the searched dimension {searched}")


SERVER_FIELDS = ("dim", "metric", "kind", "hnsw_m", "ef_construction", "ef_search", "embedding")
"""What a server backend honours and records; the rest are embedded-only and stay at their defaults there."""


def server_record(settings: IndexSettings) -> dict[str, Any]:
    """The settings a server backend stores with its index (the fields it honours, as plain JSON)."""
    return {
        name: (dict(value) if name == "embedding" else value)
        for name, value in vars(settings).items()
        if name in SERVER_FIELDS
    }


def refuse_unsupported(settings: IndexSettings, backend: str) -> None:
    """Server backends store float vectors in HNSW or flat form; refuse embedded-only settings by name."""
    from lookalike.errors import IndexError_

    defaults = IndexSettings(dim=settings.dim)
    if settings.kind not in ("exact", "hnsw"):
        raise IndexError_(f"{backend} does not support kind={settings.kind!r}; choose exact or hnsw")
    for name in ("encoding", "reduce_dim", "rerank", "rerank_encoding"):
        if getattr(settings, name) != getattr(defaults, name):
            raise IndexError_(
                f"{backend} does not support {name}={getattr(settings, name)!r} (embedded backend only); "
                f"leave it at {getattr(defaults, name)!r}"
            )


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


@dataclass
class SearchResult:
    """One hit. ``score`` is higher-is-better; ``distance`` is the metric's own (L2, or 1 - cosine)."""

    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    location: str | None
    tier: str | None = None
    """``same_item``, ``similar`` or ``none`` once a calibrated search has judged it (see lookalike.confidence)."""
    duplicates: list[str] = field(default_factory=list)
    """Ids of near-identical items folded under this one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "distance": self.distance,
            "metadata": self.metadata,
            "location": self.location,
            "tier": self.tier,
            "duplicates": self.duplicates,
        }


def score_from_distance(distance: float, metric: Metric) -> float:
    """One scoring rule for every backend, so their answers compare.

    L2 follows OpenSearch's ``1 / (1 + d^2)``; cosine reports the cosine similarity itself.
    """
    if metric == "l2":
        return 1.0 / (1.0 + distance * distance)
    return 1.0 - distance


def facet_key(value: Any) -> str | None:
    """How a metadata value is counted in facets: booleans as "true"/"false", integers and text as text (so 1
    and "1" share a key); None for what is not counted (floats, lists, objects, null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    return None


def is_number(value: Any) -> bool:
    """Whether a metadata value counts in :meth:`VectorIndex.ranges`: an integer or a float, not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def by_count(values: Mapping[str, int]) -> dict[str, int]:
    """Values highest count first (ties keep their order)."""
    return dict(sorted(values.items(), key=lambda kv: -kv[1]))


def choose_facets(counts: Mapping[str, Mapping[str, int]], max_values: int) -> dict[str, dict[str, int]]:
    """The facets of the counted values: fields with at most ``max_values`` distinct values, by name."""
    return {key: by_count(values) for key, values in sorted(counts.items()) if len(values) <= max_values}


def facets_under(
    everything: Mapping[str, Mapping[str, int]], passing: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """The fields of ``everything`` (the unfiltered facets) with the counts of the passing items."""
    return {key: by_count(passing.get(key, {})) for key in everything}


class VectorIndex(ABC):
    """k-NN over vectors with metadata. Writes are upserts by id; nothing needs a rebuild."""

    settings: IndexSettings

    @abstractmethod
    def add(self, items: Sequence[Item]) -> None:
        """Insert or replace items by id. Every item needs a vector of ``settings.dim`` floats."""

    @abstractmethod
    def delete(self, ids: Iterable[str]) -> int:
        """Remove items by id; returns how many existed."""

    @abstractmethod
    def search(
        self, vector: np.ndarray, k: int = 10, filter: Filter | None = None, exact: bool = False
    ) -> list[SearchResult]:
        """The k nearest items to ``vector`` that match ``filter``, best first.

        ``exact=True`` forces brute force even on an approximate index (the ground truth for recall).
        """

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
