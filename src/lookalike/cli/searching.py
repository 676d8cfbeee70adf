"""Searching and measuring: ``search``, ``duplicates`` and ``eval``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lookalike.cli.common import BackendOption, IndexOption, JsonOption, NameOption, UrlOption, app, index_target
from lookalike.errors import NotCalibratedError
from lookalike.search import MAX_K, MAX_OFFSET


@app.command("search")
def search_command(
    query: Annotated[
        str | None, typer.Argument(help="Image file, http(s) URL, or the id of an indexed item (optional with --like)")
    ] = None,
    k: Annotated[
        int, typer.Option("-k", "--k", min=1, max=MAX_K, help=f"How many results (at most {MAX_K}, as the API)")
    ] = 5,
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
    offset: Annotated[
        int, typer.Option(min=0, max=MAX_OFFSET, help=f"Skip this many results first (at most {MAX_OFFSET})")
    ] = 0,
    min_score: Annotated[float | None, typer.Option(help="Leave out results scoring below this (as the API)")] = None,
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
    from lookalike.search import Shaping
    from lookalike.service import search

    conditions = parse_expressions(filter or [])
    shaping = Shaping(dedupe=dedupe, min_tier=min_tier, colour=colour)
    if query is None and not like:
        raise typer.BadParameter("give a QUERY (image, URL or id), or --like ID")
    catalog = open_catalog(index_target(index, backend, url, name))
    try:
        response = search(
            catalog,
            query,
            k,
            conditions,
            by_id=by_id,
            exact=exact,
            offset=offset,
            positive=like or [],
            negative=unlike or [],
            shaping=shaping,
            min_score=min_score,
        )
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

    catalog = open_catalog(index_target(index, backend, url, name))
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


@app.command("eval")
def eval_command(
    index: IndexOption = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=MAX_K)] = 10,
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
    target = index_target(index, backend, url, name)
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
