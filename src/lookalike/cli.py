"""The command line: a thin map onto the service functions (``ingest``, ``search``, ``evaluate``).

Every expected failure is a :class:`LookalikeError`, printed as one line on stderr with exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lookalike.errors import LookalikeError, SourceError

app = typer.Typer(
    help="Visual search for product images: index a catalogue, then find look-alikes of any photo.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

IndexOption = Annotated[
    Path | None, typer.Option("--index", help="Index directory [default: $LOOKALIKE_INDEX or .lookalike/index]")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _index_path(index: Path | None) -> Path:
    from lookalike.config import get_settings

    return index or get_settings().index


@app.command("index")
def index_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Folder, .csv/.jsonl/.json manifest, s3://bucket/prefix/, 'clothing' (demo data set) or feidegger:JSON"
        ),
    ],
    index: IndexOption = None,
    model: Annotated[str | None, typer.Option(help="Model for a new index [default: efficientnet-lite0]")] = None,
    metric: Annotated[str, typer.Option(help="cosine or l2 (new index only)")] = "cosine",
    kind: Annotated[str, typer.Option(help="hnsw (approximate) or exact (new index only)")] = "hnsw",
    batch_size: Annotated[int, typer.Option(min=1, max=1024)] = 32,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Decode threads")] = 2,
    force: Annotated[bool, typer.Option(help="Re-embed items even if already indexed")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the run's report (with failures) as JSON")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Embed and index every image of SOURCE; re-running resumes and skips what is indexed."""
    from lookalike.catalog import open_or_create_catalog
    from lookalike.ingest import ingest
    from lookalike.sources import open_source

    if metric not in ("cosine", "l2") or kind not in ("hnsw", "exact"):
        raise LookalikeError(f"--metric must be cosine or l2 and --kind hnsw or exact, got {metric}, {kind}")
    path = _index_path(index)
    items = open_source(source)
    catalog = open_or_create_catalog(path, model, metric, kind)  # type: ignore[arg-type]
    try:
        result = ingest(
            items,
            catalog.index,
            catalog.embedder,
            batch_size=batch_size,
            workers=workers,
            force=force,
            progress=progress,
        )
    finally:
        catalog.close()
    typer.echo(f"{path}: {result.summary()}")
    for failure in result.failed[:20]:
        typer.echo(f"  skipped {failure.id}: {failure.reason}", err=True)
    if len(result.failed) > 20:
        typer.echo(f"  ... and {len(result.failed) - 20} more (see --report)", err=True)
    if report:
        result.write(report)


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="Image file, http(s) URL, or the id of an indexed item")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many results")] = 5,
    filter: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", help="Metadata filter: label=Dress, label=Dress,Skirt, price>=10 (repeatable)"),
    ] = None,
    by_id: Annotated[bool, typer.Option("--id", help="QUERY is an indexed item's id")] = False,
    exact: Annotated[bool, typer.Option(help="Brute-force search even on an HNSW index")] = False,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find the k indexed items that look most like QUERY."""
    from lookalike.catalog import open_catalog
    from lookalike.index.filters import parse_expressions
    from lookalike.search import search_image, search_item, search_url

    conditions = parse_expressions(filter or [])
    catalog = open_catalog(_index_path(index))
    try:
        if by_id:
            response = search_item(catalog, query, k, conditions, exact)
        elif query.startswith(("http://", "https://")):
            response = search_url(catalog, query, k, conditions, exact=exact)
        elif Path(query).is_file():
            response = search_image(catalog, Path(query).read_bytes(), k, conditions, exact)
        elif catalog.index.get(query) is not None:
            response = search_item(catalog, query, k, conditions, exact)
        else:
            raise SourceError(f"{query!r} is not an image file, an http(s) URL, or an indexed id")
    finally:
        catalog.index.close()
    if as_json:
        typer.echo(json.dumps(response.to_dict(), indent=2, ensure_ascii=False))
        return
    timing = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in response.timings_ms.items())
    typer.echo(f"{len(response.results)} results ({response.model}; {timing})")
    for rank, result in enumerate(response.results, 1):
        metadata = " ".join(f"{key}={value}" for key, value in result.metadata.items())
        typer.echo(f"{rank:>3}. {result.score:.4f}  {result.id}  {metadata}  {result.location or ''}".rstrip())


@app.command("info")
def info_command(index: IndexOption = None, as_json: JsonOption = False) -> None:
    """What an index holds and which model built it."""
    from lookalike.index import EmbeddedIndex

    path = _index_path(index)
    with EmbeddedIndex.open(path) as opened:
        settings = opened.settings
        info: dict[str, Any] = {
            "path": str(path),
            "model": settings.embedding.get("model"),
            "dim": settings.dim,
            "metric": settings.metric,
            "kind": settings.kind,
            **(
                {
                    "hnsw": {
                        "m": settings.hnsw_m,
                        "ef_construction": settings.ef_construction,
                        "ef_search": settings.ef_search,
                    }
                }
                if settings.kind == "hnsw"
                else {}
            ),
            "preprocessing": settings.embedding.get("preprocessing"),
            "weights": settings.embedding.get("weights"),
            **opened.stats(),
            "metadata_fields": {key: len(values) for key, values in opened.facets(max_values=1000).items()},
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        typer.echo(f"{key:>16}: {value}")


@app.command("delete")
def delete_command(ids: Annotated[list[str], typer.Argument(help="Item ids")], index: IndexOption = None) -> None:
    """Remove items from the index (no rebuild needed)."""
    from lookalike.index import EmbeddedIndex

    with EmbeddedIndex.open(_index_path(index)) as opened:
        removed = opened.delete(ids)
    missing = len(set(ids)) - removed
    typer.echo(f"deleted {removed} item(s)" + (f"; {missing} id(s) were not in the index" if missing else ""))
    if removed == 0:
        raise typer.Exit(1)


@app.command("eval")
def eval_command(
    index: IndexOption = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100)] = 10,
    label_field: Annotated[str, typer.Option(help="Metadata field holding the class label")] = "label",
    ignore_label: Annotated[list[str] | None, typer.Option(help="Labels not to use as queries")] = None,
    queries: Annotated[int, typer.Option(min=1, help="Queries for the recall measurement")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Same-label precision@1/@k (leave-one-out) and HNSW recall@k against exact search."""
    from lookalike.evaluate import recall_against_exact, same_label_precision
    from lookalike.index import EmbeddedIndex

    with EmbeddedIndex.open(_index_path(index)) as opened:
        k_values = tuple(sorted({1, k}))
        exact = same_label_precision(opened, k_values, label_field, exact=True, ignore_labels=ignore_label or ())
        result: dict[str, Any] = {
            "model": opened.settings.embedding.get("model"),
            "metric": opened.settings.metric,
            "queries": exact.queries,
            **{f"precision@{kk}_exact": round(exact.precision[kk], 4) for kk in k_values},
        }
        if opened.settings.kind == "hnsw":
            approx = same_label_precision(opened, k_values, label_field, exact=False, ignore_labels=ignore_label or ())
            result |= {f"precision@{kk}_hnsw": round(approx.precision[kk], 4) for kk in k_values}
            result[f"recall@{k}_hnsw_vs_exact"] = round(recall_against_exact(opened, k, queries), 4)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        typer.echo(f"{key:>24}: {value}")


@app.command("serve")
def serve_command(
    index: IndexOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the REST API (docs at /docs) and the search page (at /) over an index."""
    import uvicorn

    from lookalike.api import create_app
    from lookalike.catalog import open_catalog

    catalog = open_catalog(_index_path(index))
    typer.echo(f"serving {catalog.index.count()} items ({catalog.embedder.name}) on http://{host}:{port}/")
    try:
        uvicorn.run(create_app(catalog), host=host, port=port, log_level=log_level)
    finally:
        catalog.close()


@app.command("models")
def models_command() -> None:
    """The models lookalike can use."""
    from lookalike.embed import MODELS

    for name, description in MODELS.items():
        typer.echo(f"{name:<20} {description}")


def main() -> None:
    try:
        app()
    except LookalikeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted; what was indexed so far is kept (re-run to resume)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
