"""Query images on disk, so a shared search link (``/?ref=...``) still works after a restart or tomorrow.

The in-memory cache (:mod:`.query_cache`) keeps the most recent queries with their vectors; this store keeps
their bytes in files named by their ref, bounded by total size (oldest first out) and by age, so an upload
becomes a link that lives for ``max_days`` unless ``max_bytes`` of newer ones push it out. Only bytes that
passed the guarded decode are ever written (the cache stores a query after it was embedded), and a ref is
checked to be a ref (24 hex digits) before it becomes a file name.

Every upload passes through :meth:`QueryStore.put`, on the event loop, so it costs the same whatever the store
holds: the folder is listed once, when the store is made, and from then on the store keeps its files' times
and sizes in memory, oldest first, and drops from the front. (Listing and statting the folder on every put
took 3.6 ms with 250 stored queries and 66 ms with 5,000, each upload blocking the server that long.) Files
that another process adds to the same folder are counted from the next start.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

REF = re.compile(r"[0-9a-f]{24}")
SUFFIX = ".query"


class QueryStore:
    def __init__(self, folder: Path, max_bytes: int, max_days: float) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_seconds = max_days * 86400
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """File name to (modification time, size), least recently stored first."""
        self._total = 0
        if self.enabled:
            with self._lock:
                self._scan()
                self._trim(time.time())

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_seconds > 0

    def _path(self, ref: str) -> Path | None:
        return self.folder / f"{ref}{SUFFIX}" if REF.fullmatch(ref) else None

    def put(self, ref: str, data: bytes) -> None:
        """Keep ``data`` under ``ref`` (best effort: a full or read-only disk only loses the link)."""
        path = self._path(ref)
        if not self.enabled or path is None or len(data) > self.max_bytes:
            return
        with self._lock:
            try:
                if path.exists():
                    os.utime(path)  # shared again: it lives on from now
                else:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    partial = path.with_suffix(".partial")
                    partial.write_bytes(data)
                    partial.replace(path)  # never a half-written query under a ref
            except OSError:
                return
            now = time.time()
            self._forget(path.name)
            self._files[path.name] = (now, len(data))
            self._total += len(data)
            self._trim(now)

    def get(self, ref: str) -> bytes | None:
        path = self._path(ref)
        if not self.enabled or path is None:
            return None
        try:
            if time.time() - path.stat().st_mtime > self.max_seconds:
                path.unlink(missing_ok=True)
                with self._lock:
                    self._forget(path.name)
                return None
            return path.read_bytes()
        except OSError:
            return None

    def _forget(self, name: str) -> None:
        gone = self._files.pop(name, None)
        if gone is not None:
            self._total -= gone[1]

    def _scan(self) -> None:
        """What the folder holds now (earlier runs' queries), oldest first."""
        files = []
        try:
            paths = list(self.folder.glob(f"*{SUFFIX}"))
        except OSError:
            paths = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, path.name))
        self._files = OrderedDict((name, (mtime, size)) for mtime, size, name in sorted(files))
        self._total = sum(size for _, size, _ in files)

    def _trim(self, now: float) -> None:
        """Drop what is too old, then the oldest until the total fits ``max_bytes``: both from the front."""
        while self._files:
            name, (mtime, _) = next(iter(self._files.items()))
            if self._total <= self.max_bytes and now - mtime <= self.max_seconds:
                break
            self._forget(name)
            with contextlib.suppress(OSError):
                (self.folder / name).unlink(missing_ok=True)
