"""Looking after an index: ``info``, ``delete``, ``rebuild``, ``migrate``, ``snapshot``, ``restore``
and ``models``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli.common import (
    BackendOption,
    IndexOption,
    JsonOption,
    NameOption,
    UrlOption,
    app,
    embedded_path,
    index_target,
    print_aligned,
)
from lookalike.errors import LookalikeError
from lookalike.index.backends import IndexTarget


@app.command("info")
def info_command(
    index: IndexOption = None,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """What an index holds and which model built it (the fields of GET /api/info, and where the index is)."""
    from lookalike.index.backends import open_index
    from lookalike.service import describe_index

    target = index_target(index, backend, url, name)
    with open_index(target) as opened:
        info = describe_index(opened, target.describe())
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    print_aligned(info)


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

    with open_index(index_target(index, backend, url, name)) as opened:
        removed = opened.delete(ids)
    missing = len(set(ids)) - removed
    typer.echo(f"deleted {removed} item(s)" + (f"; {missing} id(s) were not in the index" if missing else ""))
    if removed == 0:
        raise typer.Exit(1)


@app.command("rebuild")
def rebuild_command(
    index: IndexOption = None,
    kind: Annotated[str | None, typer.Option(help="hnsw, ivf or exact")] = None,
    hnsw_m: Annotated[int | None, typer.Option(min=1, help="HNSW links per vector")] = None,
    ef_construction: Annotated[int | None, typer.Option(min=1, help="HNSW candidates kept while building")] = None,
    ef_search: Annotated[int | None, typer.Option(min=1, help="HNSW candidates a query visits (query time)")] = None,
    ivf_lists: Annotated[int | None, typer.Option(min=1, help="IVF cells (about 4*sqrt(items))")] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF cells a query visits (query time)")] = None,
    encoding: Annotated[str | None, typer.Option(help="none (float32), fp16, sq8 or pq")] = None,
    pq_m: Annotated[int | None, typer.Option(min=1, help="PQ sub-quantizers (bytes a vector)")] = None,
    reduce_dim: Annotated[int | None, typer.Option(min=0, help="PCA to this many dimensions (0 = off)")] = None,
    rerank: Annotated[int | None, typer.Option(min=0, help="Re-score rerank*k candidates (query time)")] = None,
    rerank_encoding: Annotated[str | None, typer.Option(help="none (float32), fp16 or sq8")] = None,
    as_json: JsonOption = False,
    backend: BackendOption = None,
    url: UrlOption = None,
    name: NameOption = None,
) -> None:
    """Build an embedded index's search structure again from its stored vectors (nothing is re-embedded).

    With settings given, the structure follows them; with none, it is the same one without the vectors of
    replaced and deleted items. Only query-time settings changed (--ef-search, --nprobe, --rerank) keep the
    structure as it is. Stop servers and writers on the index first."""
    from lookalike.service import rebuild_index

    given = {
        "kind": kind,
        "hnsw_m": hnsw_m,
        "ef_construction": ef_construction,
        "ef_search": ef_search,
        "ivf_lists": ivf_lists,
        "nprobe": nprobe,
        "encoding": encoding,
        "pq_m": pq_m,
        "reduce_dim": reduce_dim,
        "rerank": rerank,
        "rerank_encoding": rerank_encoding,
    }
    changes = {key: value for key, value in given.items() if value is not None}
    target = index_target(index, backend, url, name)
    info = rebuild_index(target, changes)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    what = ", ".join(f"{key}={value}" for key, value in changes.items()) or "compacted"
    typer.echo(f"{target.describe()}: rebuilt ({what}); {info['items']} items")


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

    source_target = index_target(index, backend, url, name)
    destination = IndexTarget(to, to_index or Path(".lookalike/migrated"), to_url, to_name or "lookalike")  # type: ignore[arg-type]
    if destination == source_target:
        raise LookalikeError("the target is the source; give --to-index, --to-url or --to-name")
    with open_index(source_target) as source, open_target_like(source, destination) as target:
        report = migrate(source, target, batch_size=batch_size, progress=progress)
    typer.echo(f"{source_target.describe()} -> {destination.describe()}: {report.summary()}")


@app.command("snapshot")
def snapshot_command(
    destination: Annotated[Path, typer.Argument(help="New directory for the snapshot")],
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a live index consistently (writers may keep running) to DESTINATION, with a verified manifest."""
    from lookalike.snapshot import snapshot

    manifest = snapshot(embedded_path(index), destination)
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
    path = embedded_path(index)
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
