"""Work a request may leave until its answer is on the wire: keeping a query image on disk, say.

:func:`after_response` runs a function once the current request has been answered (at once outside a
request: the CLI, a test calling a store directly); :class:`AfterResponse`, an ASGI middleware, runs what was
left when the app is done, after the last byte of the answer was handed to the server. The client has its
answer by then; a test client, which waits for the app to return, sees the work done as before.

Measured on a search by upload (2 cores, docs/benchmarks.md): writing the query image to the query store took
0.2 ms of the request on the event loop, with the store kept in memory (before that, a scan of the store's
folder on every upload took 0.5 ms with 50 stored queries and 66 ms with 5,000).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

_pending: ContextVar[list[Callable[[], None]] | None] = ContextVar("lookalike_after_response", default=None)


def after_response(work: Callable[[], None]) -> None:
    """Run ``work`` once the current request is answered; outside a request, now."""
    pending = _pending.get()
    if pending is None:
        work()
    else:
        pending.append(work)


class AfterResponse:
    """ASGI middleware: what :func:`after_response` left during a request runs once the app has returned.

    The work runs on the event loop, in order; one that fails is logged and the rest still run (the answer
    is gone already, so a failure cannot change it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending: list[Callable[[], None]] = []
        token = _pending.set(pending)
        try:
            await self.app(scope, receive, send)
        finally:
            _pending.reset(token)
            for work in pending:
                try:
                    work()
                except Exception:
                    log.exception("work left until after the answer failed")
