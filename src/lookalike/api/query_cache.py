"""Recent uploaded query images, kept so a search by upload can be repeated from a shared page URL.

Bounded by count and bytes; a ref is the hash of the image, so the same photo always gets the same ref.
Behind it a :class:`~lookalike.api.query_store.QueryStore` keeps the bytes on disk, so a ref outlives this
cache and the process: a query found only there comes back without a vector, to be embedded again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from lookalike.api.after_response import after_response
from lookalike.api.query_store import QueryStore


@dataclass
class CachedQuery:
    data: bytes
    vector: np.ndarray | None
    """None when the query came back from disk: embed ``data`` again."""
    colour: np.ndarray | None = None


class QueryCache:
    def __init__(
        self, max_items: int = 256, max_bytes: int = 256 * 1024 * 1024, store: QueryStore | None = None
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.store = store
        self._items: OrderedDict[str, CachedQuery] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def ref_of(data: bytes) -> str:
        return hashlib.blake2b(data, digest_size=12).hexdigest()

    def put(self, data: bytes, vector: np.ndarray | None, colour: np.ndarray | None = None) -> str:
        """Keep a query; ``vector`` None keeps only its picture (a crop's vector is not the picture's)."""
        ref = self.ref_of(data)
        store = self.store
        if store is not None:  # to disk once the answer is out (api/after_response.py); the memory has it now
            after_response(lambda: store.put(ref, data))
        with self._lock:
            if ref in self._items:
                self._items.move_to_end(ref)
                return ref
            self._items[ref] = CachedQuery(data, vector, colour)
            self._bytes += len(data)
            while self._items and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted.data)
        return ref

    def get(self, ref: str) -> CachedQuery | None:
        with self._lock:
            found = self._items.get(ref)
            if found is not None:
                self._items.move_to_end(ref)
                return found
        data = self.store.get(ref) if self.store is not None else None
        return CachedQuery(data, None) if data is not None and self.ref_of(data) == ref else None
