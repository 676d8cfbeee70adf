"""A hard bound on request bodies, enforced while they stream in (before any parsing)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` by Content-Length, or as soon as they exceed it.

    A streamed overrun (no Content-Length) is cut off: the app's ``receive`` reports a disconnect, whatever
    the app makes of that (an exception, a 400 from FastAPI's body parser) is discarded, and the client
    gets the same 413 as for a declared length. Raising from ``receive`` instead would not work: the
    ``http`` middleware between here and the routes wraps it in an ExceptionGroup (a 500), and FastAPI
    turns any error while reading a declared body into a 400.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await _send_413(send, self.max_bytes)


async def _send_413(send: Any, max_bytes: int) -> None:
    body = (
        b'{"error": {"code": "too_large", "message": "request body exceeds ' + f"{max_bytes:,}".encode() + b' bytes"}}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """ASGI middleware: a token bucket per client address, refusing with 429 before the body is read.

    Each address starts with ``burst`` tokens, gains ``rate`` per second up to ``burst``, and spends one per
    request; with none left the answer is 429 with ``Retry-After`` (whole seconds until a token is back) and
    a JSON error naming the limit. ``exempt`` paths (health checks, metrics scrapes) are never limited.
    Buckets live in this process only (one per server; several workers would each allow the rate) and at
    most ``max_clients`` are kept: the least recently seen is forgotten first, and a forgotten client simply
    starts again with a full bucket, which is what a long-idle one would have anyway.
    """

    def __init__(
        self,
        app: Any,
        rate: float,
        burst: int,
        label: str,
        exempt: tuple[str, ...] = ("/health", "/metrics"),
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        on_limited: Callable[[], None] | None = None,
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {rate} and {burst}")
        self.app = app
        self.rate = rate
        self.burst = burst
        self.label = label
        self.exempt = frozenset(exempt)
        self.max_clients = max_clients
        self.clock = clock
        self.on_limited = on_limited
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when), least recent first

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.take(client)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            self.on_limited()
        message = (
            f"too many requests from {client}: this server allows {self.label} per client (bursts of "
            f"{self.burst}); retry in {wait:.2g} s"
        )
        body = json.dumps({"error": {"code": "rate_limited", "message": message}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def take(self, client: str) -> float:
        """Spend one of ``client``'s tokens: 0 if there was one, else the seconds until there is.

        Runs on the event loop only (no await inside), so no lock is needed.
        """
        now = self.clock()
        tokens, when = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # re-inserted: now the most recently seen
        if len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return wait
