"""Where an index lives, and the registry of backends that can hold one.

:class:`IndexTarget` is one small value naming the backend, so every command and the server can take
``--backend embedded|opensearch|milvus`` and reach the same ``VectorIndex`` interface. :data:`REGISTRY` maps
each backend's name to a :class:`Backend` that knows how to open, create and find an index there; each imports
its implementation only when used, so the remote clients (and FAISS, for the servers) stay optional.
Adding a backend is one entry here, not a branch in every function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lookalike.errors import IndexError_, IndexRequestError
from lookalike.index.base import IndexSettings, VectorIndex
from lookalike.index.validate import check_settings

BackendName = Literal["embedded", "opensearch", "milvus"]


@dataclass(frozen=True)
class IndexTarget:
    """An index's address: a directory for the embedded backend, a URL and a name for the others."""

    backend: BackendName = "embedded"
    path: Path = Path(".lookalike/index")
    url: str | None = None
    name: str = "lookalike"

    def __post_init__(self) -> None:
        if self.backend not in REGISTRY:
            raise IndexRequestError(f"unknown backend {self.backend!r}; choose one of {', '.join(REGISTRY)}")

    @property
    def server_url(self) -> str:
        return self.url or REGISTRY[self.backend].default_url

    def describe(self) -> str:
        if self.backend == "embedded":
            return str(self.path)
        return f"{self.backend} {self.server_url} ({self.name})"


@dataclass(frozen=True)
class Backend:
    """How to reach one kind of index: three functions of a target, and where a server listens by default."""

    name: str
    load: Callable[[], type[VectorIndex]]
    """The index class, imported on first use (its ``limits`` are checked before ``create`` is called)."""
    exists: Callable[[IndexTarget], bool]
    open: Callable[[IndexTarget], VectorIndex]
    create: Callable[[IndexTarget, IndexSettings], VectorIndex]
    default_url: str = ""


def _embedded() -> type[VectorIndex]:
    from lookalike.index.embedded import EmbeddedIndex

    return EmbeddedIndex


def _opensearch() -> type[VectorIndex]:
    from lookalike.index.opensearch import OpenSearchIndex

    return OpenSearchIndex


def _milvus() -> type[VectorIndex]:
    from lookalike.index.milvus import MilvusIndex

    return MilvusIndex


def _opensearch_config(target: IndexTarget) -> Any:
    from lookalike.index.opensearch import OpenSearchConfig

    return OpenSearchConfig.from_url(target.server_url)


REGISTRY: dict[str, Backend] = {
    "embedded": Backend(
        "embedded",
        _embedded,
        exists=lambda t: _embedded().exists(t.path),  # type: ignore[attr-defined]
        open=lambda t: _embedded().open(t.path),  # type: ignore[attr-defined]
        create=lambda t, s: _embedded().create(t.path, s),  # type: ignore[attr-defined]
    ),
    "opensearch": Backend(
        "opensearch",
        _opensearch,
        exists=lambda t: _opensearch().exists(_opensearch_config(t), t.name),  # type: ignore[attr-defined]
        open=lambda t: _opensearch().open(_opensearch_config(t), t.name),  # type: ignore[attr-defined]
        create=lambda t, s: _opensearch().create(_opensearch_config(t), t.name, s),  # type: ignore[attr-defined]
        default_url="http://127.0.0.1:9200",
    ),
    "milvus": Backend(
        "milvus",
        _milvus,
        exists=lambda t: _milvus().exists(t.server_url, t.name),  # type: ignore[attr-defined]
        open=lambda t: _milvus().open(t.server_url, t.name),  # type: ignore[attr-defined]
        create=lambda t, s: _milvus().create(t.server_url, t.name, s),  # type: ignore[attr-defined]
        default_url="http://127.0.0.1:19530",
    ),
}
BACKENDS: tuple[BackendName, ...] = tuple(REGISTRY)  # type: ignore[arg-type]  # the registry's keys are the names
DEFAULT_URLS = {name: backend.default_url for name, backend in REGISTRY.items() if backend.default_url}


def index_exists(target: IndexTarget) -> bool:
    return REGISTRY[target.backend].exists(target)


def open_index(target: IndexTarget) -> VectorIndex:
    """Open an existing index; a clear error says how to create one when there is none."""
    backend = REGISTRY[target.backend]
    if target.backend != "embedded" and not backend.exists(target):  # the embedded open names its own fix
        raise IndexError_(f"no index at {target.describe()} (build one with: lookalike index SOURCE --backend ...)")
    return backend.open(target)


def create_index(target: IndexTarget, settings: IndexSettings) -> VectorIndex:
    """A new index at ``target``; the settings are checked against the backend's limits first, so a bad
    setting is refused before any directory is made or any server is contacted."""
    backend = REGISTRY[target.backend]
    check_settings(settings, backend.load().limits)
    return backend.create(target, settings)
