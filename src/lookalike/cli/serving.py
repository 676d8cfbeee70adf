"""Serving: ``serve``, the REST API and the search page over an index."""

from __future__ import annotations

from typing import Annotated

import typer

from lookalike.cli.common import BackendOption, IndexOption, NameOption, UrlOption, app, index_target


@app.command("serve")
def serve_command(
    index: IndexOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    root_path: Annotated[
        str, typer.Option(help="The path prefix a proxy or API-gateway stage serves this under (/Prod)")
    ] = "",
    display: Annotated[
        str | None, typer.Option(help="How items are shown, over the index's setting: title=FIELD,price=FIELD,...")
    ] = None,
    hide: Annotated[
        list[str] | None, typer.Option(help="FIELD=VALUE or FIELD the filters leave out (over the index's setting)")
    ] = None,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Serve the REST API (docs at /docs) and the search page (at /) over an index."""
    import uvicorn

    from lookalike.api import create_app
    from lookalike.catalog import open_catalog
    from lookalike.config import get_settings
    from lookalike.display import parse_assignments, parse_hidden
    from lookalike.malloc import limit_arenas

    limit_arenas()  # before the request and OpenMP threads exist (see lookalike.malloc)
    settings = get_settings()
    if display is not None or hide:
        settings = settings.model_copy(update={"display": display or settings.display, "hide": hide or settings.hide})
    parse_assignments(settings.display), parse_hidden(settings.hide)  # a bad setting stops here, not per request
    catalog = open_catalog(index_target(index, backend, url, name))
    typer.echo(f"serving {catalog.index.count()} items ({catalog.embedder.name}) on http://{host}:{port}/")
    try:
        # X-Forwarded-* only from the configured proxies, and by the app itself (api/forwarded.py), which
        # must see the proxy's address before X-Forwarded-For replaces it: uvicorn's own handling (which
        # trusts 127.0.0.1 by default, so any local client could pick its address for the rate limit) is off.
        uvicorn.run(
            create_app(catalog, settings),
            host=host,
            port=port,
            log_level=log_level,
            proxy_headers=False,
            root_path=root_path.rstrip("/"),
        )
    finally:
        catalog.close()
