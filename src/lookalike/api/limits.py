"""A hard bound on request bodies, enforced while they stream in (before any parsing)."""

from __future__ import annotations

from typing import Any

from lookalike.errors import PayloadTooLargeError


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` by Content-Length, or as soon as they exceed it.

    A streamed overrun raises :class:`PayloadTooLargeError` inside the app's ``receive``, where the error
    handlers turn it into a 413 like any other bad input.
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

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLargeError(f"request body exceeds {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited_receive, send)


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
