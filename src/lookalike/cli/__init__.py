"""The command line: a thin map onto the service functions (:mod:`lookalike.service`, ``ingest``, ``evaluate``).

Every expected failure is a :class:`LookalikeError`, printed as one line on stderr with exit code 1. The
commands live by what they are for (:mod:`.indexing`, :mod:`.searching`, :mod:`.maintenance`,
:mod:`.serving`); importing this package registers them all on :data:`app`.
"""

from __future__ import annotations

import sys
import warnings

import typer

from lookalike.cli.common import app
from lookalike.errors import LookalikeError

# The help lists the commands in the order they register: making, searching, serving, looking after.
# isort: off
from lookalike.cli import indexing, searching, serving, maintenance  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    # lookalike judges every picture's size itself (images.load_image, which accepts a 108-megapixel phone
    # JPEG at 1/8 scale); Pillow's warning that an image over 89.5 megapixels "could be decompression bomb"
    # would only come between the lines that say which files were refused and why.
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL")
    try:  # typer 0.26+ carries its own click; older ones use click itself
        from typer._click.exceptions import UsageError
    except ImportError:
        from click.exceptions import UsageError  # type: ignore[assignment]

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
