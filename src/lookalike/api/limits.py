"""A hard bound on request bodies, enforced while they stream in (before any parsing)."""

from __future__ import annotations

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
