"""The cases where the backends used to answer differently, each decided once (in the shared contract code:
``lookalike.index.validate``, ``settings``, ``results``) and held here on every backend.

* (a) a zero vector in a cosine index has no direction: refused on every backend (VectorSizeError, a 400
  ``bad_vector`` through the API), as an item and as a query.
* (b) an id is at most 512 bytes of UTF-8 on every backend, and through the API.
* (c) stored settings with keys this release does not know: the index is refused (IndexFormatError naming
  the keys and saying a newer lookalike probably made it), never opened with them dropped.
* (d) ``IndexSettings.check()`` runs on every create, before a directory is made or a server contacted.
* (e) embedded-only options are refused by server backends; settings written without them read as defaults.
* (f) a bad request is an IndexRequestError (400); an unreachable server is a BackendUnavailableError (503);
  both stay IndexError_.

The backends are tests/contract/conftest.py's: embedded always, OpenSearch against the searching fake client
(or a real cluster when ``OPENSEARCH_URL`` is set), Milvus when a server answers on ``MILVUS_URI``. Cases that
are decided before any server is contacted run on every backend with an address where nothing listens.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike import errors
from lookalike.errors import (
    BackendUnavailableError,
    IndexError_,
    IndexFormatError,
    IndexRequestError,
    VectorSizeError,
)
from lookalike.index import IndexSettings, Item, VectorIndex
from lookalike.index.backends import IndexTarget, create_index
from lookalike.index.settings import EMBEDDED_ONLY_FIELDS, settings_from_record, shared_record

from .conftest import Made

UNREACHABLE = "http://127.0.0.1:9"
"""The discard port: nothing listens, so a request there fails at once."""
DIM = 4


NAMES = ["embedded", "opensearch", "milvus"]
"""For the cases decided before any server is contacted: every backend, server or not."""
SERVER_NAMES = ["opensearch", "milvus"]


# --------------------------------------------------------------------------------------- fixtures
# ``backend``, ``made`` and ``make_index`` come from tests/contract/conftest.py (embedded always, OpenSearch
# against its searching fake client or OPENSEARCH_URL, Milvus when a server answers).


def _api_error(error: Exception) -> tuple[int, str]:
    """The status and code the API answers this error with (its one table)."""
    from lookalike.api.errors import STATUS_AND_CODE

    return next((status, code) for kind, status, code in STATUS_AND_CODE if isinstance(error, kind))


def _item(item_id: str, vector: Any = (1.0, 0.0, 0.0, 0.0)) -> Item:
    return Item(item_id, np.asarray(vector, dtype=np.float32), {"label": "Dress"}, f"/p/{item_id}.jpg", "h")


# --------------------------------------------------------------------------------------- (a) zero vectors
def test_zero_vector_is_refused(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index(metric="cosine", dim=DIM)
    with pytest.raises(VectorSizeError, match="zero") as refused:
        index.add([_item("fine"), _item("zero", np.zeros(DIM))])
    assert _api_error(refused.value) == (400, "bad_vector")
    assert index.count() == 0  # the whole batch is refused: the good item is not written either
    with pytest.raises(VectorSizeError, match="zeros"):
        index.search(np.zeros(DIM, dtype=np.float32), 3)


def test_zero_vector_is_a_point_under_l2(make_index: Callable[..., VectorIndex]) -> None:
    """Only cosine needs a direction: under L2 the origin is an ordinary point."""
    index = make_index(metric="l2", dim=DIM)
    index.add([_item("zero", np.zeros(DIM))])
    assert index.count() == 1


# --------------------------------------------------------------------------------------- (b) id length
def test_ids_are_at_most_512_bytes_of_utf8(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index(dim=DIM)
    longest, too_long = "é" * 256, "é" * 257  # 512 and 514 bytes, though only 256 and 257 characters
    with pytest.raises(IndexRequestError, match="514 bytes") as refused:
        index.add([_item(too_long)])
    assert _api_error(refused.value) == (400, "bad_request")
    index.add([_item(longest)])
    found = index.get(longest)
    assert found is not None and found.id == longest
    assert index.get(too_long) is None  # a too-long id cannot exist: absent, not an error


def test_the_api_takes_the_same_id_limit() -> None:
    from pydantic import ValidationError

    from lookalike.api.schemas import SearchRequest

    assert SearchRequest(positive=["é" * 256]).positive == ["é" * 256]
    with pytest.raises(ValidationError, match="at most 512"):
        SearchRequest(positive=["é" * 257])
    with pytest.raises(ValidationError, match="at most 512"):
        SearchRequest(negative=["x" * 513], positive=["a"])


# --------------------------------------------------------------------------------------- (c) unknown settings
def _store_unknown_setting(index: VectorIndex, made: Made) -> Callable[[], VectorIndex]:
    """Rewrite the stored settings of ``index`` with a key from the future; returns how to open it again."""
    backend, name = made.backend, made.name_of(index)
    future = shared_record(index.settings) | {"future_knob": 7}
    if backend.name == "embedded":
        path = backend.root / name
        index.close()
        with contextlib.closing(sqlite3.connect(path / "index.sqlite")) as connection, connection:
            stored = json.loads(connection.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()[0])
            connection.execute(
                "UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(stored | {"future_knob": 7}),)
            )
    elif backend.name == "opensearch":
        client = index.client  # type: ignore[attr-defined]
        meta = client.indices.get_mapping(index=name)[name]["mappings"]["_meta"]
        meta["lookalike"]["settings"] = future
        client.indices.put_mapping(index=name, body={"_meta": meta})
    else:  # Milvus cannot change a description: make a collection as a newer release would have
        from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections

        name = backend.new_name("future")
        made.names[id(name)] = name  # dropped after the test
        connections.connect(alias=name, uri=backend.uri, timeout=5)
        try:
            fields = [
                FieldSchema("item_id", DataType.VARCHAR, is_primary=True, max_length=512),
                FieldSchema("vector", DataType.FLOAT_VECTOR, dim=DIM),
            ]
            description = json.dumps({"lookalike": {"format": 1, "settings": future}})
            Collection(name, CollectionSchema(fields, description=description), using=name, shards_num=1)
        finally:
            connections.disconnect(name)
    return lambda: backend.open(name)


def test_unknown_stored_settings_refuse_to_open(make_index: Callable[..., VectorIndex], made: Made) -> None:
    reopen = _store_unknown_setting(make_index(dim=DIM), made)
    with pytest.raises(IndexFormatError, match=r"'future_knob'.*newer lookalike"):
        reopen()


def test_settings_written_without_the_newer_fields_read_with_their_defaults() -> None:
    """(e)'s other half: what an older release or a server backend recorded reads back as it always meant."""
    recorded = {"dim": 8, "metric": "l2", "kind": "hnsw", "hnsw_m": 16}
    settings = settings_from_record(recorded, "an old index")
    assert settings == IndexSettings(dim=8, metric="l2", kind="hnsw", hnsw_m=16)
    assert {name: getattr(settings, name) for name in EMBEDDED_ONLY_FIELDS} == {
        name: getattr(IndexSettings(dim=8), name) for name in EMBEDDED_ONLY_FIELDS
    }


# --------------------------------------------------------------------------------------- (d) settings checked
@pytest.mark.parametrize("backend_name", NAMES)
def test_bad_settings_are_refused_before_anything_is_created(backend_name: str, tmp_path: Path) -> None:
    """hnsw_m=0 is refused by the settings' own check, on a server backend before connecting (the URL has
    no server: reaching for it would be a BackendUnavailableError instead)."""
    target = IndexTarget(backend_name, tmp_path / "never", UNREACHABLE, "never")  # type: ignore[arg-type]
    for bad, named in ((dict(hnsw_m=0), "hnsw_m"), (dict(ef_search=-1), "ef_search"), (dict(dim=0), "dimension")):
        settings = IndexSettings(**{"dim": DIM, **bad})  # type: ignore[arg-type]
        with pytest.raises(IndexRequestError, match=named) as refused:
            create_index(target, settings)
        assert not isinstance(refused.value, BackendUnavailableError)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("backend_name", SERVER_NAMES)
def test_bad_settings_are_refused_by_a_direct_create_too(backend_name: str) -> None:
    """The check is the backend's own, not only the registry's: direct callers get it as well."""
    settings = IndexSettings(dim=DIM, hnsw_m=0)
    with pytest.raises(IndexRequestError, match="hnsw_m"):
        if backend_name == "opensearch":
            from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

            OpenSearchIndex.create(OpenSearchConfig.from_url(UNREACHABLE), "x", settings)
        else:
            from lookalike.index.milvus import MilvusIndex

            MilvusIndex.create(UNREACHABLE, "x", settings)


# --------------------------------------------------------------------------------------- (e) embedded-only
@pytest.mark.parametrize("backend_name", SERVER_NAMES)
@pytest.mark.parametrize(
    "option", [dict(encoding="sq8"), dict(reduce_dim=2), dict(rerank=0), dict(nprobe=4), dict(kind="ivf")]
)
def test_embedded_only_options_are_refused_on_server_backends(backend_name: str, option: dict, tmp_path: Path) -> None:
    target = IndexTarget(backend_name, tmp_path, UNREACHABLE, "x")  # type: ignore[arg-type]
    name = next(iter(option))
    with pytest.raises(IndexRequestError, match=rf"does not support {name}.*"):
        create_index(target, IndexSettings(dim=DIM, **option))  # type: ignore[arg-type]


def test_embedded_only_options_are_honoured_by_the_embedded_backend(tmp_path: Path) -> None:
    settings = IndexSettings(dim=DIM, kind="exact", encoding="fp16", rerank=2)
    with create_index(IndexTarget("embedded", tmp_path / "i"), settings) as index:
        assert index.settings == settings


# --------------------------------------------------------------------------------------- (f) error classes
def test_bad_requests_are_request_errors(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index(metric="cosine", dim=DIM)
    index.add([_item("a")])
    for call in (
        lambda: index.search(np.ones(DIM, dtype=np.float32), 0),
        lambda: index.search(np.ones(DIM, dtype=np.float32), True),  # type: ignore[arg-type]
        lambda: index.add([_item("a"), _item("a")]),
        lambda: index.add([Item("b", np.ones(DIM, dtype=np.float32), {"bad": float("nan")})]),
        lambda: index.add([_item("")]),
    ):
        with pytest.raises(IndexRequestError) as refused:
            call()
        assert isinstance(refused.value, IndexError_) and _api_error(refused.value)[0] == 400


@pytest.mark.parametrize("backend_name", SERVER_NAMES)
def test_an_unreachable_server_is_not_a_bad_request(
    backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend_name == "milvus":
        pytest.importorskip("pymilvus")
        from lookalike.index.milvus import client

        monkeypatch.setattr(client, "DEFAULT_TIMEOUT", 1.0)  # pymilvus retries a refused port until then
    if backend_name == "opensearch":
        pytest.importorskip("opensearchpy")
    target = IndexTarget(backend_name, tmp_path, UNREACHABLE, "x")  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailableError) as unreachable:
        create_index(target, IndexSettings(dim=DIM))
    assert isinstance(unreachable.value, IndexError_) and not isinstance(unreachable.value, IndexRequestError)
    assert _api_error(unreachable.value) == (503, "backend_unavailable")


def test_the_api_maps_request_errors_by_their_own_row() -> None:
    from lookalike.api.errors import STATUS_AND_CODE

    kinds = [kind for kind, _, _ in STATUS_AND_CODE]
    assert errors.IndexRequestError in kinds
    assert kinds.index(errors.VectorSizeError) < kinds.index(errors.IndexRequestError) < kinds.index(IndexError_)
