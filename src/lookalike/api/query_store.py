"""Query images on disk, so a shared search link (``/?ref=...``) still works after a restart or tomorrow.

The in-memory cache (:mod:`.query_cache`) keeps the most recent queries with their vectors; this store keeps
their bytes in files named by their ref, bounded by total size (oldest first out) and by age, so an upload
becomes a link that lives for ``max_days`` unless ``max_bytes`` of newer ones push it out. Only bytes that
passed the guarded decode are ever written (the cache stores a query after it was embedded), and a ref is
checked to be a ref (24 hex digits) before it becomes a file name.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

REF = re.compile(r"[0-9a-f]{24}")
SUFFIX = ".query"


class QueryStore:
    def __init__(self, folder: Path, max_bytes: int, max_days: float) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_seconds = max_days * 86400
        self._lock = threading.Lock()

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
                self.folder.mkdir(parents=True, exist_ok=True)
                if path.exists():
                    os.utime(path)  # shared again: it lives on from now
                else:
                    partial = path.with_suffix(".partial")
                    partial.write_bytes(data)
                    partial.replace(path)  # never a half-written query under a ref
                self._sweep()
            except OSError:
                return

    def get(self, ref: str) -> bytes | None:
        path = self._path(ref)
        if not self.enabled or path is None:
            return None
        try:
            if time.time() - path.stat().st_mtime > self.max_seconds:
                path.unlink(missing_ok=True)
                return None
            return path.read_bytes()
        except OSError:
            return None

    def _sweep(self) -> None:
        """Drop what is too old, then the oldest until the total fits ``max_bytes``."""
        now = time.time()
        files = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            if now - stat.st_mtime > self.max_seconds:
                path.unlink(missing_ok=True)
            else:
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
