"""The service layer: what every face (the command line, the REST API) calls to do its work.

A face parses its input and shows the answer; everything in between is here, once: adding one item
(:func:`add_one_item`), describing an index (:func:`describe_index`, the same fields for ``lookalike info``
and ``GET /api/info``), searching within the one set of limits (:func:`search`, :func:`search_vector`,
:data:`MAX_K`), and giving an index another search structure (:func:`rebuild_index`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Catalog
from lookalike.errors import LookalikeError, SourceError
from lookalike.index import Filter, Item, VectorIndex
from lookalike.index.backends import IndexTarget
from lookalike.search import (
    DEFAULT_SHAPING,
    MAX_K,
    MAX_OFFSET,
    EmbeddedQuery,
    SearchOutcome,
    Shaping,
    search_image,
    search_item,
    search_steered,
    search_url,
)

__all__ = [
    "MAX_K",
    "MAX_OFFSET",
    "REBUILD_SETTINGS",
    "add_one_item",
    "check_limits",
    "describe_index",
    "rebuild_index",
    "search",
    "search_vector",
]


# ----------------------------------------------------------------------------------- search
def check_limits(k: int, offset: int = 0) -> None:
    """Refuse a k or an offset outside the limits every face shares (:data:`MAX_K`, :data:`MAX_OFFSET`)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise LookalikeError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise LookalikeError(f"offset must be an integer from 0 to {MAX_OFFSET}, got {offset!r}")


def _above(outcome: SearchOutcome, min_score: float | None) -> SearchOutcome:
    """Leave out the results scoring below ``min_score`` (the next page still starts where this one ended)."""
    if min_score is not None:
        outcome.results = [hit for hit in outcome.results if hit.score >= min_score]
    return outcome


def search_vector(
    catalog: Catalog,
    vector: np.ndarray | None,
    k: int = 10,
    filter: Filter | None = None,
    *,
    exact: bool = False,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    exclude: Collection[str] = (),
    shaping: Shaping = DEFAULT_SHAPING,
    image: bytes | None = None,
    shade: np.ndarray | None = None,
    min_score: float | None = None,
) -> SearchOutcome:
    """A search with an embedded query (None: the ``positive`` ids are the query), moved by the feedback
    ids, within the limits, without the results scoring below ``min_score``."""
    check_limits(k, offset)
    outcome = search_steered(
        catalog, vector, k, filter, exact, offset, positive, negative, exclude, shaping, image, shade
    )
    return _above(outcome, min_score)


def search(
    catalog: Catalog,
    query: str | bytes | None,
    k: int = 10,
    filter: Filter | None = None,
    *,
    by_id: bool = False,
    exact: bool = False,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    shaping: Shaping = DEFAULT_SHAPING,
    min_score: float | None = None,
) -> SearchOutcome:
    """Search with ``query``: image bytes; a text that is an http(s) URL, an image file or an indexed item's
    id (only an id with ``by_id``); or None, when the ``positive`` ids are the query."""
    check_limits(k, offset)
    steering: dict[str, Any] = {"offset": offset, "positive": positive, "negative": negative, "shaping": shaping}
    if query is None:
        if not positive:
            raise LookalikeError("give a query (an image, a URL or an id), or positive ids")
        outcome = search_steered(catalog, None, k, filter, exact, **steering)
    elif isinstance(query, bytes):
        outcome = search_image(catalog, query, k, filter, exact, **steering)
    elif by_id:
        outcome = search_item(catalog, query, k, filter, exact, **steering)
    elif query.startswith(("http://", "https://")):
        outcome = search_url(catalog, query, k, filter, exact=exact, **steering)
    elif Path(query).is_file():
        outcome = search_image(catalog, Path(query).read_bytes(), k, filter, exact, **steering)
    elif catalog.index.get(query) is not None:
        outcome = search_item(catalog, query, k, filter, exact, **steering)
    else:
        raise SourceError(f"{query!r} is not an image file, an http(s) URL, or an indexed id")
    return _above(outcome, min_score)


# ----------------------------------------------------------------------------------- writing
def add_one_item(
    catalog: Catalog,
    data: bytes,
    kind: str,
    query: EmbeddedQuery,
    uploads_dir: Path,
    item_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Item:
    """Add or replace one item from its image bytes (``kind``: the file extension, ``query``: the image
    embedded). The id is the content hash unless given; the index checks the whole item (its contract)
    before anything is written, the file is kept under ``uploads_dir`` only once the index took the item,
    and the file of the item it replaced is removed."""
    from lookalike.api.uploads import forget_upload, store_upload, upload_path
    from lookalike.ingest import content_hash

    digest = content_hash(data)
    item_id = item_id or digest
    path = upload_path(uploads_dir, item_id, digest, kind)
    item = Item(item_id, query.vector, dict(metadata or {}), str(path), digest, query.colour)
    index = catalog.index
    previous = index.get(item_id)
    store_upload(path, data, lambda: index.add([item]))
    forget_upload(uploads_dir, previous, keep=str(path))
    return item


# ----------------------------------------------------------------------------------- describing
def backend_of(index: VectorIndex) -> str:
    """The backend's name (embedded, opensearch, milvus): the module its class lives in under ``index``."""
    return type(index).__module__.removeprefix("lookalike.index.").split(".")[0]


def describe_index(source: Catalog | VectorIndex, location: str | None = None) -> dict[str, Any]:
    """What an index is and holds, the one description ``lookalike info`` prints and ``GET /api/info``
    returns: backend, model, structure settings (``hnsw``, ``ivf``, the encoding of a lossy one), the
    backend's counts (``items`` first), metadata fields, notes, and what searches get from it (calibrated
    tiers, the default colour weight, the focus stage). ``location`` (where the index lives) is added when
    given: the command line names it, a public server does not.

    A catalogue answers ``calibrated`` and ``colour_weight`` as its searches see them (read once); an index
    alone is read for them."""
    index = source.index if isinstance(source, Catalog) else source
    settings = index.settings
    embedding = settings.embedding
    info: dict[str, Any] = {"backend": backend_of(index)}
    if location is not None:
        info["location"] = location
    info |= {"model": embedding.get("model"), "dim": settings.dim, "metric": settings.metric, "kind": settings.kind}
    if settings.kind == "hnsw":
        hnsw = {"m": settings.hnsw_m, "ef_construction": settings.ef_construction, "ef_search": settings.ef_search}
        info["hnsw"] = hnsw
    if settings.kind == "ivf":
        info["ivf"] = {"lists": settings.ivf_lists, "nprobe": settings.nprobe}
    if settings.is_lossy():
        info["encoding"] = settings.encoding
        if settings.encoding == "pq":
            info |= {"pq_m": settings.pq_m, "pq_bits": settings.pq_bits}
        info |= {"reduce_dim": settings.reduce_dim, "rerank": settings.rerank}
        info["rerank_encoding"] = settings.rerank_encoding
    info |= {"preprocessing": embedding.get("preprocessing"), "weights": embedding.get("weights")}
    info |= index.stats()
    info["metadata_fields"] = {key: len(values) for key, values in index.facets(max_values=1000).items()}
    notes = index.notes()
    info["notes"] = sorted(notes)
    # An index alone is read as a catalogue would read it (only its index is used for that).
    catalog = source if isinstance(source, Catalog) else Catalog(index, None)  # type: ignore[arg-type]
    calibrated = catalog.calibration() is not None
    info |= {"calibrated": calibrated, "colour_weight": catalog.colour_weight(), "focus": bool(embedding.get("focus"))}
    return info


# ----------------------------------------------------------------------------------- maintenance
REBUILD_SETTINGS = (
    "kind",
    "hnsw_m",
    "ef_construction",
    "ef_search",
    "ivf_lists",
    "nprobe",
    "encoding",
    "pq_m",
    "reduce_dim",
    "rerank",
    "rerank_encoding",
)
"""What :func:`rebuild_index` may change: the search structure and the query-time settings, never what the
vectors are (dimension, metric, model: those need re-embedding)."""


def rebuild_index(target: IndexTarget, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Give an embedded index other structure settings (``changes``, a subset of :data:`REBUILD_SETTINGS`),
    rebuilt from the vectors it stores, nothing embedded again; only query-time settings (``ef_search``,
    ``nprobe``, ``rerank``) changed keep the structure as it is; no changes at all compact the structure
    (drop the vectors of replaced and deleted items). Returns the rebuilt index's description."""
    from lookalike.index.backends import open_index
    from lookalike.index.embedded import EmbeddedIndex

    unknown = sorted(set(changes) - set(REBUILD_SETTINGS))
    if unknown:
        raise LookalikeError(f"rebuild cannot change {', '.join(unknown)}; it changes {', '.join(REBUILD_SETTINGS)}")
    if target.backend != "embedded":
        raise LookalikeError(
            f"rebuild works on the embedded backend; a {target.backend} index keeps the structure it was made "
            "with (migrate it to a new index with other settings instead)"
        )
    if not changes:  # the same structure, built again without the vectors replaced or deleted since
        compacted = EmbeddedIndex.open(target.path, mmap=False)
        try:
            compacted.compact()
            compacted.save()
            return describe_index(compacted, target.describe())
        finally:
            compacted.close()
    with open_index(target) as opened:
        settings = dataclasses.replace(opened.settings, **dict(changes))
    with EmbeddedIndex.rebuild(target.path, settings) as rebuilt:
        return describe_index(rebuilt, target.describe())
