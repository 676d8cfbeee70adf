"""The files of items added through the API (``uploads/``): written safely, removed with their item.

Each file belongs to exactly one item: its name is a hash of the item's id and the image's content hash, so
replacing or deleting the item can remove its file without asking whether another item shares it. (Files
of older servers were named by content alone and may be shared; they are only ever removed by the sweep,
which knows every reference.) A file is written under a temporary name and renamed only once the index took
the item, so a refused add leaves nothing behind and an indexed item never points at a missing file.

A ``kill -9`` between the write and the rename leaves a ``*.tmp`` file, and a crash between a commit and
the removal leaves an unreferenced image: :func:`sweep_uploads` clears both when a server starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.api.service import ServerState
    from lookalike.index import Item

log = logging.getLogger(__name__)
TEMPORARY_SUFFIX = ".tmp"


def upload_path(uploads_dir: Path, item_id: str, digest: str, kind: str) -> Path:
    """Where the image of ``item_id`` with content ``digest`` is kept: one file per item and content."""
    name = hashlib.blake2b(f"{item_id}\0{digest}".encode(), digest_size=16).hexdigest()
    return uploads_dir / f"{name}.{kind}"


def store_upload(path: Path, data: bytes, commit: Callable[[], None]) -> None:
    """Write ``data`` to ``path`` around ``commit`` (the index write): kept only if the commit succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{threading.get_ident()}{TEMPORARY_SUFFIX}")
    temporary.write_bytes(data)
    try:
        commit()
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def forget_upload(uploads_dir: Path, item: Item | None, keep: str | None = None) -> None:
    """Remove the file of an item that was replaced or deleted, if it was one of ours and is not ``keep``
    (a replacement with the very same image and id keeps its file)."""
    if item is None or not item.location or item.location == keep:
        return
    path = Path(item.location)
    if path.parent.resolve() != uploads_dir.resolve() or path.name.partition(".")[0] == item.content_hash:
        return  # a catalogue image, or an older server's file named by content (maybe shared): the sweep's
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def sweep_uploads(state: ServerState) -> int:
    """At start: remove temporary files and images no item refers to (by file name, so an index restored
    to another directory keeps its copies). Returns how many files went."""
    uploads_dir = state.uploads_dir
    if not uploads_dir.is_dir():
        return 0
    files = [path for path in uploads_dir.iterdir() if path.is_file()]
    if not files:
        return 0
    removed = 0
    for path in files:
        if path.name.endswith(TEMPORARY_SUFFIX):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    images = {path.name: path for path in files if not path.name.endswith(TEMPORARY_SUFFIX)}
    if images:
        for batch in state.catalog.index.iter_items(with_vectors=False):
            for item in batch:
                if item.location:
                    images.pop(Path(item.location).name, None)
            if not images:
                break
        for path in images.values():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    if removed:
        log.info("removed %d stale file(s) from %s", removed, uploads_dir)
    return removed
