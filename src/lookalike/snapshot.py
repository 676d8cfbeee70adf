"""Snapshots of an embedded index: a consistent copy taken while writers may be running, and restoring one.

A snapshot is a directory, published by one rename once it is complete and verified::

    index.sqlite    SQLite's online backup of the index: one committed state (a read transaction)
    vectors.faiss   the FAISS checkpoint, brought up to date with exactly that state
    uploads/        images added through the web API, if any
    snapshot.json   the manifest: when, from where, lookalike version, model, counts, sha256 of every file

Why it is consistent: SQLite is the index's source of truth and its backup API copies one committed state
while writers go on (WAL mode: neither waits for the other). The FAISS checkpoint is copied *before* that
backup; it only ever holds vectors committed before it was written, so it is never ahead of the copy, and
opening the copy reconciles it (adds what was committed later, masks what was deleted) exactly as opening
the live index after a crash does. The reconciled checkpoint is then written into the snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import faiss
import numpy as np

import lookalike
from lookalike.errors import IndexError_
from lookalike.index.embedded import FAISS_NAME, SQLITE_NAME, EmbeddedIndex

MANIFEST_NAME = "snapshot.json"
UPLOADS_NAME = "uploads"
FORMAT = 1


class SnapshotError(IndexError_):
    """A snapshot cannot be taken, is damaged, or cannot be restored where asked."""


def snapshot(index_path: str | Path, destination: str | Path) -> dict[str, Any]:
    """Copy the live index at ``index_path`` to the new directory ``destination``; return the manifest."""
    source, destination = Path(index_path), Path(destination)
    if not EmbeddedIndex.exists(source):
        raise SnapshotError(f"no embedded index at {source}")
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise SnapshotError(f"{destination} already exists; give a new directory for the snapshot")
    partial = destination.parent / f".{destination.name}.partial-{os.getpid()}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        # The checkpoint first: it is written by rename, so this is one whole version, and it is never ahead
        # of the SQLite state copied next (a checkpoint holds only vectors committed before it was written).
        if (source / FAISS_NAME).is_file():
            shutil.copyfile(source / FAISS_NAME, partial / FAISS_NAME)
        _backup_sqlite(source / SQLITE_NAME, partial / SQLITE_NAME)
        if (source / UPLOADS_NAME).is_dir():
            # After the backup, so every image a copied item points at is there already.
            shutil.copytree(source / UPLOADS_NAME, partial / UPLOADS_NAME, ignore=shutil.ignore_patterns("*.tmp"))
        copy = EmbeddedIndex.open(partial)  # reconciles the checkpoint with the copied state
        try:
            copy.save()
            settings, stats = copy.settings, copy.stats()
        finally:
            copy.close()
        _to_rollback_journal(partial / SQLITE_NAME)  # a single self-contained file, readable read-only
        manifest = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": str(source.resolve()),
            "lookalike_version": lookalike.__version__,
            "model": settings.embedding.get("model"),
            "dim": settings.dim,
            "metric": settings.metric,
            "kind": settings.kind,
            "items": stats["items"],
            "vectors_in_graph": stats["vectors_in_graph"],
            "dead_vectors": stats["dead_vectors"],
            "files": {name: _describe(partial / name) for name in _files(partial)},
        }
        (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(partial)
        verify(partial)
        if destination.exists():
            destination.rmdir()  # an empty directory made for the snapshot
        partial.rename(destination)
        _fsync_dir(destination.parent)
        return manifest
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def verify(path: str | Path) -> dict[str, Any]:
    """Check a snapshot without changing it: manifest, checksums, SQLite integrity, checkpoint against rows."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{path} is not a lookalike snapshot (no {MANIFEST_NAME})") from None
    except (OSError, ValueError) as error:
        raise SnapshotError(f"{path / MANIFEST_NAME} is unreadable: {error}") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        raise SnapshotError(f"{path / MANIFEST_NAME} is not a format-{FORMAT} lookalike snapshot manifest")
    for name in (SQLITE_NAME, FAISS_NAME):
        if name not in manifest["files"]:
            raise SnapshotError(f"the snapshot at {path} does not list {name}")
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise SnapshotError(f"the snapshot at {path} is incomplete: {name} is missing")
        if _describe(file) != expected:
            raise SnapshotError(f"the snapshot at {path} is damaged: {name} does not match its checksum")
    try:
        with contextlib.closing(sqlite3.connect(f"{(path / SQLITE_NAME).resolve().as_uri()}?mode=ro", uri=True)) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            if integrity != "ok":
                raise SnapshotError(f"the snapshot's {SQLITE_NAME} fails SQLite's integrity check: {integrity}")
            vids = np.fromiter((r[0] for r in db.execute("SELECT vid FROM items")), dtype=np.int64)
            settings = json.loads(db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()[0])
    except sqlite3.Error as error:
        raise SnapshotError(f"the snapshot's {SQLITE_NAME} is unreadable: {error}") from None
    if vids.size != manifest.get("items") or settings.get("embedding", {}).get("model") != manifest.get("model"):
        raise SnapshotError(f"the snapshot at {path} does not hold what its manifest says (items, model)")
    try:
        checkpoint = faiss.read_index(str(path / FAISS_NAME))
        graph_vids = faiss.vector_to_array(checkpoint.id_map).astype(np.int64)
    except (RuntimeError, AttributeError) as error:
        raise SnapshotError(f"the snapshot's {FAISS_NAME} is unreadable: {error}") from None
    if (
        graph_vids.size != manifest.get("vectors_in_graph")
        or np.unique(graph_vids).size != graph_vids.size
        or not np.isin(vids, graph_vids).all()
    ):
        raise SnapshotError(
            f"the snapshot's {FAISS_NAME} does not match its {SQLITE_NAME} (missing or doubled vectors)"
        )
    return manifest


def restore(snapshot_path: str | Path, index_path: str | Path, force: bool = False) -> dict[str, Any]:
    """Make ``index_path`` a copy of the verified snapshot; a non-empty ``index_path`` needs ``force``."""
    snapshot_path, target = Path(snapshot_path), Path(index_path)
    manifest = verify(snapshot_path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise SnapshotError(f"{target} is not empty; restore with --force to replace what is there")
    staging = target.parent / f".{target.name}.restoring-{os.getpid()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        for name in manifest["files"]:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot_path / name, staging / name)
        restored = EmbeddedIndex.open(staging)
        try:
            if restored.count() != manifest["items"]:
                raise SnapshotError(f"the restored index holds {restored.count()} items, not {manifest['items']}")
        finally:
            restored.close()
        _fsync_tree(staging)
        if target.exists():
            # Two renames: the old index is set aside first, so a crash in between leaves it intact beside.
            aside = target.parent / f".{target.name}.replaced-{os.getpid()}"
            shutil.rmtree(aside, ignore_errors=True)
            target.rename(aside)
            staging.rename(target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            staging.rename(target)
        _fsync_dir(target.parent)
        return manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _backup_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup in one step: one read transaction, so one committed state; writers go on."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=60.0)) as db,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        db.backup(copy)


def _to_rollback_journal(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=DELETE")


def _files(root: Path) -> list[str]:
    return sorted(
        str(file.relative_to(root)) for file in root.rglob("*") if file.is_file() and file.name != MANIFEST_NAME
    )


def _describe(file: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"bytes": file.stat().st_size, "sha256": digest.hexdigest()}


def _fsync_tree(root: Path) -> None:
    for file in root.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    for folder in [root, *(d for d in root.rglob("*") if d.is_dir())]:
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
