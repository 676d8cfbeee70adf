"""What every command shares: the app, the options naming an index, and where the index lives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lookalike.errors import LookalikeError
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


def index_target(
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


def embedded_path(index: Path | None) -> Path:
    """The directory of an embedded index (snapshot and restore copy files)."""
    target = index_target(index)
    if target.backend != "embedded":
        raise LookalikeError(
            f"snapshot and restore work on the embedded backend; back up {target.backend} with its own tools"
        )
    return target.path


def calibrate_after(catalog: Any) -> str:
    """Calibrate after an ingest; the line to show, saying why not when the catalogue cannot be (too small,
    unreadable): an index without a calibration still searches, only without tiers."""
    from lookalike.confidence.calibrate import calibrate

    lines: list[str] = []
    try:
        calibrate(catalog, log=lines.append)
    except LookalikeError as exc:
        return f"not calibrated: {exc}"
    return "\n".join(lines)


def print_aligned(info: dict[str, Any]) -> None:
    """A description as ``key: value`` lines, the keys right-aligned."""
    for key, value in info.items():
        typer.echo(f"{key:>16}: {value}")
