"""What an index is (:class:`IndexSettings`), which of it each backend honours, and how it is read back.

The settings are fixed when an index is made and stored with it (SQLite's ``meta`` table, OpenSearch's mapping
``_meta``, the Milvus collection's description). Two groups, stated here once as data:

* :data:`SHARED_FIELDS`: what every backend honours and records (dimension, metric, HNSW parameters, the model).
* :data:`EMBEDDED_ONLY_FIELDS`: how the embedded FAISS structure is built and searched (quantization, IVF, PCA,
  re-scoring). A server backend stores float vectors in HNSW or flat form, so it refuses any of these that is
  not at its default (:func:`refuse_embedded_options`) instead of silently ignoring it.

One decoder (:func:`settings_from_record`) reads every backend's stored settings with one policy: keys this
release does not know mean a newer lookalike made the index, and the index is refused with
:class:`IndexFormatError` naming them (dropping them could change what the index means; opening it anyway
could corrupt it). Settings JSON written by earlier releases (fewer keys) reads as it always did: every field
has a default that keeps what an index without it always was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from lookalike.errors import IndexFormatError, IndexRequestError, VectorSizeError

Metric = Literal["l2", "cosine"]
IndexKind = Literal["exact", "hnsw", "ivf"]
Encoding = Literal["none", "fp16", "sq8", "pq"]
ENCODINGS: tuple[Encoding, ...] = ("none", "fp16", "sq8", "pq")
StoreEncoding = Literal["none", "fp16", "sq8"]
STORE_ENCODINGS: tuple[StoreEncoding, ...] = ("none", "fp16", "sq8")
INDEX_KINDS: tuple[IndexKind, ...] = ("exact", "hnsw", "ivf")
SERVER_KINDS: tuple[IndexKind, ...] = ("exact", "hnsw")
"""The structures a server backend builds (its own HNSW, or a flat index)."""


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
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim <= 0:
            raise VectorSizeError(f"an index needs a positive dimension, got {self.dim!r}")
        if self.metric not in ("l2", "cosine"):
            raise IndexRequestError(f"metric must be cosine or l2, got {self.metric!r}")
        if self.kind not in INDEX_KINDS:
            raise IndexRequestError(f"kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        if self.encoding not in ENCODINGS:
            raise IndexRequestError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        if not isinstance(self.rerank, int) or isinstance(self.rerank, bool) or self.rerank < 0:
            raise IndexRequestError(f"rerank must be 0 (no re-scoring) or a positive integer, got {self.rerank!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "ivf_lists", "nprobe", "pq_m"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise IndexRequestError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.reduce_dim, int) or not 0 <= self.reduce_dim < self.dim:
            raise IndexRequestError(
                f"reduce_dim must be 0 (off) or below the dimension {self.dim}, got {self.reduce_dim!r}"
            )
        if self.rerank_encoding not in STORE_ENCODINGS:
            raise IndexRequestError(
                f"rerank_encoding must be one of {', '.join(STORE_ENCODINGS)}, got {self.rerank_encoding!r}"
            )
        if self.rerank_encoding != "none" and not self.is_lossy():
            raise IndexRequestError(
                "rerank_encoding needs a lossy structure (encoding, reduce_dim or kind=ivf): "
                "a float structure is its own store"
            )
        if self.pq_bits not in range(4, 9):
            raise IndexRequestError(f"pq_bits must be 4 to 8, got {self.pq_bits!r}")
        if self.nprobe > self.ivf_lists:
            raise IndexRequestError(f"nprobe ({self.nprobe}) cannot exceed ivf_lists ({self.ivf_lists})")
        searched = self.reduce_dim or self.dim
        if self.encoding == "pq" and searched % self.pq_m:
            raise IndexRequestError(f"pq_m ({self.pq_m}) must divide the searched dimension {searched}")


SHARED_FIELDS = ("dim", "metric", "kind", "hnsw_m", "ef_construction", "ef_search", "embedding")
"""What every backend honours and records (``kind`` is shared, though only the embedded backend has ``ivf``)."""
EMBEDDED_ONLY_FIELDS = (
    "encoding",
    "pq_m",
    "pq_bits",
    "ivf_lists",
    "nprobe",
    "reduce_dim",
    "rerank",
    "rerank_encoding",
)
"""How the embedded FAISS structure is built and searched; a server backend refuses any not at its default."""
SERVER_FIELDS = SHARED_FIELDS
"""The name earlier code used for :data:`SHARED_FIELDS`."""

assert set(SHARED_FIELDS) | set(EMBEDDED_ONLY_FIELDS) == {f.name for f in fields(IndexSettings)}


def shared_record(settings: IndexSettings) -> dict[str, Any]:
    """The settings a server backend stores with its index (the shared fields, as plain JSON)."""
    return {
        name: (dict(value) if name == "embedding" else value)
        for name, value in _record(settings).items()
        if name in SHARED_FIELDS
    }


server_record = shared_record
"""The name earlier code used for :func:`shared_record`."""


def full_record(settings: IndexSettings) -> dict[str, Any]:
    """Every field as plain JSON: what the embedded backend stores (it honours them all)."""
    return _record(settings)


def _record(settings: IndexSettings) -> dict[str, Any]:
    return asdict(settings)


def embedded_options(settings: IndexSettings) -> dict[str, Any]:
    """The embedded-only fields that differ from their defaults (empty: the settings suit any backend)."""
    defaults = IndexSettings(dim=settings.dim)
    return {
        name: getattr(settings, name)
        for name in EMBEDDED_ONLY_FIELDS
        if getattr(settings, name) != getattr(defaults, name)
    }


def refuse_embedded_options(settings: IndexSettings, backend: str) -> None:
    """A server backend stores float vectors in HNSW or flat form: refuse embedded-only settings by name."""
    if settings.kind not in SERVER_KINDS:
        raise IndexRequestError(f"{backend} does not support kind={settings.kind!r}; choose exact or hnsw")
    options = embedded_options(settings)
    if options:
        named = ", ".join(f"{name}={value!r}" for name, value in options.items())
        raise IndexRequestError(
            f"{backend} does not support {named} (embedded backend only); leave "
            f"{'it' if len(options) == 1 else 'them'} at the default or use --backend embedded"
        )


refuse_unsupported = refuse_embedded_options
"""The name earlier code used for :func:`refuse_embedded_options`."""


def settings_from_record(record: Any, where: str) -> IndexSettings:
    """Stored settings (a JSON object) as :class:`IndexSettings`, by the one policy of every backend.

    Missing keys take their defaults (older releases wrote fewer); unknown keys are refused with an
    :class:`IndexFormatError` naming them, since the index was most likely made by a newer lookalike whose
    settings this release would misread. ``where`` names the index in the message."""
    if not isinstance(record, Mapping):
        raise IndexFormatError(f"{where} has settings that are not a JSON object: not a lookalike index")
    known = {f.name for f in fields(IndexSettings)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise IndexFormatError(
            f"{where} records settings this lookalike does not know: {', '.join(map(repr, unknown))}. "
            "A newer lookalike probably made it: upgrade lookalike to open it"
        )
    if "dim" not in record:
        raise IndexFormatError(f"{where} records no dimension in its settings: not a lookalike index")
    try:
        return IndexSettings(**dict(record))
    except TypeError as error:  # a wrong type that the dataclass itself refuses
        raise IndexFormatError(f"{where} has unreadable settings: {error}") from None
