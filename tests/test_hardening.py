"""Hardening of the server's edges: bounded concurrency, the write contract, and what the API refuses.

Each test is one fault a hostile client found (closed at its root: one guarded path) plus the behaviour
that must still work beside it: a refused request changes nothing, and an honest one still answers.
The memory and /health-latency figures under real attacks are in test_attacks.py (a real server process).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import make_photo
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.api.capacity import Slots
from lookalike.api.uploads import sweep_uploads, upload_path
from lookalike.catalog import Catalog, open_or_create_catalog
from lookalike.config import Settings
from lookalike.errors import BackendUnavailableError, BusyError, IndexError_, VectorSizeError
from lookalike.index import EmbeddedIndex, IndexSettings, Item, validate
from lookalike.ingest import ingest
from lookalike.sources import open_source

KEY = "hardening-key"


def settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "cache": tmp,
        "api_key": KEY,
        "url_allow": ["127.0.0.1"],
        "url_timeout": 5.0,
        "rate_limit": None,
        "public_url": None,
        "trusted_proxies": [],
    }
    return Settings(**(values | overrides))


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def catalog(workdir: Path, lite0) -> Iterator[Catalog]:
    root = workdir / "catalogue"
    root.mkdir()
    for seed in range(6):
        (root / f"item-{seed}.jpg").write_bytes(make_photo(seed))
    catalog = open_or_create_catalog(workdir / "index", "efficientnet-lite0", kind="exact")
    ingest(open_source(str(root)), catalog.index, catalog.embedder, progress=False)
    yield catalog
    catalog.close()


@pytest.fixture(scope="module")
def client(catalog: Catalog, workdir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(catalog, settings(workdir), uploads_dir=workdir / "uploads")) as test_client:
        yield test_client


def checksum(catalog: Catalog) -> tuple[int, list[tuple[str, str]]]:
    items = [item for batch in catalog.index.iter_items(with_vectors=False) for item in batch]
    return len(items), sorted((item.id, json.dumps(item.metadata, sort_keys=True)) for item in items)


def add(client: TestClient, data: bytes, **form: str) -> httpx.Response:
    return client.post(
        "/api/items", files={"image": ("x.jpg", data, "image/jpeg")}, data=form, headers={"X-API-Key": KEY}
    )


# ------------------------------------------------------------------------------------- the write contract
def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ('{"deep": ' + json.dumps(nested(300)) + "}", "nested deeper"),
        ('{"deep": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
        ('{"big": 99999999999999999999}', "64-bit"),
        ('{"nan": NaN}', "nan"),
        ('{"text": "\\ud800"}', "unicode"),
        ('{"huge": "' + "x" * 70_000 + '"}', "bytes of metadata"),
        ('{"digits": ' + "9" * 5000 + "}", "json"),
    ],
    ids=["nested-300", "lists-40", "int-beyond-int64", "nan", "lone-surrogate", "too-large", "5000-digits"],
)
def test_poisonous_metadata_is_refused_before_anything_is_written(
    client: TestClient, catalog: Catalog, metadata: str, words: str
) -> None:
    before = checksum(catalog)
    message = error_of(add(client, make_photo(500), id="poison", metadata=metadata), 400, "bad_request")
    assert words.lower() in message.lower(), message
    assert checksum(catalog) == before
    assert client.get("/api/items/poison").status_code == 404
    search = client.post("/api/search", json={"id": "item-0.jpg", "k": 10})
    assert search.status_code == 200 and len(search.json()["results"]) == 5


def test_deepest_allowed_metadata_round_trips(client: TestClient, catalog: Catalog) -> None:
    deepest = nested(validate.MAX_METADATA_DEPTH - 1)
    response = add(client, make_photo(501), id="deep-ok", metadata=json.dumps({"d": deepest}))
    assert response.status_code == 201, response.text
    try:
        assert client.get("/api/items/deep-ok").json()["metadata"] == {"d": deepest}
        hits = client.post("/api/search", json={"id": "item-0.jpg", "k": 10}).json()["results"]
        assert "deep-ok" in [hit["id"] for hit in hits]
    finally:
        assert client.delete("/api/items/deep-ok", headers={"X-API-Key": KEY}).status_code == 200


def test_the_contract_is_the_same_for_every_backend_limit() -> None:
    """One set of limits: the embedded index refuses what the servers would (512-byte ids, zero cosine)."""
    with pytest.raises(IndexError_, match="512"):
        validate.check_id("é" * 257)  # 514 bytes, 257 characters
    assert validate.check_id("x" * 512) == "x" * 512
    with pytest.raises(VectorSizeError, match="zero vector"):
        validate.check_vector("a", np.zeros(4), 4, "cosine")
    assert validate.check_vector("a", np.zeros(4), 4, "l2").shape == (4,)
    with pytest.raises(VectorSizeError, match="all zeros"):
        validate.check_query(np.zeros(4), 4, "cosine")


def test_embedded_index_refuses_a_bad_batch_whole(tmp_path: Path) -> None:
    index = EmbeddedIndex.create(tmp_path / "i", IndexSettings(dim=4, metric="cosine", kind="exact"))
    index.add([Item("keep", np.ones(4), {"a": 1})])
    bad_batches = [
        [Item("ok", np.ones(4), {}), Item("é" * 300, np.ones(4), {})],
        [Item("ok", np.ones(4), {}), Item("zero", np.zeros(4), {})],
        [Item("ok", np.ones(4), {}), Item("deep", np.ones(4), {"d": nested(100)})],
        [Item("ok", np.ones(4), {}), Item("big", np.ones(4), {"n": 2**64})],
    ]
    for batch in bad_batches:
        with pytest.raises(IndexError_):
            index.add(batch)
        assert index.count() == 1 and index.get("ok") is None
    index.close()


# ------------------------------------------------------------------------------------------ ingest skips
def test_ingest_skips_and_reports_an_item_the_index_refuses(tmp_path: Path, lite0) -> None:
    """An item over the contract's id limit is reported like a bad image; the rest of the batch is indexed."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = ["id,path,label"]
    for seed in range(5):
        path = photos / f"{seed}.jpg"
        path.write_bytes(make_photo(seed))
        item_id = "x" * 600 if seed == 2 else f"item-{seed}"
        rows.append(f"{item_id},{path},L{seed}")
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text("\n".join(rows) + "\n")
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact")
    report = ingest(open_source(str(manifest)), catalog.index, catalog.embedder, progress=False)
    assert report.indexed == 4 and catalog.index.count() == 4
    assert [failure.id for failure in report.failed] == ["x" * 600]
    assert "refused by the index" in report.failed[0].reason and "512" in report.failed[0].reason
    catalog.close()


# --------------------------------------------------------------------------------------------- uploads/
def test_replaced_and_deleted_items_take_their_files_with_them(client: TestClient, workdir: Path) -> None:
    uploads = workdir / "uploads"
    first, second = make_photo(700), make_photo(701)
    assert add(client, first, id="shoe").status_code == 201
    assert sorted(p.name for p in uploads.iterdir()) == [upload_path(uploads, "shoe", _hash(first), "jpeg").name]
    assert add(client, second, id="shoe").status_code == 201  # replaced with another image
    assert sorted(p.name for p in uploads.iterdir()) == [upload_path(uploads, "shoe", _hash(second), "jpeg").name]
    assert add(client, second, id="shoe").status_code == 201  # the same image again keeps its file
    assert len(list(uploads.iterdir())) == 1
    assert client.get("/api/images/shoe").content == second
    assert client.delete("/api/items/shoe", headers={"X-API-Key": KEY}).status_code == 200
    assert list(uploads.iterdir()) == []


def test_a_starting_server_sweeps_temporary_and_orphaned_files(catalog: Catalog, workdir: Path) -> None:
    uploads = workdir / "sweep-uploads"
    with TestClient(create_app(catalog, settings(workdir), uploads_dir=uploads)) as client:
        assert add(client, make_photo(710), id="kept").status_code == 201
        kept = sorted(uploads.iterdir())
    (uploads / "0123.jpeg.140234.tmp").write_bytes(b"half-written")
    (uploads / ("f" * 32 + ".jpeg")).write_bytes(make_photo(711))  # no item refers to it
    with TestClient(create_app(catalog, settings(workdir), uploads_dir=uploads)) as client:
        assert sorted(uploads.iterdir()) == kept
        assert client.get("/api/images/kept").status_code == 200
        assert client.delete("/api/items/kept", headers={"X-API-Key": KEY}).status_code == 200


def test_sweep_keeps_files_referenced_by_name_from_another_directory(catalog: Catalog, tmp_path: Path) -> None:
    """A restored index whose items point at the original directory keeps its copies of their files."""
    app = create_app(catalog, settings(tmp_path), uploads_dir=tmp_path / "u")
    state = app.state.lookalike
    state.uploads_dir.mkdir()
    (state.uploads_dir / "item-0.jpg").write_bytes(b"copy")  # a catalogue item's file name
    (state.uploads_dir / "orphan.jpg").write_bytes(b"x")
    assert sweep_uploads(state) == 1
    assert [p.name for p in state.uploads_dir.iterdir()] == ["item-0.jpg"]


def _hash(data: bytes) -> str:
    from lookalike.ingest import content_hash

    return content_hash(data)


# ------------------------------------------------------------------------------------- filters and JSON
@pytest.mark.parametrize(
    "raw",
    ['{"label": ' + "9" * 5000 + "}", '{"label": "\\ud800"}', '{"label": 99999999999999999999}'],
    ids=["5000-digits", "lone-surrogate", "beyond-int64"],
)
def test_hostile_multipart_filters_are_400s(client: TestClient, raw: str) -> None:
    files = {"image": ("q.jpg", make_photo(1), "image/jpeg")}
    response = client.post("/api/search", files=files, data={"filter": raw})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_filter"


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "item-0.jpg", "filter": {"label": 99999999999999999999}}',
        '{"id": "item-0.jpg", "filter": {"label": [1, 99999999999999999999]}}',
        '{"id": "item-0.jpg", "filter": {"price": {"lt": 1' + "0" * 400 + "}}}",
        '{"id": "item-0.jpg", "filter": {"price": {"lt": 1e400}}}',
    ],
    ids=["eq", "one-of", "range-10**400", "range-1e400"],
)
def test_out_of_range_filter_numbers_are_400s(client: TestClient, body: str) -> None:
    response = client.post("/api/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("bad_filter", "bad_request")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/a\tb.jpg", "http://127.0.0.1/a\nb.jpg", "http://127.0.0.1/" + "a" * 70_000]
)
def test_unusable_query_urls_are_400s(client: TestClient, url: str) -> None:
    response = client.post("/api/search", json={"url": url})
    assert response.status_code == 400, response.text[:300]


# ------------------------------------------------------------------------------------- bounded concurrency
def test_slots_bound_holders_and_waiters() -> None:
    async def scenario() -> list[str]:
        slots = Slots("jobs", size=2, max_waiting=1, wait=0.3)
        outcome: list[str] = []
        release = asyncio.Event()

        async def job(name: str) -> None:
            try:
                async with slots.hold():
                    outcome.append(f"{name} ran")
                    await release.wait()
            except BusyError as error:
                outcome.append(f"{name} busy: {error}")

        tasks = [asyncio.create_task(job(name)) for name in "abc"]
        await asyncio.sleep(0.05)
        assert (slots.busy, slots.waiting) == (2, 1)  # c waits
        await job("d")  # no room to wait: refused at once
        await asyncio.sleep(0.4)  # c gave up waiting after 0.3 s
        release.set()
        await asyncio.gather(*tasks)
        assert (slots.busy, slots.waiting) == (0, 0)
        async with slots.hold():  # free again
            outcome.append("e ran")
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome[:2] == ["a ran", "b ran"]
    assert outcome[2].startswith("d busy") and "1 more are waiting" in outcome[2]
    assert outcome[3].startswith("c busy") and "within 0.3 s" in outcome[3]
    assert outcome[-1] == "e ran"


class _Dripping(BaseHTTPRequestHandler):
    """Headers at once, then a byte every 0.2 s for 3 s: a slow peer."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        for _ in range(15):
            try:
                self.wfile.write(b"\xff")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dripping_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow.jpg"
    server.shutdown()
    server.server_close()


def test_slow_urls_get_503_beyond_the_fetch_bound_while_health_answers(
    catalog: Catalog, workdir: Path, dripping_peer: str
) -> None:
    app_settings = settings(workdir, max_url_fetches=2, max_waiting=0, url_total_timeout=2.0)
    with TestClient(create_app(catalog, app_settings, uploads_dir=workdir / "u503")) as client:
        answers: list[httpx.Response] = []

        def query() -> None:
            answers.append(client.post("/api/search", json={"url": dripping_peer}))

        threads = [threading.Thread(target=query) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        started = time.perf_counter()
        health = client.get("/health")
        health_seconds = time.perf_counter() - started
        upload = client.post("/api/search", files={"image": ("q.jpg", make_photo(3), "image/jpeg")})
        for thread in threads:
            thread.join(timeout=10)
    assert health.status_code == 200 and health_seconds < 1.0
    assert upload.status_code == 200 and upload.json()["results"][0]["id"] == "item-3.jpg"
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(503) == 4, statuses  # two fetch, the other four are refused at once
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.json()["error"]["code"] == "busy" and int(busy.headers["retry-after"]) >= 1
    assert all(status == 400 for status in statuses if status != 503)  # the two fetched time out: 400


# ------------------------------------------------------------------------------------- outages are 503s
class _UnreachableIndex:
    """An index whose server went away: every call raises what the backends raise for an outage."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: object, **kwargs: object) -> Any:
            raise BackendUnavailableError("cannot reach Milvus at http://127.0.0.1:1: connection refused")

        return fail


def test_a_backend_outage_is_a_503_not_the_clients_fault(catalog: Catalog, workdir: Path) -> None:
    app = create_app(catalog, settings(workdir), uploads_dir=workdir / "u-outage")
    real = catalog.index
    app.state.lookalike.catalog = Catalog(_UnreachableIndex(), catalog.embedder)  # type: ignore[arg-type]
    try:
        with TestClient(app) as client:
            for response in (
                client.post("/api/search", json={"id": "item-0.jpg"}),
                client.post("/api/search", files={"image": ("q.jpg", make_photo(3), "image/jpeg")}),
            ):
                assert error_of(response, 503, "backend_unavailable")
                assert "retry-after" in response.headers
    finally:
        app.state.lookalike.catalog = Catalog(real, catalog.embedder)


def test_milvus_outages_are_told_apart_from_refusals() -> None:
    from lookalike.index import milvus

    class MilvusUnavailableException(Exception):
        message = "server unavailable"

    class Refused(Exception):
        message = "invalid expression: field foo not found"

    assert milvus._is_outage(MilvusUnavailableException())
    assert milvus._is_outage(Exception("<_InactiveRpcError of RPC: status = StatusCode.UNAVAILABLE>"))
    assert not milvus._is_outage(Refused())


# ------------------------------------------------------------------------------------- links and proxies
def test_reference_links_use_the_configured_public_url(catalog: Catalog, workdir: Path) -> None:
    import base64

    body = {"base64img": base64.b64encode(make_photo(2)).decode(), "k": 2}
    forged = {"Host": "evil.example"}
    with TestClient(create_app(catalog, settings(workdir), uploads_dir=workdir / "u1")) as client:
        assert (
            client.post("/postImage", json=body, headers=forged)
            .json()["images"][0]
            .startswith("http://evil.example/api/images/")
        )  # without a public URL the Host header is all there is (documented)
    public = settings(workdir, public_url="https://shop.example/search/")
    with TestClient(create_app(catalog, public, uploads_dir=workdir / "u2")) as client:
        links = client.post("/postImage", json=body, headers=forged).json()["images"]
    assert links and all(link.startswith("https://shop.example/search/api/images/") for link in links)


def test_serve_trusts_forwarded_headers_only_from_configured_proxies(
    monkeypatch: pytest.MonkeyPatch, catalog: Catalog, workdir: Path
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from lookalike import cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setattr("lookalike.catalog.open_catalog", lambda target: catalog)
    monkeypatch.setattr(Catalog, "close", lambda self: None)
    runner = CliRunner()
    monkeypatch.delenv("LOOKALIKE_TRUSTED_PROXIES", raising=False)
    result = runner.invoke(cli.app, ["serve", "--index", str(workdir / "index"), "--root-path", "/Prod/"])
    assert result.exit_code == 0, result.output
    # uvicorn's own forwarded handling (which trusts 127.0.0.1) stays off: the app does it, for its proxies
    assert (calls[-1]["proxy_headers"], calls[-1]["root_path"]) == (False, "/Prod")


@pytest.mark.parametrize("trusted", [["testclient"], []])
def test_forwarded_host_prefix_and_address_count_only_from_trusted_proxies(
    catalog: Catalog, workdir: Path, trusted: list[str]
) -> None:
    """TestClient connects from "testclient": trusted, the links follow X-Forwarded-Host/-Prefix/-Proto and the
    rate limit sees X-Forwarded-For; untrusted, all of them are ignored."""
    from conftest import make_photo

    body = {"base64img": base64.b64encode(make_photo(1)).decode(), "k": 1}
    forwarded = {
        "X-Forwarded-Host": "shop.example",
        "X-Forwarded-Prefix": "/Prod",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9",
    }
    app = create_app(catalog, settings(workdir, trusted_proxies=trusted, rate_limit="1/minute", rate_burst=2))
    with TestClient(app) as client:
        link = client.post("/postImage", json=body, headers=forwarded).json()["images"][0]
        docs = client.get("/docs", headers=forwarded).text
        again = client.post("/postImage", json=body, headers={**forwarded, "X-Forwarded-For": "203.0.113.10"})
    if trusted:
        assert link.startswith("https://shop.example/Prod/api/images/")
        assert "/Prod/static-offline-docs/swagger-ui-bundle.js" in docs and "/Prod/openapi.json" in docs
        assert again.status_code == 200  # another forwarded client: its own rate-limit bucket
    else:
        assert link.startswith("http://testserver/api/images/")
        assert "/Prod" not in docs
        assert again.status_code == 429  # the same (real) client, whatever the header says


# ------------------------------------------------------------------------------------- fuzzing inputs
def test_every_request_seed_of_the_fuzzer_gets_an_answer_below_500(client: TestClient) -> None:
    """The request fuzzer starts from these (tests/hostile/corpus.py); each must already be a clean answer."""
    from hostile import corpus

    for seed in corpus.request_seeds():
        method, path, headers, body = corpus.request_from_bytes(seed)
        headers = headers | {"x-api-key": KEY}
        response = client.request(method, path, headers=headers, content=body)
        assert response.status_code < 500, (seed[:120], response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text[:300]


@pytest.mark.parametrize("target", ["decode", "request"])
def test_fuzz_dictionaries_are_well_formed(target: str) -> None:
    """libFuzzer refuses to start on a malformed -dict file: every entry is name="escaped bytes"."""
    import re

    path = Path(__file__).resolve().parents[1] / "fuzz" / f"{target}.dict"
    entries = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(entries) >= 10
    entry = re.compile(r'^[a-z0-9_]+="(?:[^"\\]|\\\\|\\"|\\x[0-9a-f]{2})*"$')
    assert [line for line in entries if not entry.match(line)] == []


# ------------------------------------------------------------------------------------- one guarded open
@pytest.mark.parametrize("name", ["tiff that also parses as IM", "32-bit grey tiff, all 70000"])
def test_the_query_image_of_an_accepted_upload_is_served_through_the_guarded_open(
    client: TestClient, name: str
) -> None:
    """A TIFF whose first bytes also parse as an IM header searched fine but its query image answered 500:
    the route re-opened the bytes with an unrestricted Image.open. Every open now goes through one."""
    from hostile import corpus

    case = next(case for case in corpus.image_cases() if case.name == name)
    search = client.post("/api/search", files={"image": ("q.tif", case.data(), "image/tiff")})
    assert search.status_code == 200, search.text
    image = client.get(search.json()["query"]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/tiff"
    assert image.content == case.data()
