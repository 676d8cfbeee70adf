"""Search: a query (image bytes, URL, or an indexed item) -> embedding -> index -> results.

Timings per stage come back with the results, because "milliseconds" is a promise worth checking.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike import colour
from lookalike.catalog import Catalog
from lookalike.confidence.judge import judge
from lookalike.confidence.tiers import TIERS
from lookalike.crop import Crop, crop_of_box
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
class SearchOutcome:
    """What one search found: the page of results, the model, each stage's time and the best match's tier.

    (The REST API wraps it in its own ``SearchResponse``, the body a client reads.)"""

    results: list[SearchResult]
    model: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    match: str | None = None
    """The best result's tier (``same_item``, ``similar``, ``none``), None when the index is not calibrated."""
    next_offset: int | None = None
    """Where the next page starts (``offset + k``), or None when this page was the last (fewer than k)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "match": self.match,
            "timings_ms": {stage: round(ms, 3) for stage, ms in self.timings_ms.items()},
            "results": [result.to_dict() for result in self.results],
        }


@dataclass(frozen=True)
class Shaping:
    """How a list of nearest neighbours becomes the answer (see :mod:`lookalike.confidence`)."""

    dedupe: bool = True
    """Fold near-identical items into one hit (their ids under ``duplicates``)."""
    min_tier: str | None = None
    """Leave out results below this tier (``similar``: no unrelated items; ``same_item``: copies only)."""
    colour: float | None = None
    """How much the query's colours matter, 0 (shape only, any colour) to 1 (colour dominates); None: the
    catalogue's default (its note ``colour``, else 0)."""

    def __post_init__(self) -> None:
        if self.min_tier is not None and self.min_tier not in TIERS:
            raise LookalikeError(f"min_tier must be one of {', '.join(TIERS)}, got {self.min_tier!r}")
        if self.colour is not None and (
            isinstance(self.colour, bool) or not isinstance(self.colour, int | float) or not 0 <= self.colour <= 1
        ):
            raise LookalikeError(f"colour must be a number from 0 to 1, got {self.colour!r}")

    def candidates(self, wanted: int) -> int:
        """How many neighbours to read for ``wanted`` shown: folding and tier filters drop some."""
        return wanted if not self.dedupe and self.min_tier is None else 2 * wanted + 10


DEFAULT_SHAPING = Shaping()
"""The default shaping: copies folded, every tier shown."""


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = (now - self._last) * 1000
        self._last = now


@dataclass
class EmbeddedQuery:
    """A query image as the index sees it: its vector, its colour descriptor, and what each took."""

    vector: np.ndarray
    colour: np.ndarray
    timings: dict[str, float]
    box: Crop | None = None
    """Where the focus stage found the product, as fractions of the picture the shopper gave (None without
    focus, or when nothing stood out): the page offers it as the starting crop."""


def embed_query(
    catalog: Catalog,
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    max_decode_seconds: float = DEFAULT_MAX_DECODE_SECONDS,
    crop: Crop | None = None,
) -> EmbeddedQuery:
    """Decode one query image (the one guarded decode), embed it, and describe its colour from the same
    crop the model saw (so it compares with the catalogue's, taken at ingest the same way).

    With ``crop`` only that region is searched; the picture is then decoded larger (a JPEG's scaled decode
    would otherwise leave a small region with too few pixels), within the same limits."""
    watch = _Stopwatch()
    embedder = catalog.embedder
    min_side = embedder.decode_min_side if crop is None else math.ceil(embedder.decode_min_side * crop.zoom)
    image = load_image(
        data,
        min_side=min_side,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        max_decode_bytes=max_decode_bytes,
        max_decode_seconds=max_decode_seconds,
    )
    if crop is not None:
        image = crop.apply(image)
    pixels, found = embedder.prepare_with_box(image)
    box = crop_of_box(found, image.size) if found is not None and crop is None else None
    shade = colour.describe(pixels)
    watch.lap("decode")
    vector = embedder.embed_prepared(pixels[None])[0]
    watch.lap("embed")
    return EmbeddedQuery(vector, shade, watch.timings, box)


COLOUR_POOL = 2
"""Colour re-orders the nearest ``COLOUR_POOL * (offset + k)`` items: a wider pool lets colour pull in items
of another kind (measured: with 2 x k, same-label precision stays within 0.05 at colour 1; docs/benchmarks.md)."""
MAX_K = 100
"""The most results one search returns, on every face (API, CLI): deeper pages come with ``offset``."""
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
    shaping: Shaping = DEFAULT_SHAPING,
    image: bytes | None = None,
    shade: np.ndarray | None = None,
) -> SearchOutcome:
    """The k items nearest ``vector`` after the first ``offset``, leaving out the ids in ``exclude``, shaped
    by the catalogue's calibration (``image``, the query's bytes, lets ambiguous matches be verified) and
    re-ordered by colour when ``shade`` (the query's colour descriptor) is given and colour weighs."""
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise LookalikeError(f"offset must be an integer from 0 to {MAX_OFFSET}, got {offset!r}")
    # Every search passes here: a filter on a field no item has is a FilterError naming the known fields
    # (cached by the index, so this costs a set lookup; see lookalike.index.known).
    catalog.index.check_filter(filter)
    watch = _Stopwatch()
    excluded = set(exclude)
    calibration = catalog.calibration()
    weight = shaping.colour if shaping.colour is not None else catalog.colour_weight()
    wanted = shaping.candidates(offset + k) if calibration is not None else offset + k
    if shade is not None and weight > 0:
        wanted = max(wanted, COLOUR_POOL * (offset + k))
    results = catalog.index.search(vector, wanted + len(excluded), filter, exact=exact)
    results = [result for result in results if result.id not in excluded]
    watch.lap("search")
    results, match = judge(catalog.index, calibration, results, image, shaping.dedupe, shaping.min_tier)
    if calibration is not None:
        watch.lap("judge")
    if shade is not None and weight > 0:
        pool = results[: COLOUR_POOL * (offset + k)]
        results = colour.rerank(pool, shade, catalog.index.colours([hit.id for hit in pool]), weight)
        watch.lap("colour")
    page = results[offset : offset + k]
    following = offset + k if len(page) == k else None
    return SearchOutcome(page, catalog.embedder.name, watch.timings, match, following)


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
    shaping: Shaping = DEFAULT_SHAPING,
    image: bytes | None = None,
    shade: np.ndarray | None = None,
) -> SearchOutcome:
    """A search moved toward the ``positive`` items and away from the ``negative`` ones (by id; see
    :mod:`lookalike.feedback`), which are themselves left out of the results."""
    for name, ids in (("positive", positive), ("negative", negative)):
        if len(ids) > MAX_FEEDBACK:
            raise LookalikeError(f"{name} names {len(ids)} items; at most {MAX_FEEDBACK}")
    if positive or negative or vector is None:  # steer() refuses a search with no query and no positive
        metric = catalog.index.settings.metric
        vector = steer(vector, _vectors_of(catalog, positive), _vectors_of(catalog, negative), metric)
    if positive or negative:
        image = None  # a moved query is no longer the photo: nothing to verify against
    if shade is None and positive:
        shade = _mean_colour(catalog, positive)
    excluded = {*exclude, *positive, *negative}
    return search_vector(catalog, vector, k, filter, exact, offset, excluded, shaping, image, shade)


def _mean_colour(catalog: Catalog, ids: Sequence[str]) -> np.ndarray | None:
    """The mean colour of the items a shopper liked (None when none of them has one)."""
    shades = [shade for shade in catalog.index.colours(list(ids)).values() if shade is not None]
    if not shades:
        return None
    mean = np.mean(shades, axis=0)
    return mean / mean.sum()


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
    shaping: Shaping = DEFAULT_SHAPING,
) -> SearchOutcome:
    """The k catalogue items that look most like the image in ``data`` (after ``offset``, moved by the
    ``positive`` and ``negative`` ids)."""
    query = embed_query(catalog, data)
    response = search_steered(
        catalog, query.vector, k, filter, exact, offset, positive, negative, (), shaping, data, query.colour
    )
    response.timings_ms = query.timings | response.timings_ms
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
    shaping: Shaping = DEFAULT_SHAPING,
) -> SearchOutcome:
    """Fetch the image at ``url`` (through ``guard`` when the URL comes from outside) and search with it."""
    watch = _Stopwatch()
    data = fetch_bytes(url, guard=guard)
    watch.lap("fetch")
    response = search_image(catalog, data, k, filter, exact, offset, positive, negative, shaping)
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
    shaping: Shaping = DEFAULT_SHAPING,
) -> SearchOutcome:
    """ "More like this": items nearest to an indexed item, leaving the item itself out."""
    item = catalog.index.get(item_id, with_vector=True)
    if item is None or item.vector is None:
        raise NotFoundError(f"no item with id {item_id!r} in the index")
    shade = catalog.index.colours([item_id]).get(item_id)
    return search_steered(
        catalog, item.vector, k, filter, exact, offset, positive, negative, (item_id,), shaping, None, shade
    )
