"""Where an index lives: one small value naming the backend, so every command and the server can take
``--backend embedded|opensearch|milvus`` and reach the same ``VectorIndex`` interface.

The remote backends are imported only when used, so their client libraries stay optional extras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike.errors import IndexError_
from lookalike.index.base import IndexSettings, VectorIndex

Backend = Literal["embedded", "opensearch", "milvus"]
BACKENDS: tuple[Backend, ...] = ("embedded", "opensearch", "milvus")
DEFAULT_URLS = {"opensearch": "http://127.0.0.1:9200", "milvus": "http://127.0.0.1:19530"}


@dataclass(frozen=True)
class IndexTarget:
    """An index's address: a directory for the embedded backend, a URL and a name for the others."""

    backend: Backend = "embedded"
    path: Path = Path(".lookalike/index")
    url: str | None = None
    name: str = "lookalike"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise IndexError_(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")

    @property
    def server_url(self) -> str:
        return self.url or DEFAULT_URLS.get(self.backend, "")

    def describe(self) -> str:
        if self.backend == "embedded":
            return str(self.path)
        return f"{self.backend} {self.server_url} ({self.name})"


def index_exists(target: IndexTarget) -> bool:
    if target.backend == "embedded":
        from lookalike.index.embedded import EmbeddedIndex

        return EmbeddedIndex.exists(target.path)
    if target.backend == "opensearch":
        from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

        return OpenSearchIndex.exists(OpenSearchConfig.from_url(target.server_url), target.name)
    from lookalike.index.milvus import MilvusIndex

    return MilvusIndex.exists(target.server_url, target.name)


def open_index(target: IndexTarget) -> VectorIndex:
    """Open an existing index; a clear error says how to create one when there is none."""
    if target.backend == "embedded":
        from lookalike.index.embedded import EmbeddedIndex

        return EmbeddedIndex.open(target.path)
    if not index_exists(target):
        raise IndexError_(f"no index at {target.describe()} (build one with: lookalike index SOURCE --backend ...)")
    if target.backend == "opensearch":
        from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

        return OpenSearchIndex.open(OpenSearchConfig.from_url(target.server_url), target.name)
    from lookalike.index.milvus import MilvusIndex

    return MilvusIndex.open(target.server_url, target.name)


def create_index(target: IndexTarget, settings: IndexSettings) -> VectorIndex:
    if target.backend == "embedded":
        from lookalike.index.embedded import EmbeddedIndex

        return EmbeddedIndex.create(target.path, settings)
    if target.backend == "opensearch":
        from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

        return OpenSearchIndex.create(OpenSearchConfig.from_url(target.server_url), target.name, settings)
    from lookalike.index.milvus import MilvusIndex

    return MilvusIndex.create(target.server_url, target.name, settings)
