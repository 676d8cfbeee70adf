"""The FastAPI application: routes, error handling, limits, CORS, metrics and the search page."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import Scope

import lookalike
from lookalike.api import reference, routes
from lookalike.api.after_response import AfterResponse
from lookalike.api.errors import install_error_handlers
from lookalike.api.forwarded import ForwardedHostAndPrefix
from lookalike.api.limits import BodySizeLimit, RateLimit
from lookalike.api.metrics import CountRequests
from lookalike.api.private_network import PrivateNetworkAccess
from lookalike.api.query_cache import QueryCache
from lookalike.api.query_store import QueryStore
from lookalike.api.service import ServerState
from lookalike.api.uploads import sweep_uploads
from lookalike.catalog import Catalog
from lookalike.config import Settings, get_settings, parse_rate
from lookalike.sources.fetch import AddressGuard

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


MOUNTS = ("/static-offline-docs", "/static")
"""Where whole folders are served: one label each in the metrics, not one per file (nor "unmatched")."""


def route_label(scope: Scope) -> str:
    """The route template a request matched (``/api/items/{item_id:path}``), the mount it fell under, or
    ``unmatched``: a bounded set of labels whatever paths clients send."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "unmatched"))
    path = Request(scope).url.path
    return next((mount for mount in MOUNTS if path == mount or path.startswith(mount + "/")), "unmatched")


def create_app(catalog: Catalog, settings: Settings | None = None, uploads_dir: Path | None = None) -> FastAPI:
    """An app serving ``catalog``; ``settings`` default to the ``LOOKALIKE_*`` environment."""
    settings = settings or get_settings()
    app = FastAPIOffline(  # /docs and /redoc from files in the package, not a CDN
        title="lookalike",
        version=lookalike.__version__,
        description="Visual search for product images: send a photo, get the k most similar catalogue items.",
    )
    index_path = getattr(catalog.index, "path", None)
    app.state.lookalike = ServerState(
        catalog=catalog,
        settings=settings,
        uploads_dir=uploads_dir or (Path(index_path) / "uploads" if index_path else settings.cache / "uploads"),
        queries=QueryCache(
            max_items=settings.query_cache,
            store=QueryStore(
                Path(index_path) / "queries" if index_path else settings.cache / "queries",
                settings.query_store_bytes,
                settings.query_store_days,
            ),
        ),
        guard=AddressGuard(allow=settings.url_allow),
    )
    sweep_uploads(app.state.lookalike)
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(reference.router)

    # Innermost of the middleware, seeing the error handlers' answers as the routes' own: the work a request
    # left until its answer is out (a query image to disk), then the request metrics.
    app.add_middleware(AfterResponse)
    app.add_middleware(CountRequests, metrics=lambda: app.state.lookalike.metrics, label=route_label)
    # Base64 inflates an image by 4/3; the rest is room for the JSON or multipart envelope.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes * 4 // 3 + 64 * 1024)
    if settings.rate_limit:  # outside the body limit (nothing is read from a refused client), inside CORS
        rate = parse_rate(settings.rate_limit)
        app.add_middleware(
            RateLimit,
            rate=rate,
            burst=settings.rate_burst or max(10, math.ceil(2 * rate)),
            label=settings.rate_limit,
            on_limited=app.state.lookalike.metrics.rate_limited.inc,
        )
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(PrivateNetworkAccess)  # outside CORS: it answers the preflights CORS allowed
    if settings.trusted_proxies:  # outermost: it must see the proxy's own address (see api/forwarded.py)
        app.add_middleware(ForwardedHostAndPrefix, trusted=settings.trusted_proxies)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        index_html = STATIC_DIR / "index.html"
        if not index_html.is_file():  # FileResponse would fail while sending: a 500
            raise HTTPException(404, "the search page is not installed (no web/static/index.html)")
        return FileResponse(index_html, headers={"Cache-Control": "no-cache"})

    return app
