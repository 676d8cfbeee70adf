"""Who may do what, how often, and with how much: the API key on write routes, CORS origins from the
environment, the request body bound, and the per-client rate limit (token bucket, 429 + Retry-After)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hostile import corpus

from lookalike.api import create_app
from lookalike.api.limits import RateLimit
from lookalike.catalog import Catalog, open_or_create_catalog
from lookalike.config import Settings, parse_rate
from lookalike.ingest import ingest
from lookalike.sources import open_source

KEY = "access-key"
PHOTO = corpus.reference_images()[corpus.PHOTO_A]


def settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "cache": tmp,
        "api_key": KEY,
        "cors_origins": ["*"],
        "max_upload_bytes": 10 * 1024 * 1024,
        "url_allow": [],
        "rate_limit": None,
        "rate_burst": None,
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("access")


@pytest.fixture(scope="module")
def catalog(workdir: Path, lite0) -> Iterator[Catalog]:
    root = workdir / "catalogue"
    root.mkdir()
    for name, data in corpus.reference_images().items():
        (root / Path(name).name).write_bytes(data)
    catalog = open_or_create_catalog(workdir / "index", "efficientnet-lite0", kind="exact")
    ingest(open_source(str(root)), catalog.index, catalog.embedder, progress=False)
    yield catalog
    catalog.close()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


# ------------------------------------------------------------------------------------------------ API key
def test_every_write_route_needs_the_key_and_no_read_route_does(catalog: Catalog, workdir: Path) -> None:
    from lookalike.api import routes

    app = create_app(catalog, settings(workdir), uploads_dir=workdir / "uploads")
    with TestClient(app) as client:
        writes: set[tuple[str, str]] = set()
        # The routes that change the index, found from the app itself so a new one cannot be forgotten.
        for route in routes.router.routes:  # the REST router (the app includes it lazily)
            if any(d.dependency is routes.require_api_key for d in getattr(route, "dependencies", ())):
                writes |= {(method, route.path) for method in route.methods}
        assert writes == {("POST", "/api/items"), ("DELETE", "/api/items/{item_id:path}")}

        count = catalog.index.count()
        for headers in ({}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}, {"X-API-Key": KEY + " "}):
            added = client.post("/api/items", files={"image": ("a.png", PHOTO)}, headers=headers)
            assert "API key" in error_of(added, 401, "unauthorized")
            deleted = client.delete(f"/api/items/{Path(corpus.PHOTO_A).name}", headers=headers)
            error_of(deleted, 401, "unauthorized")
        assert catalog.index.count() == count

        for path in ("/api/info", "/api/facets", "/health", "/metrics", f"/api/items/{Path(corpus.PHOTO_A).name}"):
            assert client.get(path).status_code == 200, path
        assert client.post("/api/search", files={"image": ("a.png", PHOTO)}).status_code == 200

        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            added = client.post("/api/items", files={"image": ("a.png", PHOTO)}, data={"id": "k"}, headers=headers)
            assert added.status_code == 201, added.text
            assert client.delete("/api/items/k", headers=headers).status_code == 200
        assert catalog.index.count() == count


def test_without_a_configured_key_the_server_is_read_only(catalog: Catalog, workdir: Path) -> None:
    with TestClient(create_app(catalog, settings(workdir, api_key=None))) as client:
        message = error_of(client.post("/api/items", files={"image": ("a.png", PHOTO)}), 403, "read_only")
        assert "LOOKALIKE_API_KEY" in message
        assert client.get("/api/info").json()["read_only"] is True


# ------------------------------------------------------------------------------------------------ CORS
def test_cors_origins_come_from_the_environment(catalog: Catalog, workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOOKALIKE_CORS_ORIGINS", '["https://shop.example", "https://www.shop.example"]')
    configured = Settings(cache=workdir)
    assert configured.cors_origins == ["https://shop.example", "https://www.shop.example"]
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with TestClient(create_app(catalog, configured)) as client:
        ok = client.options("/api/search", headers={"Origin": "https://www.shop.example", **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://www.shop.example"
        other = client.options("/api/search", headers={"Origin": "https://evil.example", **preflight})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        simple = client.post("/api/search", json={"id": "x"}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


# ------------------------------------------------------------------------------------------------ body size
def test_the_body_bound_is_exact(catalog: Catalog, workdir: Path) -> None:
    """max_upload_bytes = 30 000: bodies up to 30 000 * 4/3 + 64 KiB = 105 536 bytes are read, one more is not."""
    limit = 30_000 * 4 // 3 + 64 * 1024
    with TestClient(create_app(catalog, settings(workdir, max_upload_bytes=30_000))) as client:
        at_limit = b'{"id": "x", "k": 3' + b" " * (limit - 20) + b"}"
        assert len(at_limit) == limit - 1
        for body, status in ((at_limit, 404), (at_limit + b" ", 404), (at_limit + b"  ", 413)):
            response = client.post("/api/search", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status, (len(body), response.text[:200])
        streamed = client.post(
            "/api/search",
            content=iter([at_limit[:50_000], at_limit[50_000:], b"  "]),
            headers={"content-type": "application/json"},
        )
        assert "105,536" in error_of(streamed, 413, "too_large")
        assert client.post("/api/search", files={"image": ("a.png", PHOTO)}).status_code == 200


# ------------------------------------------------------------------------------------------------ rate limit
def test_parse_rate() -> None:
    assert parse_rate("30/s") == 30 and parse_rate("600/min") == 10 and parse_rate("7200/h") == 2
    assert parse_rate(" 5 / second ") == 5 and parse_rate("120/minutes") == 2
    for bad in ("30", "30/day", "0/s", "-1/s", "fast/s", "inf/s"):
        with pytest.raises(ValueError, match="30/s"):
            parse_rate(bad)
    assert Settings(rate_limit="off").rate_limit is None and Settings().rate_limit is None
    with pytest.raises(ValueError):
        Settings(rate_limit="lots")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(limiter: RateLimit, client: str, path: str = "/api/search") -> tuple[int, dict[str, str], bytes]:
    """One request through the middleware around an app that answers 200."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    limiter.app = app
    scope = {"type": "http", "path": path, "client": (client, 1234), "headers": []}
    asyncio.run(limiter(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_token_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimit(None, rate=2.0, burst=4, label="2/s", clock=clock)
    assert [call(limiter, "1.2.3.4")[0] for _ in range(5)] == [200, 200, 200, 200, 429]
    status, headers, body = call(limiter, "1.2.3.4")
    assert status == 429 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "rate_limited" and "2/s" in error["message"] and "bursts of 4" in error["message"]
    assert call(limiter, "5.6.7.8")[0] == 200  # another client has its own bucket
    clock.now += 0.5  # half a second at 2/s: one token back
    assert [call(limiter, "1.2.3.4")[0] for _ in range(2)] == [200, 429]
    clock.now += 60  # a long pause refills to the burst, never beyond
    assert [call(limiter, "1.2.3.4")[0] for _ in range(5)] == [200, 200, 200, 200, 429]
    slow = RateLimit(None, rate=1 / 60, burst=1, label="1/min", clock=clock)
    assert call(slow, "c")[0] == 200
    status, headers, _ = call(slow, "c")
    assert status == 429 and headers["retry-after"] == "60"


def test_health_and_metrics_are_never_limited() -> None:
    limiter = RateLimit(None, rate=1.0, burst=1, label="1/s", clock=Clock())
    assert call(limiter, "a")[0] == 200 and call(limiter, "a")[0] == 429
    assert all(call(limiter, "a", path)[0] == 200 for path in ("/health", "/metrics") * 20)


def test_the_client_table_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimit(None, rate=1.0, burst=1, label="1/s", clock=clock, max_clients=100)
    for i in range(10_000):  # an attacker with many addresses
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100
    assert limiter.take("10.0.39.15") > 0  # the most recent are remembered: still limited


def test_rate_limit_through_the_app(catalog: Catalog, workdir: Path) -> None:
    """3 requests at once, then 429 before the body is read, with CORS headers, counted in /metrics."""
    app = create_app(catalog, settings(workdir, rate_limit="1/min", rate_burst=3, cors_origins=["https://s.example"]))
    with TestClient(app) as client, TestClient(app, client=("203.0.113.9", 4000)) as other:
        for _ in range(3):
            assert client.post("/api/search", files={"image": ("a.png", PHOTO)}).status_code == 200
        huge = b"{" + b" " * 20_000_000 + b"}"
        started = time.perf_counter()
        refused = client.post(
            "/api/search",
            content=huge,
            headers={"content-type": "application/json", "Origin": "https://s.example"},
        )
        assert time.perf_counter() - started < 2
        message = error_of(refused, 429, "rate_limited")
        assert "1/min" in message and "bursts of 3" in message and "testclient" in message
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["access-control-allow-origin"] == "https://s.example"
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics").text
        assert "lookalike_rate_limited_total 1.0" in metrics
        assert other.post("/api/search", json={"id": "photo-a.png"}).status_code == 200  # its own bucket


def test_the_default_is_no_limit(catalog: Catalog, workdir: Path) -> None:
    with TestClient(create_app(catalog, settings(workdir))) as client:
        assert all(client.get("/api/info").status_code == 200 for _ in range(200))


# ------------------------------------------------------------------------------------------------ saving
@pytest.mark.parametrize(("save_seconds", "saves"), [(None, 0), (0.0, 2), (3600.0, 0)])
def test_a_writing_server_saves_as_often_as_configured(
    catalog: Catalog, workdir: Path, monkeypatch, save_seconds, saves
) -> None:
    calls = []
    monkeypatch.setattr(catalog.index, "save", lambda: calls.append(1))
    app = create_app(catalog, settings(workdir, save_seconds=save_seconds), uploads_dir=workdir / "uploads")
    with TestClient(app) as client:
        key = {"X-API-Key": KEY}
        assert client.post("/api/items", files={"image": ("a.png", PHOTO)}, data={"id": "s"}, headers=key).is_success
        assert client.post("/api/search", files={"image": ("a.png", PHOTO)}).is_success  # reads never save
        assert client.delete("/api/items/s", headers=key).is_success
    assert len(calls) == saves


@pytest.mark.parametrize(("value", "expected"), [(None, 30.0), ("off", None), ("", None), ("12.5", 12.5)])
def test_save_seconds_defaults_to_30_and_off_turns_it_off(monkeypatch, value, expected) -> None:
    from lookalike.config import Settings

    monkeypatch.delenv("LOOKALIKE_SAVE_SECONDS", raising=False)
    if value is not None:
        monkeypatch.setenv("LOOKALIKE_SAVE_SECONDS", value)
    assert Settings().save_seconds == expected
