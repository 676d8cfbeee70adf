"""Search: a query (image bytes, URL, or an indexed item) -> embedding -> index -> results.

Timings per stage come back with the results, because "milliseconds" is a promise worth checking.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.catalog import Catalog
from lookalike.errors import LookalikeError, NotFoundError
from lookalike.feedback import MAX_FEEDBACK, steer
from lookalike.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_DECODE_SECONDS,
    DEFAULT_MAX_PIXELS,
    load_image,
)
from lookalike.index import Filter, SearchResult
from lookalike.sources.fetch import AddressGuard, fetch_bytes


@dataclass
class SearchResponse:
    results: list[SearchResult]
    model: str
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "timings_ms": {stage: round(ms, 3) for stage, ms in self.timings_ms.items()},
            "results": [result.to_dict() for result in self.results],
        }


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = (now - self._last) * 1000
        self._last = now


def embed_image_bytes(
    catalog: Catalog,
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    max_decode_seconds: float = DEFAULT_MAX_DECODE_SECONDS,
) -> tuple[np.ndarray, dict[str, float]]:
    """Decode and embed one query image; returns the vector and the decode/embed timings."""
    watch = _Stopwatch()
    image = load_image(
        data,
        min_side=catalog.embedder.decode_min_side,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        max_decode_bytes=max_decode_bytes,
        max_decode_seconds=max_decode_seconds,
    )
    pixels = catalog.embedder.prepare(image)
    watch.lap("decode")
    vector = catalog.embedder.embed_prepared(pixels[None])[0]
    watch.lap("embed")
    return vector, watch.timings


MAX_OFFSET = 1000
"""How far past the first results a search may page (offset + k items are searched for)."""


def search_vector(
    catalog: Catalog,
    vector: np.ndarray,
    k: int = 10,
    filter: Filter | None = None,
    exact: bool = False,
    offset: int = 0,
    exclude: Collection[str] = (),
) -> SearchResponse:
    """The k items nearest ``vector`` after the first ``offset``, leaving out the ids in ``exclude``."""
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise LookalikeError(f"offset must be an integer from 0 to {MAX_OFFSET}, got {offset!r}")
    watch = _Stopwatch()
    excluded = set(exclude)
    results = catalog.index.search(vector, offset + k + len(excluded), filter, exact=exact)
    results = [result for result in results if result.id not in excluded][offset : offset + k]
    watch.lap("search")
    return SearchResponse(results, catalog.embedder.name, watch.timings)


def search_steered(
    catalog: Catalog,
    vector: np.ndarray | None,
    k: int = 10,
    filter: Filter | None = None,
    exact: bool = False,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    exclude: Collection[str] = (),
) -> SearchResponse:
    """A search moved toward the ``positive`` items and away from the ``negative`` ones (by id; see
    :mod:`lookalike.feedback`), which are themselves left out of the results."""
    for name, ids in (("positive", positive), ("negative", negative)):
        if len(ids) > MAX_FEEDBACK:
            raise LookalikeError(f"{name} names {len(ids)} items; at most {MAX_FEEDBACK}")
    if positive or negative or vector is None:  # steer() refuses a search with no query and no positive
        metric = catalog.index.settings.metric
        vector = steer(vector, _vectors_of(catalog, positive), _vectors_of(catalog, negative), metric)
    return search_vector(catalog, vector, k, filter, exact, offset, {*exclude, *positive, *negative})


def _vectors_of(catalog: Catalog, ids: Sequence[str]) -> list[np.ndarray]:
    vectors = []
    for item_id in ids:
        item = catalog.index.get(item_id, with_vector=True)
        if item is None or item.vector is None:
            raise NotFoundError(f"no item with id {item_id!r} in the index (named as feedback)")
        vectors.append(item.vector)
    return vectors


def search_image(
    catalog: Catalog,
    data: bytes,
    k: int = 10,
    filter: Filter | None = None,
    exact: bool = False,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
) -> SearchResponse:
    """The k catalogue items that look most like the image in ``data`` (after ``offset``, moved by the
    ``positive`` and ``negative`` ids)."""
    vector, timings = embed_image_bytes(catalog, data)
    response = search_steered(catalog, vector, k, filter, exact, offset, positive, negative)
    response.timings_ms = timings | response.timings_ms
    return response


def search_url(
    catalog: Catalog,
    url: str,
    k: int = 10,
    filter: Filter | None = None,
    guard: AddressGuard | None = None,
    exact: bool = False,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
) -> SearchResponse:
    """Fetch the image at ``url`` (through ``guard`` when the URL comes from outside) and search with it."""
    watch = _Stopwatch()
    data = fetch_bytes(url, guard=guard)
    watch.lap("fetch")
    response = search_image(catalog, data, k, filter, exact, offset, positive, negative)
    response.timings_ms = watch.timings | response.timings_ms
    return response


def search_item(
    catalog: Catalog,
    item_id: str,
    k: int = 10,
    filter: Filter | None = None,
    exact: bool = False,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
) -> SearchResponse:
    """ "More like this": items nearest to an indexed item, leaving the item itself out."""
    item = catalog.index.get(item_id, with_vector=True)
    if item is None or item.vector is None:
        raise NotFoundError(f"no item with id {item_id!r} in the index")
    return search_steered(catalog, item.vector, k, filter, exact, offset, positive, negative, exclude=(item_id,))
