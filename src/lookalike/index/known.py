"""The metadata fields an index's items have: what every filter's fields are checked against.

A filter on a field that no item has (``lable=Dress``, ``{"color": "red"}``) would silently match nothing; it
is refused instead, with a :class:`~lookalike.errors.FilterError` (HTTP 400, a one-line CLI error) naming the
fields that exist. Asking the index (:meth:`VectorIndex.fields`) reads every item's metadata on the embedded
index and Milvus (one mapping read on OpenSearch): far too much for every search, so the names are cached,
one :class:`KnownFields` per open index (``VectorIndex.known_fields``):

* the first filter checked reads them;
* a filter naming only known fields costs a set lookup;
* a field not in the cache refreshes it once (items may have gained the field since), but no sooner than
  ``MIN_REFRESH_SECONDS`` after the previous read, nor sooner than ``COST_FACTOR`` times what that read
  took: a client sending unknown fields as fast as it can causes one read every few seconds, whatever its
  rate, and at most a tenth of the time spent reading. A refused field is refused until the next refresh is
  due; a field that other processes added in the last few seconds is therefore recognised a few seconds late;
* items added through the same index object teach the cache their fields at once (no read, no delay);
* fields whose items were all deleted stay known until the next refresh (a filter on them finds nothing);
* an index that knows no field at all (empty, or items without metadata) refuses nothing: there is nothing
  to check against, and such a filter matches nothing, as it would anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from lookalike.errors import FilterError

MIN_REFRESH_SECONDS = 5.0
"""The shortest time between two reads of the fields prompted by unknown ones."""
COST_FACTOR = 10.0
"""Reads prompted by unknown fields are at least this many times their own duration apart."""
MAX_NAMED = 30
"""How many known fields an error lists (the rest are counted)."""
MAX_NAME_CHARS = 40


class KnownFields:
    """A cache of an index's metadata field names, read with ``read`` (see the module docstring).

    ``clock`` (seconds, monotonic) decides when a refresh is due; tests replace it."""

    def __init__(
        self,
        read: Callable[[], Iterable[str]],
        min_interval: float = MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.min_interval = min_interval
        self.clock = clock
        self.reads = 0
        """How many times the index was read (for tests and ``stats``)."""
        self._names: frozenset[str] | None = None
        self._read_at = 0.0
        self._cost = 0.0
        self._lock = threading.Lock()

    def check(self, names: Iterable[str]) -> None:
        """Raise a FilterError unless every one of ``names`` is a field some item has (or the index knows
        none); reads the index only when the cache is empty or a refresh is due for an unknown name."""
        wanted = list(dict.fromkeys(names))
        known = self._names
        if not wanted or (known is not None and all(name in known for name in wanted)):
            return
        with self._lock:  # one reader at a time: the others wait for its answer instead of reading too
            known = self._names
            if known is None or (any(name not in known for name in wanted) and self._due()):
                known = self._refresh()
        missing = [name for name in wanted if name not in known]
        if missing and known:
            raise FilterError(unknown_fields_message(missing, known))

    def names(self) -> frozenset[str]:
        """The cached names (read first if there are none yet)."""
        known = self._names
        if known is None:
            with self._lock:
                known = self._names if self._names is not None else self._refresh()
        return known

    def learn(self, names: Iterable[str]) -> None:
        """Fields of items just added through this index: known from now on (nothing is read). Call it with no
        index lock held: it waits for a refresh in progress, which reads the index."""
        fresh = set(names)
        with self._lock:
            if self._names is not None and not fresh <= self._names:
                self._names = self._names | fresh

    def forget(self) -> None:
        """Read the fields afresh at the next check."""
        with self._lock:
            self._names = None

    def _due(self) -> bool:
        return self.clock() - self._read_at >= max(self.min_interval, COST_FACTOR * self._cost)

    def _refresh(self) -> frozenset[str]:
        started = time.perf_counter()
        names = frozenset(self._read())
        self._cost = time.perf_counter() - started
        self._names, self._read_at = names, self.clock()
        self.reads += 1
        return names


def unknown_fields_message(missing: Iterable[str], known: Iterable[str]) -> str:
    """``unknown filter field 'lable'; known fields: kids, label, sender_id`` (sorted, at most MAX_NAMED)."""
    missing = list(missing)
    names = sorted(known)
    shown = ", ".join(_short(name) for name in names[:MAX_NAMED])
    if len(names) > MAX_NAMED:
        shown += f" and {len(names) - MAX_NAMED} more"
    unknown = ", ".join(repr(_short(name)) for name in missing[:5])
    if len(missing) > 5:
        unknown += f" and {len(missing) - 5} more"
    plural = "s" if len(missing) > 1 else ""
    return f"unknown filter field{plural} {unknown}; known fields: {shown}"


def _short(name: str) -> str:
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 3] + "..."
