"""Private Network Access: let a public web page (a shop's front end) call a lookalike server on a private
address, as browsers now ask before they allow it.

Chrome sends a CORS preflight with ``Access-Control-Request-Private-Network: true`` before a public page may
reach a private or local address, and blocks the request unless the answer carries
``Access-Control-Allow-Private-Network: true``. Starlette's CORS middleware does not know the header, so
this one adds it to the preflights that ask; it changes nothing else, and the CORS origins still decide.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ASKED = b"access-control-request-private-network"


class PrivateNetworkAccess:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asked = (
            scope["type"] == "http"
            and scope["method"] == "OPTIONS"
            and any(name == ASKED and value.lower() == b"true" for name, value in scope["headers"])
        )
        if not asked:
            await self.app(scope, receive, send)
            return

        async def allow(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if any(name.lower() == b"access-control-allow-origin" for name, _ in headers):  # CORS said yes
                    headers.append((b"access-control-allow-private-network", b"true"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, allow)
