"""Building an index: ``index``, ``calibrate``, ``display`` and ``adapt``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lookalike.adapt.learn import DEFAULT_GAIN
from lookalike.cli.common import (
    BackendOption,
    IndexOption,
    JsonOption,
    NameOption,
    UrlOption,
    app,
    calibrate_after,
    index_target,
)
from lookalike.errors import LookalikeError, SourceError


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
    hnsw_m: Annotated[
        int | None, typer.Option(min=1, help="HNSW links per vector, with --kind hnsw (new index) [default: 32]")
    ] = None,
    ef_construction: Annotated[
        int | None, typer.Option(min=1, help="HNSW candidates kept while building (new index) [default: 200]")
    ] = None,
    ef_search: Annotated[
        int | None, typer.Option(min=1, help="HNSW candidates a query visits (new index) [default: 128]")
    ] = None,
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
    graph = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
    structure |= {key: value for key, value in graph.items() if value is not None}  # else the settings' defaults
    target = index_target(index, backend, url, name)
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
        calibrated = calibrate_after(catalog) if calibrate and (result.indexed or catalog.calibration() is None) else ""
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

    catalog = open_catalog(index_target(index, backend, url, name))
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

    vector_index = open_index(index_target(index, backend, url, name))
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
        index_target(index, backend, url, name),
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
        catalog = open_catalog(index_target(index, backend, url, name))
    except LookalikeError as exc:
        calibrated = f"not calibrated: {exc}"
    else:
        try:
            calibrated = calibrate_after(catalog)
        finally:
            catalog.close()
    if not as_json:
        typer.echo(calibrated)
