"""Bounded concurrency for the expensive kinds of work a request can start: URL fetches and image decodes.

Without a bound, every request that fetches or decodes holds one of the thread pool's workers for as long
as the work takes, so 45 slow URLs (a peer sending a byte every 2 s) took every worker and ``/health``
waited a minute; and four large decodes at once multiplied the peak memory by four. With one
:class:`Slots` per kind, at most ``size`` run at once, up to ``max_waiting`` more wait for a turn *on the
event loop* (holding no thread and no memory beyond their request), and the rest are refused at once with
503 and ``Retry-After``: uploads, searches by id and ``/health`` always find a free worker.

Waiting polls with a short back-off instead of using an asyncio primitive: the app may be driven by more
than one event loop over its life (the test client starts one per request), and a lock-guarded counter
works under all of them. The poll costs a few wake-ups per waiting request, and ``max_waiting`` bounds them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from lookalike.errors import BusyError

_FIRST_POLL = 0.002
_LONGEST_POLL = 0.05


class Slots:
    """At most ``size`` holders at once; ``max_waiting`` more may wait ``wait`` seconds; others get BusyError."""

    def __init__(self, what: str, size: int, max_waiting: int, wait: float) -> None:
        if size < 1 or max_waiting < 0 or wait < 0:
            raise ValueError(f"{what}: need size >= 1, max_waiting >= 0 and wait >= 0")
        self.what = what
        self.size = size
        self.max_waiting = max_waiting
        self.wait = wait
        self._lock = threading.Lock()
        self._busy = 0
        self._waiting = 0

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return self._waiting

    def _take(self) -> bool:
        with self._lock:
            if self._busy < self.size:
                self._busy += 1
                return True
            return False

    def _refuse(self, why: str) -> BusyError:
        return BusyError(
            f"the server is busy: {self.size} {self.what} are running and {why}; retry in a moment",
            retry_after=max(1, round(self.wait)),
        )

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[Callable[[], None]]:
        """Run the block in a slot, waiting for one on the event loop if all are taken. The block is handed a
        function that gives the slot back early (once; from any thread, so a worker can free it as soon as
        the bounded part of its work is done)."""
        if not self._take():
            with self._lock:
                full = self._waiting >= self.max_waiting
                if not full:
                    self._waiting += 1
            if full:
                raise self._refuse(f"{self.max_waiting} more are waiting")
            try:
                deadline = time.monotonic() + self.wait
                delay = _FIRST_POLL
                while not self._take():
                    if time.monotonic() >= deadline:
                        raise self._refuse(f"none came free within {self.wait:g} s")
                    await anyio.sleep(delay)
                    delay = min(2 * delay, _LONGEST_POLL)
            finally:
                with self._lock:
                    self._waiting -= 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._busy -= 1

        try:
            yield release
        finally:
            release()
