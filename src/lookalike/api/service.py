"""What the routes share: the server's state, and one search function behind every search route."""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from lookalike.api.capacity import Slots
from lookalike.api.images import ThumbnailCache, image_path, read_item_image
from lookalike.api.metrics import Metrics
from lookalike.api.query_cache import QueryCache
from lookalike.api.schemas import QueryInfo, Result, SearchResponse, TierName
from lookalike.catalog import Catalog
from lookalike.config import Settings
from lookalike.crop import Crop
from lookalike.display import NOTE as DISPLAY_NOTE
from lookalike.display import Display, from_note, parse_assignments, parse_hidden
from lookalike.errors import ImageError, LookalikeError, NotCalibratedError, NotFoundError, PayloadTooLargeError
from lookalike.index import Filter, Item
from lookalike.search import DEFAULT_SHAPING, EmbeddedQuery, Shaping, embed_query
from lookalike.service import SearchOutcome, search, search_vector
from lookalike.sources.fetch import AddressGuard, fetch_bytes

THUMBNAIL_SIZE = 320
T = TypeVar("T")
QueryType = Literal["upload", "base64", "url", "id", "ref", "feedback"]


@dataclass
class ServerState:
    catalog: Catalog
    settings: Settings
    uploads_dir: Path
    queries: QueryCache = field(default_factory=QueryCache)
    thumbnails: ThumbnailCache = field(default_factory=ThumbnailCache)
    metrics: Metrics = field(default_factory=Metrics)
    guard: AddressGuard = field(default_factory=AddressGuard)
    last_save: float = field(default_factory=time.monotonic)
    save_lock: threading.Lock = field(default_factory=threading.Lock)
    duplicates_lock: threading.Lock = field(default_factory=threading.Lock)
    _duplicates: tuple[Any, list[Any]] | None = None
    _display: Display | None = None
    fetch_slots: Slots = field(init=False)
    decode_slots: Slots = field(init=False)

    def __post_init__(self) -> None:
        """The fetch and decode bounds follow the settings (one place for their numbers)."""
        settings = self.settings
        self.fetch_slots = Slots("URL fetches", settings.max_url_fetches, settings.max_waiting, settings.busy_wait)
        decodes = settings.max_decodes or os.cpu_count() or 1
        self.decode_slots = Slots("image decodes", decodes, settings.max_waiting, settings.busy_wait)

    def display(self) -> Display:
        """How items are shown: the index's note ``display`` under this server's settings, each unset role
        given its usual field name. Read once, and again after a write (``after_write``)."""
        if self._display is None:
            settings = self.settings
            override = parse_assignments(settings.display).merged(parse_hidden(settings.hide))
            stored = from_note(self.catalog.index.notes().get(DISPLAY_NOTE))
            # The index's cached field names (learned on every add), not a scan of every item's metadata.
            self._display = stored.merged(override).resolved(self.catalog.index.known_fields().names())
        return self._display

    def duplicate_groups(self) -> list[Any]:
        """The catalogue's near-duplicate groups, found once per state of the index (its item count and its
        calibration) and shared by every request; one request finds them while the others wait."""
        from lookalike.confidence.duplicates import find_duplicates

        with self.duplicates_lock:
            calibration = self.catalog.calibration()
            if calibration is None:
                raise NotCalibratedError(
                    "this index is not calibrated (or was, under other settings): run `lookalike calibrate`"
                )
            key = (self.catalog.index.count(), calibration.made)
            if self._duplicates is None or self._duplicates[0] != key:
                self._duplicates = (key, find_duplicates(self.catalog.index, calibration))
            return self._duplicates[1]

    def after_write(self) -> None:
        """Save the index if ``settings.save_seconds`` is set and the last save is that old (one writer does
        it; the others go on), so a long-running server does not keep every replaced or deleted vector.
        The display is resolved again at its next use: the write may have brought a field it looks for."""
        self._display = None
        every = self.settings.save_seconds
        if every is None or time.monotonic() - self.last_save < every or not self.save_lock.acquire(False):
            return
        try:
            self.catalog.index.save()
            self.last_save = time.monotonic()
        finally:
            self.save_lock.release()


async def state_of(request: Request) -> ServerState:
    """The server's state, as a dependency: a coroutine, as FastAPI runs a plain function in the thread pool
    (one more hop there and back on every request)."""
    return request.app.state.lookalike


def decode_base64(text: str) -> bytes:
    """Base64 (optionally a ``data:image/...;base64,`` URL) to bytes, with a clear error. Line breaks and
    spaces are allowed, as the reference design's ``b64decode`` allows them (MIME base64 wraps at 76);
    anything else outside the alphabet is refused."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"the image is not valid base64: {exc}") from None


def check_upload_size(data: bytes, state: ServerState) -> None:
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    if len(data) > state.settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the image is {len(data):,} bytes; this server accepts at most {state.settings.max_upload_bytes:,}"
        )


async def fetch_query_image(state: ServerState, url: str) -> bytes:
    """A query URL's bytes, fetched in a fetch slot (a thread for as long as the peer takes, at most
    ``url_total_timeout``), so slow peers can hold only ``max_url_fetches`` workers."""
    settings = state.settings
    async with state.fetch_slots.hold():
        return await run_in_threadpool(
            fetch_bytes,
            url,
            max_bytes=settings.max_upload_bytes,
            timeout=settings.url_timeout,
            total_timeout=settings.url_total_timeout,
            guard=state.guard,
        )


async def embed_query_image(state: ServerState, data: bytes, crop: Crop | None = None) -> EmbeddedQuery:
    """Decode and embed (only ``crop``'s region, when given) in a decode slot: at most ``max_decodes``
    images are in memory at once."""
    check_upload_size(data, state)
    async with state.decode_slots.hold():
        return await run_in_threadpool(_embedding(state, data, crop))


async def embed_and_search(
    state: ServerState, data: bytes, crop: Crop | None, then: Callable[[EmbeddedQuery], T]
) -> tuple[EmbeddedQuery, T]:
    """:func:`embed_query_image`, then ``then`` (the search) with its result in the same worker thread: one
    trip to the thread pool and back instead of two (0.3 ms of a search by upload on 2 cores). The decode
    slot is given back as soon as the image is embedded: the search runs outside its bound, as before."""
    check_upload_size(data, state)
    embedding = _embedding(state, data, crop)
    async with state.decode_slots.hold() as release:

        def embed_then_search() -> tuple[EmbeddedQuery, T]:
            try:
                embedded = embedding()
            finally:
                release()
            return embedded, then(embedded)

        return await run_in_threadpool(embed_then_search)


def _embedding(state: ServerState, data: bytes, crop: Crop | None) -> Callable[[], EmbeddedQuery]:
    settings = state.settings
    return partial(
        embed_query,
        state.catalog,
        data,
        max_pixels=settings.max_pixels,
        max_bytes=settings.max_upload_bytes,
        max_decode_bytes=settings.max_decode_bytes,
        max_decode_seconds=settings.max_decode_seconds,
        crop=crop,
    )


async def item_image_bytes(item: Item, state: ServerState) -> bytes:
    """The bytes of an item's picture (to search with a region of it): read where it lives; a web link is
    fetched like a query URL (guarded, bounded)."""
    location = item.location or ""
    if location.startswith(("http://", "https://")):
        return await fetch_query_image(state, location)
    return await run_in_threadpool(read_item_image, item)


async def run_search(
    state: ServerState,
    kind: QueryType,
    value: Any,
    k: int,
    filter: Filter | None = None,
    min_score: float | None = None,
    offset: int = 0,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    shaping: Shaping = DEFAULT_SHAPING,
    crop: Crop | None = None,
) -> SearchResponse:
    """One search of any kind; ``value`` is the image bytes, the URL, the item id or the ref (None for
    ``feedback``: the positives are the query). ``positive``/``negative`` move the query (by id);
    ``shaping`` folds copies and filters by tier; ``crop`` searches with a region of the query's picture
    (an item's too: its image is read and embedded again).

    Each expensive step runs in the thread pool under its own bound (fetch, then decode and embed); the
    index search itself is fast and bounded by the filter limits.
    """
    started = time.perf_counter()
    catalog = state.catalog
    catalog.index.check_filter(filter)  # a filter on an unknown field is refused before any image work
    query = QueryInfo(type=kind)
    # The same for every kind of query: the page, the feedback, the shaping and the score floor.
    steering: dict[str, Any] = {"offset": offset, "positive": positive, "negative": negative, "shaping": shaping}
    steering["min_score"] = min_score
    if kind == "feedback" and crop is not None:
        raise LookalikeError("crop needs a query picture: an image, url, id or ref")
    if kind == "id" and crop is not None:
        item = catalog.index.get(value)
        if item is None:
            raise NotFoundError(f"no item with id {value!r} in the index")
        embedded = await embed_query_image(state, await item_image_bytes(item, state), crop)
        response = await run_in_threadpool(
            partial(search_vector, catalog, embedded.vector, k, filter, exclude=(value,), shade=embedded.colour),
            **steering,
        )
        response.timings_ms = embedded.timings | response.timings_ms
        query.id, query.image_url = value, image_path(value)
    elif kind == "id":
        response = await run_in_threadpool(partial(search, catalog, value, k, filter, by_id=True), **steering)
        query.id, query.image_url = value, image_path(value)
    elif kind == "feedback":
        response = await run_in_threadpool(partial(search_vector, catalog, None, k, filter), **steering)
    else:
        timings: dict[str, float] = {}
        box: Crop | None = None
        searched: SearchOutcome | None = None  # an upload's or a URL's is searched with its embedding
        if kind == "ref":
            cached = state.queries.get(value)
            if cached is None:
                raise NotFoundError("this search's photo is no longer on the server; upload it again")
            data, vector, shade = cached.data, cached.vector, cached.colour
            if vector is None or crop is not None:  # on disk only (a restarted server's query), or a region
                embedded = await embed_query_image(state, data, crop)
                vector, shade, box = embedded.vector, embedded.colour, embedded.box
                timings |= embedded.timings
        else:
            if kind == "url":
                fetch_started = time.perf_counter()
                query.url = value
                value = await fetch_query_image(state, value)
                timings["fetch"] = (time.perf_counter() - fetch_started) * 1000
            data = value
            embedded, searched = await embed_and_search(
                state,
                data,
                crop,
                lambda found: search_vector(
                    catalog, found.vector, k, filter, image=data, shade=found.colour, **steering
                ),
            )
            vector, shade, box = embedded.vector, embedded.colour, embedded.box
            timings |= embedded.timings
        # A region's vector is not the picture's: the cache keeps only the whole picture's.
        query.ref = state.queries.put(data, None, None) if crop is not None else state.queries.put(data, vector, shade)
        query.box = box.as_list() if box is not None else None
        query.image_url = f"/api/queries/{query.ref}/image"
        if searched is None:  # a ref is searched here
            searched = await run_in_threadpool(
                partial(search_vector, catalog, vector, k, filter, image=data, shade=shade), **steering
            )
        response = searched
        response.timings_ms = timings | response.timings_ms
    state.metrics.observe_stages(response.timings_ms)
    results = [
        Result(
            id=hit.id,
            score=hit.score,
            distance=hit.distance,
            metadata=hit.metadata,
            image_url=image_path(hit.id),
            thumbnail_url=image_path(hit.id, THUMBNAIL_SIZE),
            tier=cast(TierName | None, hit.tier),  # the tier rule's names; pydantic checks them again
            duplicates=hit.duplicates,
        )
        for hit in response.results
    ]
    query.crop = crop.as_list() if crop is not None else None
    took = {stage: round(ms, 3) for stage, ms in response.timings_ms.items()}
    took["total"] = round((time.perf_counter() - started) * 1000, 3)
    return SearchResponse(
        model=response.model,
        match=cast(TierName | None, response.match),
        query=query,
        took_ms=took,
        results=results,
        offset=offset,
        next_offset=response.next_offset,
    )
