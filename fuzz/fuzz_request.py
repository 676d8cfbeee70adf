"""Fuzz request parsing: bytes -> one HTTP request (route and body shape picked by the first byte, see
tests/hostile/corpus.py:request_from_bytes) -> the real ASGI app, in process, over a small real index.

A crash is a status of 500 or more, an exception escaping the app, or a 4xx that is not the API's JSON
error. Found inputs land in tests/hostile/found/request-crash-*; tests/test_hostile.py replays them.
Query URLs cannot leave the machine: host names do not resolve here (only IP literals pass), internal
addresses are refused by the app's guard, and fetches time out after 0.2 s.

    python fuzz/fuzz_request.py [libFuzzer options] [corpus dirs]   # or: make fuzz (FUZZ_SECONDS=60)
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import atheris

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

with atheris.instrument_imports():  # the parsers under test: python-multipart, Starlette, the routes, filters
    import multipart  # noqa: F401
    import starlette.formparsers
    import starlette.requests  # noqa: F401
    from hostile import corpus

    from lookalike.api import create_app
    from lookalike.catalog import open_or_create_catalog
    from lookalike.config import Settings
    from lookalike.index import filters  # noqa: F401
    from lookalike.ingest import ingest
    from lookalike.sources import fetch, open_source

warnings.simplefilter("ignore")


def _no_dns(host: str, *args: Any, **kwargs: Any) -> Any:
    """Only IP literals resolve: a fuzzed host name must not wait on (or reach) a DNS server."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, str(host))
    except (OSError, TypeError) as exc:
        raise socket.gaierror(socket.EAI_NONAME, "name resolution is off while fuzzing") from exc
    return _getaddrinfo(host, *args, **kwargs)


_getaddrinfo = socket.getaddrinfo
fetch.socket.getaddrinfo = _no_dns  # type: ignore[attr-defined]

WORK = Path(tempfile.mkdtemp(prefix="lookalike-fuzz-"))


def _build_app() -> Any:
    root = WORK / "catalogue" / "ref"
    root.mkdir(parents=True)
    for name, data in corpus.reference_images().items():
        (root / Path(name).name).write_bytes(data)
    catalog = open_or_create_catalog(WORK / "index", "efficientnet-lite0", kind="exact")
    ingest(open_source(str(WORK / "catalogue")), catalog.index, catalog.embedder, progress=False)
    settings = Settings(
        cache=WORK, api_key=corpus.API_KEY, url_timeout=0.2, max_upload_bytes=2 * 1024 * 1024, rate_limit=None
    )
    return create_app(catalog, settings, uploads_dir=WORK / "uploads")


APP: Any = None  # built in main(), so --write-seeds does not load the model
LOOP = asyncio.new_event_loop()


async def _call(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    chunks = [body]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(), "more_body": False}
        await asyncio.sleep(3600)  # the app should never wait for more than the body
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], response_headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_one_input(data: bytes) -> None:
    method, path, headers, body = corpus.request_from_bytes(data)
    status, response_headers, content = LOOP.run_until_complete(
        asyncio.wait_for(_call(method, path, headers, body), timeout=20)
    )
    assert status < 500, (status, content[:300])
    if status >= 400:
        assert response_headers.get("content-type", "").startswith("application/json"), (status, response_headers)
        error = json.loads(content)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), error


def seeds(directory: Path) -> None:
    """Write the starting corpus: the request seeds, and every small image case as an upload and as base64."""
    import base64

    directory.mkdir(parents=True, exist_ok=True)
    inputs = list(corpus.request_seeds())
    boundary = corpus.BOUNDARY.encode()
    for case in corpus.image_cases():
        image = case.data()
        if len(image) > 20_000:
            continue
        part = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n\r\n'
        inputs.append(b"\x01" + part + image + b"\r\n--" + boundary + b"--\r\n")
        inputs.append(b"\x00" + json.dumps({"image_base64": base64.b64encode(image).decode(), "k": 2}).encode())
    for i, data in enumerate(inputs):
        (directory / f"seed-{i:03d}").write_bytes(data)


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        seeds(Path(sys.argv[2]))
        return
    global APP
    APP = _build_app()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
