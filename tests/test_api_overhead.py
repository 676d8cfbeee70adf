"""The per-request machinery around a search: work left until the answer is out, the query store's bookkeeping,
and the request metrics (each of them was once a measurable share of a search over HTTP; docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from lookalike.api.after_response import AfterResponse, after_response
from lookalike.api.metrics import CountRequests, Metrics
from lookalike.api.query_store import QueryStore


def run_app(app: Any, path: str = "/x") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b"", "root_path": ""}
    asyncio.run(app(scope, receive, send))
    return sent


def test_work_left_until_the_answer_runs_after_the_last_byte(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        after_response(lambda: events.append("first"))
        after_response(lambda: 1 / 0)  # logged; the others still run
        after_response(lambda: events.append("second"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        events.append("answered")

    with caplog.at_level(logging.ERROR):
        sent = run_app(AfterResponse(app))
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert events == ["answered", "first", "second"]
    assert "after the answer failed" in caplog.text
    after_response(lambda: events.append("now"))  # outside a request: at once
    assert events[-1] == "now"


def test_request_metrics_count_status_and_route() -> None:
    metrics = Metrics()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    run_app(CountRequests(app, lambda: metrics, lambda scope: "/x"))
    text = metrics.render().decode()
    assert 'lookalike_requests_total{method="GET",route="/x",status="404"} 1.0' in text
    assert 'lookalike_request_seconds_count{route="/x"} 1.0' in text


def test_query_store_counts_what_an_earlier_run_left(tmp_path: Path) -> None:
    """The folder is listed once, when the store is made: older files count toward the size bound and go
    first; a file past its age is dropped then."""
    folder = tmp_path / "queries"
    folder.mkdir()
    data = b"x" * 1000
    refs = [f"{n:024x}" for n in range(4)]
    for n, ref in enumerate(refs):
        (folder / f"{ref}.query").write_bytes(data)
        stamp = time.time() - 1000 + n
        os.utime(folder / f"{ref}.query", (stamp, stamp))
    expired = folder / f"{99:024x}.query"
    expired.write_bytes(data)
    os.utime(expired, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    store = QueryStore(folder, max_bytes=4 * len(data), max_days=2)
    assert not expired.exists()
    store.put(f"{7:024x}", data)  # a fifth: the oldest of the earlier run's goes
    assert [store.get(ref) is not None for ref in refs] == [False, True, True, True]
    store.put(refs[1], data)  # shared again: now the newest
    store.put(f"{8:024x}", data)
    assert [store.get(ref) is not None for ref in refs] == [False, True, False, True]
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        f"{ref}.query" for ref in (refs[1], refs[3], f"{7:024x}", f"{8:024x}")
    )
