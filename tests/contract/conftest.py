"""Every backend behind one fixture, so each behaviour of the VectorIndex contract is written once.

``backend`` is parametrized over:

* ``embedded``: FAISS + SQLite in a temporary directory, always;
* ``milvus``: a real server at MILVUS_URI (default http://127.0.0.1:19530); skipped when none answers, a
  failure when MILVUS_REQUIRED=1 (``scripts/run-tests.sh`` starts one in a private network namespace);
  marked ``slow`` (a server round trip per call);
* ``opensearch``: a live cluster when OPENSEARCH_URL is set, else the recording fake client of
  tests/test_index_opensearch.py taught to answer k-NN and script-score searches by brute force over its
  documents (so search is checked against answers, not a queue of canned responses).

``make_index(metric, kind, dim, **settings)`` makes an empty index on that backend and drops it after the test;
``reopen(index)`` closes one and opens it again by name (another connection on the servers). Test ids name the
contract and the backend: ``tests/contract/test_search.py::test_k_bounds[embedded]``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from lookalike.index import IndexSettings, Item, VectorIndex

from .helpers import Catalogue

MILVUS_URI = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")
MILVUS_REQUIRED = os.environ.get("MILVUS_REQUIRED") == "1"
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL")
BACKEND_NAMES = ("embedded", "milvus", "opensearch")


# ----------------------------------------------------------------------------------------- reaching the servers


def milvus_unreachable(uri: str = MILVUS_URI) -> str | None:
    """Why no Milvus server can be used at ``uri``, or None: a TCP probe of at most 1 s, then a real connection."""
    from lookalike.errors import IndexError_
    from lookalike.index import milvus as milvus_module

    if milvus_module._IMPORT_ERROR is not None:
        return f"pymilvus is not installed (pip install -e '.[milvus]'): {milvus_module._IMPORT_ERROR}"
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 19530), timeout=1):
            pass
    except OSError as error:
        return f"no Milvus server at {uri} ({error}); see scripts/milvus-server.sh"
    try:
        milvus_module.MilvusIndex.exists(uri, "lookalike_probe", timeout=2)
    except IndexError_ as error:
        return f"the server at {uri} does not answer as Milvus: {error}"
    return None


_MILVUS_REASON: list[str | None] = []  # probed once a session, when a Milvus test first asks


def require_milvus() -> str:
    """The Milvus URI, or skip (fail under MILVUS_REQUIRED=1) saying why there is no server."""
    if not _MILVUS_REASON:
        _MILVUS_REASON.append(milvus_unreachable())
    reason = _MILVUS_REASON[0]
    if reason is not None:
        if MILVUS_REQUIRED:
            pytest.fail(f"MILVUS_REQUIRED=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return MILVUS_URI


def searching_fake_client() -> Any:
    """The OpenSearch fake of tests/test_index_opensearch.py, answering searches from its documents."""
    from test_index_opensearch import FakeClient

    class SearchingFakeClient(FakeClient):
        """Answers ``knn`` queries and ``script_score`` brute force as OpenSearch scores them (see the
        module docstring of lookalike.index.opensearch): l2 ``1 / (1 + d^2)``, approximate cosinesimil
        ``(1 + cos) / 2``, the Painless cosine script ``1 + cos``; filters as the aggregations do."""

        arrays: dict[str, np.ndarray]

        def bulk(self, body: list[dict[str, Any]], index: str | None = None, **kwargs: Any) -> dict[str, Any]:
            answer = super().bulk(body, index, **kwargs)
            arrays = self.__dict__.setdefault("arrays", {})
            for doc_id in list(arrays):
                if doc_id not in self.docs:
                    del arrays[doc_id]
            lines = iter(body)
            for action in lines:
                if "index" in action:  # the vector as an array once, not a list per search
                    arrays[action["index"]["_id"]] = np.asarray(next(lines)["vector"], dtype=np.float64)
            return answer

        def record(self, name: str, /, **kwargs: Any) -> None:
            if name == "bulk":  # kept, not deep-copied: a bulk of 1280-d vectors is megabytes of floats
                self.calls.append((name, kwargs))
                if name in self.failures:
                    raise self.failures[name]
                return
            super().record(name, **kwargs)

        def search(self, body: dict[str, Any] | None = None, index: str | None = None, **kwargs: Any) -> Any:
            query = (body or {}).get("query", {})
            if "knn" not in query and "script_score" not in query:
                return super().search(body, index, **kwargs)
            self.record("search", body=body, index=index, **kwargs)
            if "knn" in query:
                spec = query["knn"]["vector"]
                vector, clauses = spec["vector"], spec.get("filter", {}).get("bool", {}).get("filter", [])
                space = self.mappings[index]["properties"]["vector"]["method"]["space_type"]
                scoring = "l2" if space == "l2" else "cosine-knn"
            else:
                spec = query["script_score"]
                clauses = spec["query"].get("bool", {}).get("filter", [])
                script = spec["script"]
                vector = script["params"]["query_value"]
                scoring = "l2" if script.get("source") == "knn_score" else "cosine-painless"
            types = self._types(index)
            kept = [
                (doc_id, doc)
                for doc_id, doc in self.docs.items()
                if all(self._passes(doc["metadata"], clause, types) for clause in clauses)
            ]
            if not kept:
                return {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
            arrays = self.__dict__.get("arrays", {})
            matrix = np.stack([arrays[doc_id] for doc_id, _ in kept])
            q = np.asarray(vector, dtype=np.float64)
            if scoring == "l2":
                scores = 1.0 / (1.0 + ((matrix - q) ** 2).sum(axis=1))
            else:
                cosine = matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
                scores = (1.0 + cosine) / 2.0 if scoring == "cosine-knn" else 1.0 + cosine
            order = np.argsort(-scores, kind="stable")[: body["size"]]
            hits = []
            for i in order:
                doc_id, doc = kept[int(i)]
                source = {key: value for key, value in doc.items() if key != "vector"}
                hits.append({"_index": index, "_id": doc_id, "_score": float(scores[i]), "_source": source})
            return {"hits": {"total": {"value": len(kept), "relation": "eq"}, "hits": hits}}

    return SearchingFakeClient()


# ----------------------------------------------------------------------------------------- the backends


@dataclass
class Backend:
    """One backend: how to create, open and drop an index called ``name`` on it."""

    name: str
    root: Path
    catalogue_size: int
    """Items in the read-only catalogue of the search and filter tests (a server pays a round trip a call)."""
    uri: str | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    """The fake OpenSearch client of each index name (one per index: the fake keeps one set of documents)."""

    def new_name(self, prefix: str = "contract") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:16]}"  # lower case, no dashes: valid on every backend

    def _opensearch(self) -> tuple[Any, Any]:
        from lookalike.index.opensearch import OpenSearchConfig

        if OPENSEARCH_URL:
            return OpenSearchConfig.from_url(OPENSEARCH_URL), None
        return OpenSearchConfig(hosts=["http://search.example:9200"]), None

    def create(self, name: str, settings: IndexSettings) -> VectorIndex:
        if self.name == "embedded":
            from lookalike.index import EmbeddedIndex

            return EmbeddedIndex.create(self.root / name, settings)
        if self.name == "milvus":
            from lookalike.index.milvus import MilvusIndex

            return MilvusIndex.create(self.uri, name, settings)
        from lookalike.index.opensearch import OpenSearchIndex

        config, _ = self._opensearch()
        if OPENSEARCH_URL:
            return OpenSearchIndex.create(config, name, settings)
        client = self.clients.setdefault(name, searching_fake_client())
        return OpenSearchIndex.create(config, name, settings, client=client)

    def open(self, name: str) -> VectorIndex:
        if self.name == "embedded":
            from lookalike.index import EmbeddedIndex

            return EmbeddedIndex.open(self.root / name)
        if self.name == "milvus":
            from lookalike.index.milvus import MilvusIndex

            return MilvusIndex.open(self.uri, name)
        from lookalike.index.opensearch import OpenSearchIndex

        config, _ = self._opensearch()
        if OPENSEARCH_URL:
            return OpenSearchIndex.open(config, name)
        return OpenSearchIndex.open(config, name, client=self.clients.setdefault(name, searching_fake_client()))

    def exists(self, name: str) -> bool:
        if self.name == "embedded":
            from lookalike.index import EmbeddedIndex

            return EmbeddedIndex.exists(self.root / name)
        if self.name == "milvus":
            from lookalike.index.milvus import MilvusIndex

            return MilvusIndex.exists(self.uri, name)
        from lookalike.index.opensearch import OpenSearchIndex

        config, _ = self._opensearch()
        if OPENSEARCH_URL:
            return OpenSearchIndex.exists(config, name)
        return OpenSearchIndex.exists(config, name, client=self.clients.setdefault(name, searching_fake_client()))

    def drop(self, name: str) -> None:
        """Remove the index ``name`` (if it exists), through a connection of its own."""
        if self.name == "embedded":
            return  # a temporary directory: gone with the run
        with suppress(Exception):
            if self.exists(name):
                self.open(name).drop()  # type: ignore[attr-defined]
        self.clients.pop(name, None)


def _backend_params() -> list[Any]:
    return [
        pytest.param("embedded", id="embedded"),
        pytest.param("milvus", id="milvus", marks=pytest.mark.slow),
        pytest.param("opensearch", id="opensearch"),
    ]


@pytest.fixture(scope="session", params=_backend_params())
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    name = request.param
    if name == "milvus":
        return Backend(name, tmp_path_factory.mktemp("milvus"), catalogue_size=600, uri=require_milvus())
    if name == "opensearch":
        return Backend(name, tmp_path_factory.mktemp("opensearch"), catalogue_size=600, uri=OPENSEARCH_URL)
    return Backend(name, tmp_path_factory.mktemp("embedded"), catalogue_size=2000)


class Made:
    """The indexes one test made (and reopened): closed and dropped when the test ends."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.names: dict[int, str] = {}
        self.opened: list[VectorIndex] = []

    def make(self, metric: str = "l2", kind: str = "exact", dim: int = 16, **settings: Any) -> VectorIndex:
        return self.create(IndexSettings(dim=dim, metric=metric, kind=kind, **settings))  # type: ignore[arg-type]

    def create(self, settings: IndexSettings, name: str | None = None) -> VectorIndex:
        name = name or self.backend.new_name()
        index = self.backend.create(name, settings)
        self.names[id(index)] = name
        self.opened.append(index)
        return index

    def name_of(self, index: VectorIndex) -> str:
        return self.names[id(index)]

    def reopen(self, index: VectorIndex) -> VectorIndex:
        name = self.name_of(index)
        index.close()
        again = self.backend.open(name)
        self.names[id(again)] = name
        self.opened.append(again)
        return again

    def cleanup(self) -> None:
        for index in self.opened:
            with suppress(Exception):
                index.close()
        for name in set(self.names.values()):
            self.backend.drop(name)


@pytest.fixture
def made(backend: Backend) -> Iterator[Made]:
    tracker = Made(backend)
    yield tracker
    tracker.cleanup()


@pytest.fixture
def make_index(made: Made) -> Callable[..., VectorIndex]:
    """``make_index(metric="l2", kind="exact", dim=16, **settings)``: an empty index, dropped after the test."""
    return made.make


@pytest.fixture
def reopen(made: Made) -> Callable[[VectorIndex], VectorIndex]:
    """``reopen(index)``: close ``index`` and open it again by name (closed and dropped after the test)."""
    return made.reopen


@pytest.fixture(scope="module")
def catalogue(backend: Backend) -> Iterator[Catalogue]:
    """Clustered vectors with metadata, indexed once per (kind, metric) for a module's read-only tests."""
    built = Catalogue(backend)
    yield built
    built.drop()


# ----------------------------------------------------------------------------------------- real embeddings

CONGRUENCE_SIZE = 600


@pytest.fixture(scope="session")
def real_items(lite0) -> list[Item]:
    """Real embeddings with real metadata: clothing photos if present, else synthetic product photos."""
    from conftest import make_photo

    from lookalike.images import load_image
    from lookalike.sources import clothing_dataset
    from lookalike.sources.datasets import find_clothing_dataset

    if find_clothing_dataset() is not None:
        sources = list(clothing_dataset())[:CONGRUENCE_SIZE]
        entries = [(s.id, s.read(), s.metadata) for s in sources]
    else:
        rng = np.random.default_rng(0)
        labels = ["Dress", "Shirt", "Pants", "Shoes"]
        entries = [
            (
                f"synthetic/{i:04d}",
                make_photo(i, size=(200, 260)),
                {"label": labels[i % 4], "kids": bool(i % 3 == 0), "sender_id": int(rng.integers(0, 300))},
            )
            for i in range(300)
        ]
    vectors = []
    for start in range(0, len(entries), 64):
        images = [load_image(data, min_side=256) for _, data, _ in entries[start : start + 64]]
        vectors.append(lite0.embed(images))
    matrix = np.concatenate(vectors)
    return [
        Item(item_id, matrix[i], metadata, f"/photos/{i}.jpg", f"h{i}")
        for i, (item_id, _, metadata) in enumerate(entries)
    ]


@pytest.fixture
def filled(make_index) -> Callable[..., VectorIndex]:
    """``filled(items, metric="cosine", kind="hnsw")``: a 1280-d index holding ``items``, added in batches."""

    def fill(items: list[Item], metric: str = "cosine", kind: str = "hnsw") -> VectorIndex:
        index = make_index(metric, kind, dim=len(items[0].vector))
        for start in range(0, len(items), 200):
            index.add(items[start : start + 200])
        index.save()
        return index

    return fill
