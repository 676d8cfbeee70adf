"""The command line: a thin map onto the service functions (``ingest``, ``search``, ``evaluate``).

Every expected failure is a :class:`LookalikeError`, printed as one line on stderr with exit code 1.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from lookalike.adapt.learn import DEFAULT_GAIN
from lookalike.errors import LookalikeError, NotCalibratedError, SourceError
from lookalike.index.backends import IndexTarget

app = typer.Typer(
    help="Visual search for product images: index a catalogue, then find look-alikes of any photo.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

IndexOption = Annotated[
    Path | None, typer.Option("--index", help="Index directory [default: $LOOKALIKE_INDEX or .lookalike/index]")
]
BackendOption = Annotated[
    str | None,
    typer.Option("--backend", help="embedded, opensearch or milvus [default: $LOOKALIKE_BACKEND or embedded]"),
]
UrlOption = Annotated[str | None, typer.Option("--url", help="OpenSearch or Milvus URL [default: $LOOKALIKE_URL]")]
NameOption = Annotated[str | None, typer.Option("--name", help="Index (collection) name on a server backend")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _target(
    index: Path | None, backend: str | None = None, url: str | None = None, name: str | None = None
) -> IndexTarget:
    """Where the index lives, from the options, else the ``LOOKALIKE_*`` settings."""
    from lookalike.config import get_settings

    settings = get_settings()
    return IndexTarget(
        backend=(backend or settings.backend),  # type: ignore[arg-type]
        path=index or settings.index,
        url=url or settings.url,
        name=name or settings.name,
    )


@app.command("index")
def index_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Folder, .csv/.jsonl/.json manifest, s3://bucket/prefix/, 'clothing' (demo data set) or feidegger:JSON"
        ),
    ],
    index: IndexOption = None,
    model: Annotated[
        str | None, typer.Option(help="Model for a new index [default: efficientnet-lite1, or LOOKALIKE_MODEL]")
    ] = None,
    metric: Annotated[str, typer.Option(help="cosine or l2 (new index only)")] = "cosine",
    kind: Annotated[str, typer.Option(help="hnsw, ivf (approximate) or exact (new index only)")] = "hnsw",
    encoding: Annotated[
        str, typer.Option(help="How the search structure stores vectors: none (float32), fp16, sq8 or pq (new index)")
    ] = "none",
    pq_m: Annotated[int, typer.Option(help="PQ sub-quantizers (bytes a vector), with --encoding pq")] = 64,
    ivf_lists: Annotated[int, typer.Option(help="IVF cells, with --kind ivf (about 4*sqrt(items))")] = 1024,
    nprobe: Annotated[int, typer.Option(help="IVF cells a query visits, with --kind ivf")] = 16,
    reduce_dim: Annotated[int, typer.Option(help="PCA to this many dimensions first (0 = off; new index)")] = 0,
    rerank: Annotated[int, typer.Option(help="Quantized settings re-score rerank*k candidates with floats")] = 1,
    rerank_encoding: Annotated[
        str, typer.Option(help="How the re-scoring store keeps vectors: none (float32), fp16 or sq8 (new index)")
    ] = "none",
    focus: Annotated[
        str, typer.Option(help="none, or object: find the product, paint the rest white, crop to it (new index)")
    ] = "none",
    focus_resolution: Annotated[
        int | None, typer.Option(help="Input size of the focus network (96-320, multiples of 32; default 160)")
    ] = None,
    focus_precision: Annotated[
        str, typer.Option(help="fp32, or int8: an 8-bit focus network (1.6-2.5x faster, mask IoU 0.99)")
    ] = "fp32",
    batch_size: Annotated[int, typer.Option(min=1, max=1024)] = 32,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Decode threads")] = 2,
    force: Annotated[bool, typer.Option(help="Re-embed items even if already indexed")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the run's report (with failures) as JSON")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Write the FAISS checkpoint every N items (every item is durable at once)")
    ] = 2000,
    calibrate: Annotated[
        bool, typer.Option(help="Learn the match tiers from the catalogue afterwards (see `lookalike calibrate`)")
    ] = True,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Embed and index every image of SOURCE; re-running resumes and skips what is indexed."""
    from lookalike.catalog import open_or_create_catalog
    from lookalike.ingest import ingest
    from lookalike.sources import open_source

    if metric not in ("cosine", "l2") or kind not in ("hnsw", "exact", "ivf"):
        raise LookalikeError(f"--metric must be cosine or l2 and --kind hnsw, ivf or exact, got {metric}, {kind}")
    structure = {"encoding": encoding, "pq_m": pq_m, "ivf_lists": ivf_lists, "nprobe": nprobe}
    structure |= {"reduce_dim": reduce_dim, "rerank": rerank, "rerank_encoding": rerank_encoding}
    target = _target(index, backend, url, name)
    items = open_source(source)
    catalog = open_or_create_catalog(
        target,
        model,
        metric,  # type: ignore[arg-type]
        kind,  # type: ignore[arg-type]
        structure=structure,
        focus=focus,
        focus_resolution=focus_resolution,
        focus_precision=focus_precision,
    )
    try:
        result = ingest(
            items,
            catalog.index,
            catalog.embedder,
            batch_size=batch_size,
            workers=workers,
            force=force,
            progress=progress,
            checkpoint_every=checkpoint_every,
        )
        calibrated = (
            _calibrate_after(catalog) if calibrate and (result.indexed or catalog.calibration() is None) else ""
        )
    finally:
        catalog.close()
    if result.total == 0:
        raise SourceError(f"{source} holds no images: nothing was indexed (a folder is searched recursively)")
    typer.echo(f"{target.describe()}: {result.summary()}")
    if calibrated:
        typer.echo(calibrated)
    for failure in result.failed[:20]:
        typer.echo(f"  failed {failure.id}: {failure.reason}", err=True)  # the "failed" of the summary and the bar
    if len(result.failed) > 20:
        typer.echo(f"  ... and {len(result.failed) - 20} more (see --report)", err=True)
    if report:
        result.write(report)


def _calibrate_after(catalog: Any) -> str:
    """Calibrate after an ingest; the line to show, saying why not when the catalogue cannot be (too small,
    unreadable): an index without a calibration still searches, only without tiers."""
    from lookalike.confidence.calibrate import calibrate

    lines: list[str] = []
    try:
        calibrate(catalog, log=lines.append)
    except LookalikeError as exc:
        return f"not calibrated: {exc}"
    return "\n".join(lines)


@app.command("calibrate")
def calibrate_command(
    index: IndexOption = None,
    samples: Annotated[int, typer.Option(min=10, max=2000, help="Catalogue photos to alter (x3 copies)")] = 100,
    seed: Annotated[int, typer.Option(help="Which photos and alterations (repeatable results)")] = 0,
    colour: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Also keep this as the catalogue's default colour weight (0 = shape only)"),
    ] = None,
    colour_from: Annotated[
        str | None,
        typer.Option(help="Tune the default colour weight on this label field (the most that keeps its precision)"),
    ] = None,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Learn what scores mean in this catalogue: the thresholds of "same item", "similar" and "no match"."""
    from lookalike.catalog import open_catalog
    from lookalike.confidence.calibrate import calibrate

    catalog = open_catalog(_target(index, backend, url, name))
    try:
        if colour is not None and colour_from is not None:
            raise typer.BadParameter("give --colour (a weight) or --colour-from (a label field to tune it on)")
        calibration = calibrate(catalog, samples, seed, log=None if as_json else typer.echo)
        note: dict[str, Any] | None = {"weight": colour} if colour is not None else None
        if colour_from is not None:
            from lookalike.evaluate.colour_weight import tune_colour_weight

            note = tune_colour_weight(catalog, colour_from, seed=seed)
            if not as_json:
                typer.echo(
                    f"colour weight {note['weight']:g} by default (tuned on {colour_from!r}: {note['measured']})"
                )
        if note is not None:
            catalog.index.write_note("colour", note)
    finally:
        catalog.close()
    if as_json:
        typer.echo(json.dumps(calibration.to_note() | ({"colour": note} if note else {}), indent=2))


@app.command("display")
def display_command(
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="ROLE=FIELD, roles: title, price, currency, url, brand, category, image (currency=EUR: one currency)",
        ),
    ] = None,
    hide: Annotated[
        list[str] | None, typer.Option(help="FIELD=VALUE: leave a value out of the filters; FIELD: the whole field")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Forget the stored setting first")] = False,
    index: IndexOption = None,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Show or set how the search page shows items (title, price, link...) and which filters it offers."""
    from lookalike import display
    from lookalike.index.backends import open_index

    vector_index = open_index(_target(index, backend, url, name))
    try:
        stored = display.Display() if reset else display.from_note(vector_index.notes().get(display.NOTE))
        change = display.parse_assignments(assignments or []).merged(display.parse_hidden(hide or []))
        updated = stored.merged(change)
        if reset or assignments or hide:
            vector_index.write_note(display.NOTE, updated.to_note())
        for line in updated.resolved(vector_index.fields()).describe():
            typer.echo(line)
    finally:
        vector_index.close()


@app.command("duplicates")
def duplicates_command(
    index: IndexOption = None,
    neighbours: Annotated[int, typer.Option(min=1, max=100, help="Neighbours of each item to look at")] = 10,
    verify: Annotated[
        bool, typer.Option(help="Confirm candidates by local features (precise; reads every candidate's image)")
    ] = True,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """List groups of near-identical catalogue images (copies, re-encodes, crops of one photo)."""
    from lookalike.catalog import open_catalog
    from lookalike.confidence.duplicates import find_duplicates

    catalog = open_catalog(_target(index, backend, url, name))
    try:
        calibration = catalog.calibration()
        if calibration is None:
            raise NotCalibratedError(
                "this index is not calibrated (or was, under other settings): run `lookalike calibrate`"
            )
        groups = find_duplicates(catalog.index, calibration, neighbours, verify)
    finally:
        catalog.close()
    if as_json:
        typer.echo(json.dumps({"groups": [group.to_dict() for group in groups]}, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{len(groups)} groups of near-identical images ({sum(len(g.ids) for g in groups)} items)")
    for group in groups:
        best = max(score for _, _, score in group.pairs)
        typer.echo(f"  {len(group.ids)} items, best pair {best:.4f}: {', '.join(group.ids)}")


@app.command("search")
def search_command(
    query: Annotated[
        str | None, typer.Argument(help="Image file, http(s) URL, or the id of an indexed item (optional with --like)")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="How many results (at most 100, as the API)")] = 5,
    filter: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", help="Metadata filter: label=Dress, label=Dress,Skirt, price>=10 (repeatable)"),
    ] = None,
    by_id: Annotated[bool, typer.Option("--id", help="QUERY is an indexed item's id")] = False,
    exact: Annotated[bool, typer.Option(help="Brute-force search even on an HNSW index")] = False,
    like: Annotated[list[str] | None, typer.Option("--like", help="An item's id: more like it (repeatable)")] = None,
    unlike: Annotated[
        list[str] | None, typer.Option("--unlike", help="An item's id: less like it (repeatable)")
    ] = None,
    offset: Annotated[int, typer.Option(min=0, max=1000, help="Skip this many results first (at most 1000)")] = 0,
    min_tier: Annotated[
        str | None, typer.Option(help="Only results of this tier or better: similar or same_item")
    ] = None,
    dedupe: Annotated[bool, typer.Option(help="Fold near-identical items into one result")] = True,
    colour: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Colour weight: 0 shape only .. 1 colour dominates [default: the index's]"),
    ] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Find the k indexed items that look most like QUERY (moved toward --like and away from --unlike)."""
    from lookalike.catalog import open_catalog
    from lookalike.index.filters import parse_expressions
    from lookalike.search import Shaping, search_image, search_item, search_steered, search_url

    conditions = parse_expressions(filter or [])
    steering = {"offset": offset, "positive": like or [], "negative": unlike or []}
    steering["shaping"] = Shaping(dedupe=dedupe, min_tier=min_tier, colour=colour)
    if query is None and not like:
        raise typer.BadParameter("give a QUERY (image, URL or id), or --like ID")
    catalog = open_catalog(_target(index, backend, url, name))
    try:
        if query is None:
            response = search_steered(catalog, None, k, conditions, exact, **steering)
        elif by_id:
            response = search_item(catalog, query, k, conditions, exact, **steering)
        elif query.startswith(("http://", "https://")):
            response = search_url(catalog, query, k, conditions, exact=exact, **steering)
        elif Path(query).is_file():
            response = search_image(catalog, Path(query).read_bytes(), k, conditions, exact, **steering)
        elif catalog.index.get(query) is not None:
            response = search_item(catalog, query, k, conditions, exact, **steering)
        else:
            raise SourceError(f"{query!r} is not an image file, an http(s) URL, or an indexed id")
    finally:
        catalog.index.close()
    if as_json:
        typer.echo(json.dumps(response.to_dict(), indent=2, ensure_ascii=False))
        return
    timing = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in response.timings_ms.items())
    match = f"match: {response.match}; " if response.match else ""
    typer.echo(f"{len(response.results)} results ({match}{response.model}; {timing})")
    for rank, result in enumerate(response.results, 1):
        metadata = " ".join(f"{key}={value}" for key, value in result.metadata.items())
        tier = f"  {result.tier:<9}" if result.tier else ""
        copies = f"  (+{len(result.duplicates)} copies: {', '.join(result.duplicates)})" if result.duplicates else ""
        line = f"{rank:>3}. {result.score:.4f}{tier}  {result.id}  {metadata}  {result.location or ''}".rstrip()
        typer.echo(line + copies)


@app.command("info")
def info_command(
    index: IndexOption = None,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """What an index holds and which model built it."""
    from lookalike.index.backends import open_index

    target = _target(index, backend, url, name)
    with open_index(target) as opened:
        settings = opened.settings
        info: dict[str, Any] = {
            "backend": target.backend,
            "location": target.describe(),
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
            **({"ivf": {"lists": settings.ivf_lists, "nprobe": settings.nprobe}} if settings.kind == "ivf" else {}),
            **(
                {
                    "encoding": settings.encoding,
                    **({"pq_m": settings.pq_m, "pq_bits": settings.pq_bits} if settings.encoding == "pq" else {}),
                    "reduce_dim": settings.reduce_dim,
                    "rerank": settings.rerank,
                    "rerank_encoding": settings.rerank_encoding,
                }
                if settings.is_lossy()
                else {}
            ),
            "preprocessing": settings.embedding.get("preprocessing"),
            "weights": settings.embedding.get("weights"),
            **opened.stats(),
            "metadata_fields": {key: len(values) for key, values in opened.facets(max_values=1000).items()},
            "notes": sorted(opened.notes()),
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        typer.echo(f"{key:>16}: {value}")


@app.command("delete")
def delete_command(
    ids: Annotated[list[str], typer.Argument(help="Item ids")],
    index: IndexOption = None,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Remove items from the index (no rebuild needed)."""
    from lookalike.index.backends import open_index

    with open_index(_target(index, backend, url, name)) as opened:
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
    ignore_label: Annotated[
        list[str] | None,
        typer.Option(
            help="Label not to use as a query (repeat; kept as a distractor). Given, it replaces the default: "
            "'Not sure', 'Skip', 'Other' where the label field is 'label' and they occur"
        ),
    ] = None,
    bias_field: Annotated[
        str | None,
        typer.Option(
            help="Field for the same-value share@k vs random pairs (default: sender_id if items have it; '' = off)"
        ),
    ] = None,
    duplicates: Annotated[
        int, typer.Option(min=0, help="Catalogue items altered (7 fixed transforms) for near-duplicate recall; 0 = off")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed for the sampled items")] = 0,
    queries: Annotated[int, typer.Option(min=1, help="Queries for the recall measurement")] = 500,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Same-label precision@1/@k, same-sender share@k, near-duplicate recall and recall@k vs exact search."""
    import time

    from lookalike.catalog import embedder_for
    from lookalike.evaluate import EvalOptions, evaluate_index, format_report
    from lookalike.index.backends import open_index

    started = time.perf_counter()
    target = _target(index, backend, url, name)
    with open_index(target) as opened:
        recorded = dict(opened.settings.embedding)
        embedder = None
        if duplicates and recorded.get("model"):  # the model that built the index, as open_catalog loads it
            embedder = embedder_for(recorded)
        opened_in = time.perf_counter() - started
        options = EvalOptions(
            k=k,
            label_field=label_field,
            ignore_labels=tuple(ignore_label) if ignore_label else None,
            bias_field=bias_field,
            duplicates=duplicates,
            recall_queries=queries,
            seed=seed,
        )
        result = evaluate_index(opened, embedder, options)
    result["index"] = target.describe()
    result["seconds"] = {"open": round(opened_in, 3), **result["seconds"]}
    result["seconds"]["wall"] = round(time.perf_counter() - started, 3)
    typer.echo(json.dumps(result, indent=2) if as_json else format_report(result))


@app.command("adapt")
def adapt_command(
    index: IndexOption = None,
    label: Annotated[
        str | None, typer.Option(help="Metadata field whose values teach the projection (a category, a SKU)")
    ] = None,
    undo: Annotated[
        bool, typer.Option("--undo", help="Return to the plain features and forget the projection")
    ] = False,
    centre: Annotated[
        bool, typer.Option("--centre", help="No labels: only centre the vectors on the catalogue's mean direction")
    ] = False,
    holdout_by: Annotated[
        str | None,
        typer.Option(
            help="Learn only from the items of half of this field's values (e.g. sender_id); "
            "lookalike eval then measures on the other half"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --holdout-by split")] = 0,
    gain: Annotated[
        float, typer.Option(min=0.0, max=100.0, help="How far the class directions are stretched (1 + gain)")
    ] = DEFAULT_GAIN,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Learn from the catalogue's own labels and re-project every stored vector (no image embedded again)."""
    from lookalike.adapt.reproject import adapt_index

    if sum((undo, centre, bool(label))) != 1:
        raise typer.BadParameter("give one of --label FIELD, --centre or --undo")
    report = adapt_index(
        _target(index, backend, url, name),
        label,
        undo=undo,
        centre_only=centre,
        holdout_by=holdout_by,
        seed=seed,
        gain=gain,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
    from lookalike.catalog import open_catalog

    try:  # every score moved: learn their meaning again
        catalog = open_catalog(_target(index, backend, url, name))
    except LookalikeError as exc:
        calibrated = f"not calibrated: {exc}"
    else:
        try:
            calibrated = _calibrate_after(catalog)
        finally:
            catalog.close()
    if not as_json:
        typer.echo(calibrated)


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
    catalog = open_catalog(_target(index, backend, url, name))
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


@app.command("migrate")
def migrate_command(
    to: Annotated[str, typer.Option("--to", help="Target backend: embedded, opensearch or milvus")],
    to_index: Annotated[Path | None, typer.Option("--to-index", help="Target directory (embedded)")] = None,
    to_url: Annotated[str | None, typer.Option("--to-url", help="Target server URL")] = None,
    to_name: Annotated[str | None, typer.Option("--to-name", help="Target index (collection) name")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
    index: IndexOption = None,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Copy an index (vectors and metadata) to another backend without re-embedding; re-run to resume."""
    from lookalike.index.backends import open_index
    from lookalike.migrate import migrate, open_target_like

    source_target = _target(index, backend, url, name)
    destination = IndexTarget(to, to_index or Path(".lookalike/migrated"), to_url, to_name or "lookalike")  # type: ignore[arg-type]
    if destination == source_target:
        raise LookalikeError("the target is the source; give --to-index, --to-url or --to-name")
    with open_index(source_target) as source, open_target_like(source, destination) as target:
        report = migrate(source, target, batch_size=batch_size, progress=progress)
    typer.echo(f"{source_target.describe()} -> {destination.describe()}: {report.summary()}")


def _embedded_path(index: Path | None) -> Path:
    target = _target(index)
    if target.backend != "embedded":
        raise LookalikeError(
            f"snapshot and restore work on the embedded backend; back up {target.backend} with its own tools"
        )
    return target.path


@app.command("snapshot")
def snapshot_command(
    destination: Annotated[Path, typer.Argument(help="New directory for the snapshot")],
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a live index consistently (writers may keep running) to DESTINATION, with a verified manifest."""
    from lookalike.snapshot import snapshot

    manifest = snapshot(_embedded_path(index), destination)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    typer.echo(
        f"{destination}: {manifest['items']} items ({manifest['model']}), taken {manifest['created_at']}, verified"
    )


@app.command("restore")
def restore_command(
    snapshot: Annotated[Path, typer.Argument(help="A directory made by 'lookalike snapshot'")],
    index: IndexOption = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty index directory")] = False,
    check: Annotated[bool, typer.Option(help="Only verify the snapshot; write nothing")] = False,
) -> None:
    """Verify SNAPSHOT and make the index directory a copy of it (stop servers and writers on it first)."""
    from lookalike.snapshot import restore, verify

    if check:
        manifest = verify(snapshot)
        typer.echo(
            f"{snapshot}: intact; {manifest['items']} items ({manifest['model']}), taken {manifest['created_at']}"
        )
        return
    path = _embedded_path(index)
    manifest = restore(snapshot, path, force=force)
    typer.echo(
        f"{path}: restored {manifest['items']} items ({manifest['model']}) from the snapshot taken "
        f"{manifest['created_at']}"
    )


@app.command("models")
def models_command() -> None:
    """The models lookalike can use."""
    from lookalike.embed import MODELS

    width = max(map(len, MODELS)) + 2
    for name, description in MODELS.items():
        typer.echo(f"{name:<{width}}{description}")


def main() -> None:
    # lookalike judges every picture's size itself (images.load_image, which accepts a 108-megapixel phone
    # JPEG at 1/8 scale); Pillow's warning that an image over 89.5 megapixels "could be decompression bomb"
    # would only come between the lines that say which files were refused and why.
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL")
    try:  # typer 0.26+ carries its own click; older ones use click itself
        from typer._click.exceptions import UsageError
    except ImportError:
        from click.exceptions import UsageError

    try:
        code = app(standalone_mode=False)
    except UsageError as exc:  # one line, as every other error (not click's framed box)
        if not exc.format_message():  # no arguments at all: the help was shown, nothing went wrong
            sys.exit(0)
        command = exc.ctx.command_path if exc.ctx else "lookalike"
        typer.echo(f"error: {exc.format_message()} (see {command} --help)", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except LookalikeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted; what was indexed so far is kept (re-run to resume)", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
