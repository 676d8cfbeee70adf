"""Behind a reverse proxy or an API-gateway stage: believe X-Forwarded-* only from the configured proxies.

A shop puts lookalike behind nginx, or behind an API gateway stage path (``/Prod/postURL``); the links the API
answers (and the docs page) must then carry the public host and the prefix. uvicorn's own middleware knows
X-Forwarded-For and -Proto; this one adds X-Forwarded-Host (the Host header the client used) and
X-Forwarded-Prefix (the path the proxy stripped, which becomes the ASGI ``root_path``). Both are believed only
from an address in ``trusted_proxies``, checked before uvicorn's middleware replaces the client address with
the forwarded one; from anyone else they are ignored, as a client could otherwise choose its own links.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


class ForwardedHostAndPrefix:
    def __init__(self, app: ASGIApp, trusted: list[str]) -> None:
        # then uvicorn's own middleware (X-Forwarded-For/-Proto), which also parses the trusted list (addresses,
        # networks, literals) the way uvicorn does
        proxy = ProxyHeadersMiddleware(app, ",".join(trusted))  # type: ignore[arg-type]
        self.trusted = proxy.trusted_hosts
        self.app = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and client[0] in self.trusted:
            headers = dict(scope["headers"])
            host, prefix = headers.get(b"x-forwarded-host"), headers.get(b"x-forwarded-prefix")
            if host or prefix:
                scope = dict(scope)
                if host:
                    first = host.split(b",")[0].strip()
                    scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"host"] + [(b"host", first)]
                if prefix:
                    cleaned = "/" + prefix.decode("latin-1").split(",")[0].strip().strip("/")
                    scope["root_path"] = scope.get("root_path", "") + (cleaned if cleaned != "/" else "")
        await self.app(scope, receive, send)  # type: ignore[arg-type]  # uvicorn's scope types are TypedDicts
