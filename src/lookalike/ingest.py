"""Ingest: a source's images -> decoded and prepared in worker threads -> embedded in batches -> indexed.

Each batch is committed to the index as it is made, so an interrupted run keeps its work, and a re-run
skips what is already there: ids are stable (manifest id or relative path) and a content hash of the
bytes notices a changed file. A bad image never stops the run: it is skipped and listed in the report.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from lookalike import colour
from lookalike.embed import Embedder
from lookalike.errors import BackendUnavailableError, LookalikeError
from lookalike.images import load_image
from lookalike.index import Item, VectorIndex
from lookalike.sources.base import Source, SourceItem

T = TypeVar("T")
R = TypeVar("R")
REMOTE_PREFIXES = ("http://", "https://")


@dataclass
class Failure:
    id: str
    location: str
    reason: str


@dataclass
class IngestReport:
    """What a run did: shown at the end and optionally written as JSON."""

    total: int = 0
    indexed: int = 0
    unchanged: int = 0
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.indexed} indexed, {self.unchanged} already indexed, {len(self.failed)} failed, "
            f"of {self.total} in {self.seconds:.1f} s ({self.rate:.1f} images/s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.rate, 2),
            "failed": [vars(failure) for failure in self.failed],
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


@dataclass
class _Prepared:
    item: SourceItem
    pixels: np.ndarray | None = None
    content_hash: str | None = None
    colour: np.ndarray | None = None
    skipped: bool = False
    error: str | None = None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def ingest(
    source: Source,
    index: VectorIndex,
    embedder: Embedder,
    *,
    batch_size: int = 32,
    workers: int = 2,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: int = 2000,
) -> IngestReport:
    """Index every image of ``source`` that is not already in ``index`` unchanged; return the report."""
    started = time.perf_counter()
    known = {} if force else index.content_hashes()
    report = IngestReport(total=len(source))
    prepare = _preparer(embedder, known)
    # No bar for an empty source: the caller says it holds nothing, in one line, without a "0img" bar before it.
    bar = tqdm(
        total=report.total, unit="img", disable=not progress or not report.total, dynamic_ncols=True, desc="indexing"
    )
    pending: list[_Prepared] = []
    since_checkpoint = 0

    def advance(done: int) -> None:
        """Count ``done`` more items as finished. The counts go in first, so every time the bar is drawn (on
        this update or any later one, and when it closes) they are the report's, and add up to the bar's
        count: the items decoded but not yet embedded are in none of them until their batch is added."""
        counts = {"indexed": report.indexed, "unchanged": report.unchanged, "failed": len(report.failed)}
        bar.set_postfix(counts, refresh=False)  # as a dict: the summary's order, not sorted by name
        bar.update(done)

    def flush() -> None:
        nonlocal since_checkpoint
        if not pending:
            return
        vectors = embedder.embed_prepared(np.stack([p.pixels for p in pending if p.pixels is not None]))
        items = [
            Item(p.item.id, vector, p.item.metadata, p.item.location, p.content_hash, p.colour)
            for p, vector in zip(pending, vectors, strict=True)
        ]
        added = _add_or_skip(index, items, report)
        report.indexed += added
        since_checkpoint += added
        advance(len(pending))
        pending.clear()
        if since_checkpoint >= checkpoint_every:
            index.save()
            since_checkpoint = 0

    with index.bulk_load(), ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        for prepared in bounded_map(pool, prepare, source, window=max(4 * batch_size, 8 * workers)):
            if prepared.skipped:
                report.unchanged += 1
                advance(1)
            elif prepared.error is not None:
                report.failed.append(Failure(prepared.item.id, prepared.item.location, prepared.error))
                advance(1)
            else:
                pending.append(prepared)
                if len(pending) >= batch_size:
                    flush()
        flush()
    index.save()
    bar.close()
    report.seconds = time.perf_counter() - started
    return report


def _add_or_skip(index: VectorIndex, items: list[Item], report: IngestReport) -> int:
    """Add a batch; if the index refuses it, add its items one by one so that only the refused ones (an id
    over the backend's limit, metadata too large) are skipped and reported, like an unreadable image.
    An unreachable backend still ends the run: nothing could be added anyway."""
    try:
        index.add(items)
        return len(items)
    except BackendUnavailableError:
        raise
    except LookalikeError as error:
        if len(items) == 1:
            report.failed.append(Failure(items[0].id, items[0].location or "", f"refused by the index: {error}"))
            return 0
    return sum(_add_or_skip(index, [item], report) for item in items)


def _preparer(embedder: Embedder, known: dict[str, str | None]) -> Callable[[SourceItem], _Prepared]:
    """Read, hash, decode, crop and describe the colour of one item; runs in worker threads and never raises."""
    min_side = embedder.decode_min_side

    def prepare(item: SourceItem) -> _Prepared:
        if item.id in known and item.location.startswith(REMOTE_PREFIXES):
            return _Prepared(item, skipped=True)  # fetching again just to hash it would cost what we save
        try:
            data = item.read()
            digest = content_hash(data)
            if known.get(item.id) == digest:
                return _Prepared(item, skipped=True)
            pixels = embedder.prepare(load_image(data, min_side=min_side))
            # The colour of the model's own crop (the product on white when focus is on): no second decode,
            # and a query's colour is taken from its crop the same way.
            return _Prepared(item, pixels, digest, colour.describe(pixels))
        except LookalikeError as exc:
            return _Prepared(item, error=str(exc))
        except Exception as exc:  # a bug or an odd library error must not end a long run
            return _Prepared(item, error=f"{type(exc).__name__}: {exc}")

    return prepare


def bounded_map(pool: ThreadPoolExecutor, function: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``pool.map`` in order, but with at most ``window`` tasks in flight, so memory stays flat."""
    in_flight: deque[Future[R]] = deque()
    for item in items:
        in_flight.append(pool.submit(function, item))
        if len(in_flight) >= window:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()
