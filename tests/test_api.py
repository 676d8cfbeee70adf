"""The web API through FastAPI's TestClient: every route, every bad input, and the reference design's routes.

One small catalogue (12 synthetic photos in tops/ and shoes/) serves the read-only apps of the module; the
write routes get a catalogue of their own, so adding and deleting cannot disturb the other tests. URL queries
go to a local HTTP server on 127.0.0.1 (never the internet). After every bad input the server must still
answer a good search and the index must hold exactly what it held before.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_photo
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api import create_app
from lookalike.api.app import STATIC_DIR
from lookalike.catalog import Catalog, open_or_create_catalog
from lookalike.config import Settings
from lookalike.ingest import ingest
from lookalike.sources import open_source

QUERY_ID = "tops/item-05.jpg"
API_KEY = "s3cret-key"
URL_MAX_BYTES = 200_000  # the URL app's max_upload_bytes: far above a catalogue photo (~15 KB)
SMALL_MAX_BYTES = 50_000  # the small app's max_upload_bytes
URL_TIMEOUT = 0.5


# ------------------------------------------------------------------------------------------------ helpers
def settings(tmp: Path, **overrides: Any) -> Settings:
    """Settings independent of any LOOKALIKE_* variables in the environment."""
    values: dict[str, Any] = {
        "cache": tmp,
        "api_key": None,
        "cors_origins": ["*"],
        "max_upload_bytes": 10 * 1024 * 1024,
        "max_pixels": 40_000_000,
        "url_allow": [],
        "url_timeout": 10.0,
        "query_cache": 256,
    }
    return Settings(**(values | overrides))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    """A client error in the API's one shape, whose message names the problem."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) - {"reason"} == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return body["error"]


def crafted_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with a token of pixel data: a bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # mode "1": 1 bit per pixel
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


def chunked(data: bytes, size: int = 16_384) -> Iterator[bytes]:
    """A body without Content-Length (httpx sends it chunked), so only the streaming limit can stop it."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def multipart(fields: dict[str, tuple[str | None, bytes, str | None]], boundary: str = "lookalike-test") -> bytes:
    parts = []
    for name, (filename, content, content_type) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        parts.append(head.encode() + b"\r\n" + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def upload(client: TestClient, data: bytes, name: str = "query.jpg", **form: str) -> httpx.Response:
    return client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data=form)


def result_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [result["id"] for result in response.json()["results"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------ fixtures
def build_catalogue(root: Path, index: Path) -> Catalog:
    for seed in range(12):
        folder = root / ("tops" if seed % 2 else "shoes")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"item-{seed:02d}.jpg").write_bytes(make_photo(seed))
    catalog = open_or_create_catalog(index, "efficientnet-lite0", kind="exact")
    ingest(open_source(str(root)), catalog.index, catalog.embedder, progress=False)
    return catalog


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def photos(workdir: Path) -> Path:
    return workdir / "catalogue"


@pytest.fixture(scope="module")
def catalog(workdir: Path, photos: Path, lite0) -> Iterator[Catalog]:
    catalog = build_catalogue(photos, workdir / "index")
    assert catalog.index.count() == 12
    yield catalog
    catalog.close()


@pytest.fixture(scope="module")
def query_photo(photos: Path, catalog: Catalog) -> bytes:
    return (photos / QUERY_ID).read_bytes()


@pytest.fixture(scope="module")
def client(catalog: Catalog, workdir: Path) -> Iterator[TestClient]:
    """The main app: read-only, and URL queries may reach the local test server."""
    app = create_app(
        catalog,
        settings(workdir, url_allow=["127.0.0.1"], url_timeout=URL_TIMEOUT, max_upload_bytes=URL_MAX_BYTES),
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def strict(catalog: Catalog, workdir: Path) -> Iterator[TestClient]:
    """Default settings: no address is allowed beyond the public internet."""
    with TestClient(create_app(catalog, settings(workdir))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def small(catalog: Catalog, workdir: Path) -> Iterator[TestClient]:
    """max_upload_bytes = 50 000, so the body limit is 50 000 * 4 / 3 + 64 KiB = 132 202 bytes."""
    with TestClient(create_app(catalog, settings(workdir, max_upload_bytes=SMALL_MAX_BYTES))) as test_client:
        yield test_client


@dataclass
class Server:
    base: str
    photo: bytes

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def server(query_photo: bytes) -> Iterator[Server]:
    """A local HTTP server with an image, a web page, redirects, a slow, a huge and a missing resource."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # bodies without Content-Length end when the connection closes

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path
            if path == "/photo.jpg":
                self._reply(200, query_photo, "image/jpeg", Content_Length=str(len(query_photo)))
            elif path == "/page.html":
                self._reply(200, b"<!doctype html><title>shop</title><img src=photo.jpg>", "text/html; charset=utf-8")
            elif path == "/to-metadata":
                self._reply(302, b"", None, Location="http://169.254.169.254/latest/meta-data/")
            elif path == "/to-private":
                self._reply(302, b"", None, Location="http://10.0.0.1/photo.jpg")
            elif path == "/to-photo":
                self._reply(302, b"", None, Location="/photo.jpg")
            elif path == "/slow.jpg":
                time.sleep(URL_TIMEOUT * 4)
                self._reply(200, query_photo, "image/jpeg")
            elif path == "/huge-declared.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(URL_MAX_BYTES * 10))
                self.end_headers()
                self.wfile.write(b"\xff\xd8" + b"\0" * 1000)
            elif path == "/huge-streamed.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                for _ in range(URL_MAX_BYTES // 10_000 * 3):
                    self.wfile.write(b"\0" * 10_000)
            else:
                self._reply(404, b"not here", "text/plain")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # a client hanging up on /huge is expected
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", query_photo)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def unchanged(catalog: Catalog, query_photo: bytes) -> Iterator[Callable[[TestClient], None]]:
    """Call with a client after a bad input: it must still search well, and the index must not have changed."""
    before = catalog.index.count()
    ids_before = sorted(catalog.index.content_hashes())

    def check(test_client: TestClient) -> None:
        response = test_client.post("/api/search", json={"image_base64": b64(query_photo), "k": 2})
        assert response.status_code == 200, response.text
        best = response.json()["results"][0]
        assert best["id"] == QUERY_ID and best["score"] > 0.99
        assert catalog.index.count() == before
        assert sorted(catalog.index.content_hashes()) == ids_before

    return check


# ------------------------------------------------------------------------------------------------ searching
def test_upload_search_finds_the_photo_first_with_the_full_response(client: TestClient, query_photo: bytes) -> None:
    response = upload(client, query_photo, k="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "efficientnet-lite0"
    assert body["query"]["type"] == "upload" and body["query"]["ref"]
    assert body["query"]["image_url"] == f"/api/queries/{body['query']['ref']}/image"
    assert {"decode", "embed", "search", "total"} <= set(body["took_ms"])
    assert all(value >= 0 for value in body["took_ms"].values())
    results = body["results"]
    assert len(results) == 4
    first = results[0]
    assert first["id"] == QUERY_ID
    assert first["score"] == pytest.approx(1.0, abs=1e-3) and first["distance"] == pytest.approx(0.0, abs=1e-3)
    assert first["metadata"] == {"folder": "tops"}
    assert first["image_url"] == "/api/images/tops%2Fitem-05.jpg"
    assert first["thumbnail_url"] == "/api/images/tops%2Fitem-05.jpg?size=320"
    for result in results:
        assert set(result) == {
            "id",
            "score",
            "distance",
            "metadata",
            "image_url",
            "thumbnail_url",
            "tier",
            "duplicates",
        }
        assert result["tier"] is None and result["duplicates"] == []  # this index is not calibrated
    assert body["match"] is None
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert len({result["id"] for result in results}) == 4

    image = client.get(body["query"]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == query_photo


def test_k_defaults_to_10_and_is_respected(client: TestClient, query_photo: bytes) -> None:
    assert len(result_ids(upload(client, query_photo))) == 10
    assert len(result_ids(upload(client, query_photo, k="1"))) == 1
    assert len(result_ids(upload(client, query_photo, k="100"))) == 12  # never more than the catalogue holds
    assert len(result_ids(client.post("/api/search", json={"image_base64": b64(query_photo), "k": 7}))) == 7


def test_filters_equality_and_one_of_are_respected(client: TestClient, query_photo: bytes) -> None:
    shoes = result_ids(upload(client, query_photo, k="12", filter=json.dumps({"folder": "shoes"})))
    assert len(shoes) == 6 and all(i.startswith("shoes/") for i in shoes)
    both = result_ids(upload(client, query_photo, k="12", filter=json.dumps({"folder": ["shoes", "tops"]})))
    assert len(both) == 12 and both[0] == QUERY_ID
    response = client.post("/api/search", json={"id": QUERY_ID, "k": 12, "filter": {"folder": ["tops"]}})
    tops = result_ids(response)
    assert len(tops) == 5 and all(i.startswith("tops/") for i in tops) and QUERY_ID not in tops
    nothing = client.post("/api/search", json={"id": QUERY_ID, "filter": {"folder": "hats"}})
    assert result_ids(nothing) == []


def test_min_score_drops_low_results(client: TestClient, query_photo: bytes) -> None:
    everything = upload(client, query_photo, k="12").json()["results"]
    threshold = (everything[2]["score"] + everything[3]["score"]) / 2  # between the 3rd and 4th result
    kept = upload(client, query_photo, k="12", min_score=str(threshold)).json()["results"]
    assert [r["id"] for r in kept] == [r["id"] for r in everything[:3]]
    assert all(r["score"] >= threshold for r in kept)
    as_json = client.post("/api/search", json={"image_base64": b64(query_photo), "k": 12, "min_score": threshold})
    assert result_ids(as_json) == [r["id"] for r in everything[:3]]
    assert result_ids(upload(client, query_photo, min_score="1.5")) == []


def test_json_base64_plain_and_as_data_url(client: TestClient, query_photo: bytes) -> None:
    plain = client.post("/api/search", json={"image_base64": b64(query_photo), "k": 3})
    data_url = client.post("/api/search", json={"image_base64": "data:image/jpeg;base64," + b64(query_photo), "k": 3})
    assert plain.json()["query"]["type"] == data_url.json()["query"]["type"] == "base64"
    assert result_ids(plain) == result_ids(data_url) == result_ids(upload(client, query_photo, k="3"))
    assert result_ids(plain)[0] == QUERY_ID
    assert plain.json()["query"]["ref"] == upload(client, query_photo).json()["query"]["ref"]  # a ref is the hash
    import base64 as codec

    wrapped = codec.encodebytes(query_photo).decode()  # MIME base64: a line break every 76 characters
    assert "\n" in wrapped
    assert result_ids(client.post("/api/search", json={"image_base64": wrapped, "k": 3})) == result_ids(plain)
    reference = client.post("/postImage", json={"base64img": wrapped, "k": 3})
    assert reference.status_code == 200 and len(reference.json()["images"]) == 3
    refused = client.post("/api/search", json={"image_base64": wrapped.replace("\n", "*", 1)})
    assert refused.status_code == 400 and "not valid base64" in refused.text


def test_search_by_id_leaves_the_item_out(client: TestClient) -> None:
    response = client.post("/api/search", json={"id": QUERY_ID, "k": 5})
    ids = result_ids(response)
    assert len(ids) == 5 and QUERY_ID not in ids
    query = response.json()["query"]
    assert query["type"] == "id" and query["id"] == QUERY_ID
    assert query["image_url"] == "/api/images/tops%2Fitem-05.jpg"
    assert client.get(query["image_url"]).status_code == 200


def test_search_by_ref_repeats_an_upload(client: TestClient) -> None:
    photo = make_photo(4242)  # not in the catalogue
    first = upload(client, photo, k="5")
    ref = first.json()["query"]["ref"]
    again = client.post("/api/search", json={"ref": ref, "k": 5})
    assert again.status_code == 200, again.text
    assert again.json()["query"]["type"] == "ref" and again.json()["query"]["ref"] == ref
    assert [(r["id"], round(r["score"], 5)) for r in again.json()["results"]] == [
        (r["id"], round(r["score"], 5)) for r in first.json()["results"]
    ]
    assert client.get(f"/api/queries/{ref}/image").content == photo


def test_an_expired_ref_asks_for_the_photo_again(catalog: Catalog, workdir: Path, unchanged) -> None:
    with TestClient(create_app(catalog, settings(workdir, query_cache=1, query_store_bytes=0))) as forgetful:
        old = upload(forgetful, make_photo(501)).json()["query"]["ref"]
        upload(forgetful, make_photo(502))  # pushes the first out of a one-item cache
        assert_error(forgetful.post("/api/search", json={"ref": old}), 404, "not_found", "upload it again")
        assert_error(forgetful.get(f"/api/queries/{old}/image"), 404, "not_found", "upload it again")
        unchanged(forgetful)


def test_a_shared_link_outlives_a_restart_within_the_disk_limits(catalog: Catalog, workdir: Path) -> None:
    import os
    import time

    from lookalike.api.query_store import QueryStore

    folder = workdir / "restart"
    limits = {"query_cache": 1, "query_store_bytes": 10 * 1024 * 1024, "query_store_days": 30.0}
    photo = make_photo(601)
    with TestClient(create_app(catalog, settings(workdir, **limits), uploads_dir=folder / "u")) as before:
        first = upload(before, photo).json()
    store = before.app.state.lookalike.queries.store
    assert isinstance(store, QueryStore) and store.get(first["query"]["ref"]) == photo
    with TestClient(create_app(catalog, settings(workdir, **limits), uploads_dir=folder / "u")) as after:
        again = after.post("/api/search", json={"ref": first["query"]["ref"], "k": 3})  # a new process
        assert again.status_code == 200 and result_ids(again) == [r["id"] for r in first["results"][:3]]
        assert after.get(f"/api/queries/{first['query']['ref']}/image").content == photo
        assert after.get("/api/queries/..%2f..%2fsecret/image").status_code == 404  # a ref, or nothing
    # the limits: past its age a query is gone; past the size the oldest go first
    path = store.folder / f"{first['query']['ref']}.query"
    old = time.time() - 31 * 86400
    os.utime(path, (old, old))
    assert store.get(first["query"]["ref"]) is None and not path.exists()
    small = QueryStore(workdir / "small-store", max_bytes=2 * len(photo) + 10, max_days=30)
    refs = [f"{n:024x}" for n in range(3)]
    for n, ref in enumerate(refs):
        small.put(ref, photo)
        stamp = time.time() - 100 + n  # in the order written
        os.utime(small.folder / f"{ref}.query", (stamp, stamp))
    small.put(f"{9:024x}", photo)
    assert [small.get(ref) is not None for ref in refs] == [False, False, True]
    assert small.get("../../etc/passwd") is None


def test_search_by_url_from_an_allowed_server(client: TestClient, server: Server) -> None:
    response = client.post("/api/search", json={"url": server.url("/photo.jpg"), "k": 3})
    assert result_ids(response)[0] == QUERY_ID
    body = response.json()
    assert body["query"]["type"] == "url" and body["query"]["url"] == server.url("/photo.jpg")
    assert {"fetch", "decode", "embed", "search", "total"} <= set(body["took_ms"])
    assert client.get(body["query"]["image_url"]).content == server.photo
    redirected = client.post("/api/search", json={"url": server.url("/to-photo"), "k": 3})  # a local redirect
    assert result_ids(redirected) == result_ids(response)


# ------------------------------------------------------------------------------------------------ bad inputs
@dataclass
class Bad:
    """One bad request: how to send it (to the main app unless ``app`` says otherwise) and what must come back."""

    send: Callable[[TestClient, Server], httpx.Response]
    status: int
    code: str
    words: tuple[str, ...] = ()
    app: str = "client"
    reason: str | None = None
    """The finer cause the page words its message by (``error.reason``), where there is one."""


def _upload(data: bytes, **form: str) -> Callable[[TestClient, Server], httpx.Response]:
    return lambda c, s: upload(c, data, **form)


def _json(body: Any) -> Callable[[TestClient, Server], httpx.Response]:
    return lambda c, s: c.post("/api/search", json=body)


def _raw(content: bytes, content_type: str | None) -> Callable[[TestClient, Server], httpx.Response]:
    headers = {"content-type": content_type} if content_type else {}
    return lambda c, s: c.post("/api/search", content=content, headers=headers)


def _url(make: Callable[[Server], str]) -> Callable[[TestClient, Server], httpx.Response]:
    return lambda c, s: c.post("/api/search", json={"url": make(s)})


PHOTO = make_photo(7)
TRUNCATED = make_photo(7)[:600]
BOMB = crafted_png(30_000, 30_000)  # 900 megapixels: Pillow's own guard refuses it while reading the header
OVER_MAX_PIXELS = crafted_png(8_000, 6_000)  # 48 megapixels: under Pillow's guard, over max_pixels
NOT_AN_IMAGE = b"hello, I am a text file\n" * 20
CLOSED_PORT = free_port()

BAD_INPUTS: dict[str, Bad] = {
    # -- the image itself
    "empty file": Bad(_upload(b""), 400, "bad_image", ("empty",)),
    "truncated jpeg": Bad(_upload(TRUNCATED), 400, "bad_image", ("truncated",)),
    "text file": Bad(_upload(NOT_AN_IMAGE, name="notes.txt"), 400, "bad_image", ("not an image",)),
    "html upload": Bad(_upload(b"<html><body>hi</body></html>"), 400, "bad_image", ("html",)),
    "png bomb upload": Bad(_upload(BOMB), 400, "bad_image", ("too large",)),
    "png bomb base64": Bad(_json({"image_base64": b64(BOMB)}), 400, "bad_image", ("too large",)),
    "png over max_pixels": Bad(_upload(OVER_MAX_PIXELS), 400, "bad_image", ("8000x6000", "limit")),
    "empty base64": Bad(_json({"image_base64": ""}), 400, "bad_image", ("empty",)),
    "invalid base64": Bad(_json({"image_base64": "not base64 at all!"}), 400, "bad_image", ("base64",)),
    "base64 of text": Bad(_json({"image_base64": b64(NOT_AN_IMAGE)}), 400, "bad_image", ("not an image",)),
    # -- sizes: the small app accepts 50 000-byte images in bodies of at most 132 202 bytes
    "upload over max_upload_bytes": Bad(
        _upload(PHOTO + b"\0" * SMALL_MAX_BYTES), 413, "too_large", ("bytes", "50,000"), app="small"
    ),
    "base64 over max_upload_bytes": Bad(
        _json({"image_base64": b64(b"\0" * (SMALL_MAX_BYTES + 1))}), 413, "too_large", ("50,000",), app="small"
    ),
    "content-length over the body limit": Bad(
        _upload(b"\0" * 300_000), 413, "too_large", ("request body exceeds", "132,202"), app="small"
    ),
    "streamed multipart over the body limit": Bad(
        lambda c, s: c.post(
            "/api/search",
            content=chunked(multipart({"image": ("big.jpg", b"\0" * 300_000, "image/jpeg")})),
            headers={"content-type": "multipart/form-data; boundary=lookalike-test"},
        ),
        413,
        "too_large",
        ("request body exceeds",),
        app="small",
    ),
    "streamed json over the body limit": Bad(
        lambda c, s: c.post(
            "/api/search",
            content=chunked(json.dumps({"image_base64": b64(b"\0" * 300_000)}).encode()),
            headers={"content-type": "application/json"},
        ),
        413,
        "too_large",
        ("request body exceeds",),
        app="small",
    ),
    # -- what to search with
    "unknown id": Bad(_json({"id": "tops/no-such-item.jpg"}), 404, "not_found", ("tops/no-such-item.jpg",)),
    "unknown ref": Bad(_json({"ref": "0123456789abcdef01234567"}), 404, "not_found", ("upload it again",)),
    "no query field": Bad(_json({"k": 3}), 422, "bad_request", ("exactly one", "none")),
    "two query fields": Bad(
        _json({"id": QUERY_ID, "image_base64": b64(PHOTO)}), 422, "bad_request", ("exactly one", "image_base64, id")
    ),
    "extra json field": Bad(_json({"id": QUERY_ID, "color": "red"}), 422, "bad_request", ("color", "extra")),
    "extra form field": Bad(_upload(PHOTO, color="red"), 400, "bad_request", ("color", "unknown")),
    "multipart without image": Bad(
        lambda c, s: c.post("/api/search", data={"k": "3"}, files={"photo": ("a.jpg", PHOTO, "image/jpeg")}),
        400,
        "bad_request",
        ("image",),
    ),
    "multipart image as text": Bad(
        lambda c, s: c.post(
            "/api/search",
            content=multipart({"image": (None, b"just text", None)}),
            headers={"content-type": "multipart/form-data; boundary=lookalike-test"},
        ),
        400,
        "bad_request",
        ("image",),
    ),
    "two files": Bad(
        lambda c, s: c.post(
            "/api/search",
            files=[("image", ("a.jpg", PHOTO, "image/jpeg")), ("image", ("b.jpg", PHOTO, "image/jpeg"))],
        ),
        400,
        "bad_request",
        ("files",),
    ),
    # -- k
    "multipart k=0": Bad(_upload(PHOTO, k="0"), 400, "bad_request", ("k", "between 1 and 100")),
    "multipart k=101": Bad(_upload(PHOTO, k="101"), 400, "bad_request", ("k", "between 1 and 100")),
    "multipart k=abc": Bad(_upload(PHOTO, k="abc"), 400, "bad_request", ("k", "integer", "abc")),
    "multipart min_score=high": Bad(_upload(PHOTO, min_score="high"), 400, "bad_request", ("min_score", "number")),
    "json k=0": Bad(_json({"id": QUERY_ID, "k": 0}), 422, "bad_request", ("k", "greater than or equal to 1")),
    "json k=101": Bad(_json({"id": QUERY_ID, "k": 101}), 422, "bad_request", ("k", "less than or equal to 100")),
    "json k=abc": Bad(_json({"id": QUERY_ID, "k": "abc"}), 422, "bad_request", ("k", "integer")),
    "json k=2.5": Bad(_json({"id": QUERY_ID, "k": 2.5}), 422, "bad_request", ("k", "integer")),
    # -- filters
    "multipart filter not json": Bad(_upload(PHOTO, filter="folder=tops"), 400, "bad_filter", ("filter", "json")),
    "multipart filter not an object": Bad(_upload(PHOTO, filter='["tops"]'), 400, "bad_filter", ("filter", "object")),
    "json filter not an object": Bad(
        _json({"id": QUERY_ID, "filter": "folder=tops"}), 422, "bad_request", ("filter", "object")
    ),
    "range with a non-number": Bad(
        _json({"id": QUERY_ID, "filter": {"price": {"lt": "cheap"}}}), 400, "bad_filter", ("price", "number")
    ),
    "unknown operator": Bad(
        _json({"id": QUERY_ID, "filter": {"price": {"like": 5}}}), 400, "bad_filter", ("price", "like")
    ),
    "empty one-of": Bad(_json({"id": QUERY_ID, "filter": {"folder": []}}), 400, "bad_filter", ("folder",)),
    "bad field name": Bad(_json({"id": QUERY_ID, "filter": {"a'b": 1}}), 400, "bad_filter", ("field",)),
    "filter on an upload": Bad(
        _upload(PHOTO, filter='{"folder": {"between": [1, 2]}}'), 400, "bad_filter", ("between",)
    ),
    # -- the body
    "malformed json": Bad(_raw(b'{"id": ', "application/json"), 422, "bad_request", ("json",)),
    "json array body": Bad(_json([QUERY_ID]), 422, "bad_request", ("object",)),
    "empty body": Bad(_raw(b"", "application/json"), 422, "bad_request", ("json",)),
    "text/plain body": Bad(_raw(b"find me shoes", "text/plain"), 422, "bad_request", ("json",)),
    "form-urlencoded body": Bad(
        _raw(b"id=tops%2Fitem-05.jpg", "application/x-www-form-urlencoded"), 422, "bad_request", ("json",)
    ),
    "multipart without boundary": Bad(_raw(b"--x\r\n", "multipart/form-data"), 400, "bad_request", ("boundary",)),
    # -- URLs, without an allow list
    "loopback url": Bad(_url(lambda s: s.url("/photo.jpg")), 400, "blocked_url", ("127.0.0.1", "loopback"), "strict"),
    "localhost url": Bad(_url(lambda s: "http://localhost/photo.jpg"), 400, "blocked_url", ("localhost",), "strict"),
    "metadata service url": Bad(
        _url(lambda s: "http://169.254.169.254/latest/meta-data"), 400, "blocked_url", ("link-local",), "strict"
    ),
    "private url": Bad(_url(lambda s: "http://10.0.0.1/"), 400, "blocked_url", ("private",), "strict"),
    "ipv6 loopback url": Bad(_url(lambda s: "http://[::1]/"), 400, "blocked_url", ("loopback",), "strict"),
    "ftp url": Bad(_url(lambda s: "ftp://example.com/a.jpg"), 400, "blocked_url", ("scheme", "ftp"), "strict"),
    "file url": Bad(_url(lambda s: "file:///etc/passwd"), 400, "blocked_url", ("scheme", "file"), "strict"),
    "not a url": Bad(_url(lambda s: "shoes.jpg"), 400, "blocked_url", ("scheme",), "strict"),
    # -- URLs the allow list lets through to the local server, and what it answers
    "redirect to the metadata service": Bad(
        _url(lambda s: s.url("/to-metadata")), 400, "blocked_url", ("169.254.169.254", "link-local")
    ),
    "redirect to a private address": Bad(_url(lambda s: s.url("/to-private")), 400, "blocked_url", ("10.0.0.1",)),
    "unreachable url": Bad(
        _url(lambda s: f"http://127.0.0.1:{CLOSED_PORT}/photo.jpg"),
        400,
        "fetch_failed",
        (str(CLOSED_PORT),),
        reason="unreachable",
    ),
    "404 url": Bad(_url(lambda s: s.url("/missing.jpg")), 400, "fetch_failed", ("404",), reason="not_found"),
    "html url": Bad(_url(lambda s: s.url("/page.html")), 400, "fetch_failed", ("text/html",), reason="not_an_image"),
    "slow url": Bad(_url(lambda s: s.url("/slow.jpg")), 400, "fetch_failed", ("timed out",), reason="timeout"),
    "huge url, declared": Bad(
        _url(lambda s: s.url("/huge-declared.jpg")), 400, "fetch_failed", ("too large",), reason="too_large"
    ),
    "huge url, streamed": Bad(
        _url(lambda s: s.url("/huge-streamed.jpg")), 400, "fetch_failed", ("too large",), reason="too_large"
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_search_input_is_a_clear_4xx_and_changes_nothing(case: Bad, request, server: Server, unchanged) -> None:
    test_client: TestClient = request.getfixturevalue(case.app)
    started = time.perf_counter()
    response = case.send(test_client, server)
    elapsed = time.perf_counter() - started
    error = assert_error(response, case.status, case.code, *case.words)
    assert error.get("reason") == case.reason
    assert elapsed < URL_TIMEOUT * 3 + 1.5, f"a bad input took {elapsed:.1f} s to refuse"
    unchanged(test_client)


def test_a_decompression_bomb_is_refused_without_decoding(client: TestClient, unchanged, pillow_decodes) -> None:
    for _ in range(5):
        assert_error(upload(client, BOMB), 400, "bad_image", "too large")
    assert pillow_decodes == []  # refused from the header: decoding 900 megapixels would take gigabytes
    assert upload(client, PHOTO).status_code == 200
    assert pillow_decodes, "the spy sees the decodes a real upload makes"
    unchanged(client)


# ------------------------------------------------------------------------------------------------ reading
def test_get_item_by_plain_and_percent_encoded_id(client: TestClient) -> None:
    for path in ("/api/items/tops/item-01.jpg", "/api/items/tops%2Fitem-01.jpg"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": "tops/item-01.jpg",
            "metadata": {"folder": "tops"},
            "image_url": "/api/images/tops%2Fitem-01.jpg",
            "thumbnail_url": "/api/images/tops%2Fitem-01.jpg?size=320",
        }
    assert_error(client.get("/api/items/tops/item-99.jpg"), 404, "not_found", "tops/item-99.jpg")
    assert_error(client.get("/api/items/tops%2Fitem-99.jpg"), 404, "not_found", "tops/item-99.jpg")


def test_get_image_original_thumbnail_and_etag(client: TestClient, photos: Path) -> None:
    original = client.get("/api/images/tops%2Fitem-01.jpg")
    assert original.status_code == 200
    assert original.content == (photos / "tops" / "item-01.jpg").read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert "max-age" in original.headers["cache-control"]
    etag = original.headers["etag"]
    assert etag and client.get("/api/images/tops/item-01.jpg").headers["etag"] == etag

    cached = client.get("/api/images/tops%2Fitem-01.jpg", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag

    thumbnail = client.get("/api/images/tops%2Fitem-01.jpg?size=128")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.headers["etag"] != etag and "max-age" in thumbnail.headers["cache-control"]
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.format == "JPEG" and max(image.size) <= 128 and max(image.size) >= 100
    again = client.get("/api/images/tops%2Fitem-01.jpg?size=128", headers={"If-None-Match": thumbnail.headers["etag"]})
    assert again.status_code == 304

    for size in ("0", "63", "1025", "big"):
        assert_error(client.get(f"/api/images/tops%2Fitem-01.jpg?size={size}"), 422, "bad_request", "size")
    assert_error(client.get("/api/images/tops%2Fitem-99.jpg"), 404, "not_found", "item-99")


def test_facets_info_and_health(client: TestClient) -> None:
    assert client.get("/api/facets").json() == {"fields": {"folder": {"tops": 6, "shoes": 6}}, "ranges": {}}
    info = client.get("/api/info").json()
    assert info["model"] == "efficientnet-lite0" and info["items"] == 12
    assert info["dim"] > 0 and info["kind"] == "exact" and info["metric"]
    assert info["read_only"] is True
    assert client.get("/health").json() == {"status": "ok", "items": 12, "model": "efficientnet-lite0"}


def test_metrics_count_requests_and_time_each_stage(client: TestClient, query_photo: bytes) -> None:
    assert upload(client, query_photo).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'lookalike_requests_total{method="POST",route="/api/search",status="200"}' in text
    for stage in ("decode", "embed", "search"):
        assert f'lookalike_stage_seconds_count{{stage="{stage}"}}' in text
    assert "lookalike_request_seconds_bucket" in text
    client.get("/static/app.js")
    client.get("/no/such/page")
    text = client.get("/metrics").text
    assert 'route="/static",status="200"' in text  # static files under their mount, not "unmatched"
    assert 'route="unmatched",status="404"' in text


def test_docs_and_openapi_document_both_search_bodies(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    for page in (docs.text, client.get("/redoc").text):  # no CDN: the files come from the package
        files = re.findall(r'(?:src|href)="([^"]+)"', page)  # scripts, styles, icon
        assert files and all(name.startswith("/static-offline-docs/") for name in files), files
        assert all(client.get(name).status_code == 200 for name in files)
        assert "cdn.jsdelivr" not in page and "unpkg" not in page
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/search"]["post"]["requestBody"]
    assert {"application/json", "multipart/form-data"} <= set(body["content"])
    assert "image" in body["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"image_base64", "url", "id", "ref", "k", "filter"} <= set(
        body["content"]["application/json"]["schema"]["properties"]
    )
    for path in ("/api/items", "/api/items/{item_id}", "/api/images/{item_id}", "/postImage", "/postURL", "/health"):
        assert path in schema["paths"], path


def test_the_search_page(client: TestClient) -> None:
    response = client.get("/")
    if not (STATIC_DIR / "index.html").is_file():
        assert_error(response, 404, "not_found", "index.html")  # not a 500
        pytest.skip("src/lookalike/web/static/index.html is not there yet")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert "<html" in response.text.lower()


def test_unknown_routes_and_methods(client: TestClient) -> None:
    assert_error(client.get("/api/nothing-here"), 404, "not_found")
    assert_error(client.get("/api/search"), 405, "method_not_allowed")
    assert_error(client.put("/api/facets"), 405, "method_not_allowed")


# ------------------------------------------------------------------------------------------------ writing
@pytest.fixture(scope="module")
def writable(workdir: Path, lite0) -> Iterator[Catalog]:
    catalog = build_catalogue(workdir / "catalogue-w", workdir / "index-w")
    yield catalog
    catalog.close()


@pytest.fixture(scope="module")
def uploads(workdir: Path) -> Path:
    return workdir / "uploads"


@pytest.fixture(scope="module")
def writer(writable: Catalog, workdir: Path, uploads: Path) -> Iterator[TestClient]:
    app = create_app(writable, settings(workdir, api_key=API_KEY), uploads_dir=uploads)
    with TestClient(app) as test_client:
        yield test_client


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def add(test_client: TestClient, data: bytes, headers: dict[str, str], **form: str) -> httpx.Response:
    return test_client.post("/api/items", files={"image": ("new.jpg", data, "image/jpeg")}, data=form, headers=headers)


def test_writes_on_a_read_only_server_are_forbidden(client: TestClient, catalog: Catalog, unchanged) -> None:
    assert_error(add(client, make_photo(900), {}), 403, "read_only", "read-only", "LOOKALIKE_API_KEY")
    assert_error(add(client, make_photo(900), {"X-API-Key": API_KEY}), 403, "read_only")
    assert_error(client.delete(f"/api/items/{QUERY_ID}"), 403, "read_only", "read-only")
    assert_error(client.delete(f"/api/items/{QUERY_ID}", headers={"X-API-Key": "x"}), 403, "read_only")
    assert catalog.index.get(QUERY_ID) is not None
    unchanged(client)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_KEY + "x"},
        {"X-API-Key": ""},
    ],
    ids=["missing", "wrong x-api-key", "wrong bearer", "not bearer", "empty"],
)
def test_writes_need_the_right_key(writer: TestClient, writable: Catalog, uploads: Path, headers) -> None:
    before, stored = writable.index.count(), listing(uploads)
    assert_error(add(writer, make_photo(901), headers), 401, "unauthorized", "API key")
    assert_error(writer.delete("/api/items/shoes/item-00.jpg", headers=headers), 401, "unauthorized", "API key")
    assert writable.index.count() == before and writable.index.get("shoes/item-00.jpg") is not None
    assert listing(uploads) == stored


def test_add_search_and_delete_an_item(writer: TestClient, writable: Catalog, uploads: Path) -> None:
    before = writable.index.count()
    photo = make_photo(777)
    response = add(writer, photo, {"X-API-Key": API_KEY}, id="new/item-777.jpg", metadata='{"folder": "new"}')
    assert response.status_code == 201, response.text
    assert response.json() == {
        "id": "new/item-777.jpg",
        "metadata": {"folder": "new"},
        "image_url": "/api/images/new%2Fitem-777.jpg",
        "thumbnail_url": "/api/images/new%2Fitem-777.jpg?size=320",
    }
    assert writable.index.count() == before + 1
    assert writer.get("/api/info").json()["read_only"] is False

    best = upload(writer, photo, k="3").json()["results"][0]  # searchable right away
    assert best["id"] == "new/item-777.jpg" and best["score"] > 0.99
    stored = [path for path in uploads.iterdir() if path.read_bytes() == photo]
    assert len(stored) == 1 and stored[0].suffix == ".jpeg"
    served = writer.get("/api/images/new%2Fitem-777.jpg")
    assert served.status_code == 200 and served.content == photo
    assert writer.get("/api/facets").json()["fields"]["folder"]["new"] == 1

    deleted = writer.delete("/api/items/new/item-777.jpg", headers={"X-API-Key": API_KEY})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "new/item-777.jpg"}
    assert writable.index.count() == before
    assert_error(writer.get("/api/items/new/item-777.jpg"), 404, "not_found")
    assert "new/item-777.jpg" not in result_ids(upload(writer, photo, k="12"))
    assert_error(
        writer.delete("/api/items/new/item-777.jpg", headers={"X-API-Key": API_KEY}), 404, "not_found", "item-777"
    )


def test_add_and_delete_with_a_bearer_token_and_no_id(writer: TestClient, writable: Catalog) -> None:
    before = writable.index.count()
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    photo = make_photo(778)
    response = add(writer, photo, bearer)
    assert response.status_code == 201, response.text
    item_id = response.json()["id"]
    assert item_id and response.json()["metadata"] == {}  # the id defaults to the content hash
    assert result_ids(upload(writer, photo, k="1")) == [item_id]
    assert writer.delete(f"/api/items/{item_id}", headers=bearer).status_code == 200
    assert writable.index.count() == before
    assert item_id not in result_ids(upload(writer, photo, k="12"))


@pytest.mark.parametrize(
    ("data", "form", "status", "code", "words"),
    [
        (make_photo(5)[:600], {}, 400, "bad_image", ("truncated",)),
        (NOT_AN_IMAGE, {}, 400, "bad_image", ("not an image",)),
        (b"", {}, 400, "bad_image", ("empty",)),
        (BOMB, {}, 400, "bad_image", ("too large",)),
        (make_photo(6), {"metadata": "[1, 2]"}, 400, "bad_request", ("metadata", "object")),
        (make_photo(6), {"metadata": "{oops"}, 400, "bad_request", ("metadata", "json")),
        (make_photo(6), {"colour": "red"}, 400, "bad_request", ("colour",)),
    ],
    ids=["truncated", "text", "empty", "bomb", "metadata not object", "metadata not json", "unknown field"],
)
def test_adding_a_bad_image_changes_nothing(
    writer: TestClient, writable: Catalog, uploads: Path, data, form, status, code, words
) -> None:
    before, stored = writable.index.count(), listing(uploads)
    assert_error(add(writer, data, {"X-API-Key": API_KEY}, **form), status, code, *words)
    assert writable.index.count() == before
    assert listing(uploads) == stored
    assert writer.post("/api/search", json={"id": "shoes/item-00.jpg", "k": 3}).status_code == 200


def test_adding_without_an_image_field(writer: TestClient, writable: Catalog) -> None:
    before = writable.index.count()
    response = writer.post("/api/items", data={"id": "x"}, headers={"X-API-Key": API_KEY})
    assert_error(response, 400, "bad_request", "image")
    assert writable.index.count() == before


# ------------------------------------------------------------------------------------------------ CORS
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


def test_cors_preflight_is_answered(client: TestClient) -> None:
    response = client.options("/postImage", headers={"Origin": "http://example.com", **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://example.com")
    assert "POST" in response.headers["access-control-allow-methods"]
    simple = client.get("/api/facets", headers={"Origin": "http://example.com"})
    assert simple.headers["access-control-allow-origin"] in ("*", "http://example.com")


def test_cors_origins_are_configurable(catalog: Catalog, workdir: Path) -> None:
    app = create_app(catalog, settings(workdir, cors_origins=["http://shop.example"]))
    with TestClient(app) as restricted:
        allowed = restricted.options("/postImage", headers={"Origin": "http://shop.example", **PREFLIGHT})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://shop.example"
        refused = restricted.options("/postImage", headers={"Origin": "http://example.com", **PREFLIGHT})
        assert refused.status_code >= 400 and "access-control-allow-origin" not in refused.headers
        simple = restricted.get("/api/facets", headers={"Origin": "http://example.com"})
        assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
        private = {"Access-Control-Request-Private-Network": "true", **PREFLIGHT}
        allowed = restricted.options("/postImage", headers={"Origin": "http://shop.example", **private})
        assert allowed.headers["access-control-allow-private-network"] == "true"
        refused = restricted.options("/postImage", headers={"Origin": "http://example.com", **private})
        assert "access-control-allow-private-network" not in refused.headers  # only where CORS says yes
        plain = restricted.options("/postImage", headers={"Origin": "http://shop.example", **PREFLIGHT})
        assert "access-control-allow-private-network" not in plain.headers  # only when asked


# ------------------------------------------------------------------------------------------------ reference design
def test_post_image_answers_absolute_links(client: TestClient, query_photo: bytes) -> None:
    response = client.post("/postImage", json={"base64img": b64(query_photo), "k": "3"})
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert set(response.json()) == {"images"} and len(images) == 3
    assert images[0] == "http://testserver/api/images/tops%2Fitem-05.jpg"
    assert all(link.startswith("http://testserver/api/images/") for link in images)
    served = client.get(images[0])
    assert served.status_code == 200 and served.content == query_photo
    default_k = client.post("/postImage", json={"base64img": "data:image/jpeg;base64," + b64(query_photo)})
    assert default_k.json()["images"] == images  # k defaults to 3; a data: URL works too
    assert len(client.post("/postImage", json={"base64img": b64(query_photo), "k": 5}).json()["images"]) == 5


def test_post_url_answers_absolute_links(client: TestClient, server: Server) -> None:
    response = client.post("/postURL", json={"url": server.url("/photo.jpg"), "k": "4"})
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 4 and images[0] == "http://testserver/api/images/tops%2Fitem-05.jpg"


REFERENCE_BAD_INPUTS: dict[str, Bad] = {
    "bad base64": Bad(
        lambda c, s: c.post("/postImage", json={"base64img": "%%% not base64", "k": 3}), 400, "bad_image", ("base64",)
    ),
    "not an image": Bad(
        lambda c, s: c.post("/postImage", json={"base64img": b64(NOT_AN_IMAGE)}), 400, "bad_image", ("not an image",)
    ),
    "bomb": Bad(lambda c, s: c.post("/postImage", json={"base64img": b64(BOMB)}), 400, "bad_image", ("too large",)),
    "missing base64img": Bad(lambda c, s: c.post("/postImage", json={"k": 3}), 422, "bad_request", ("base64img",)),
    "k=0": Bad(lambda c, s: c.post("/postImage", json={"base64img": b64(PHOTO), "k": 0}), 422, "bad_request", ("k",)),
    "k=abc": Bad(
        lambda c, s: c.post("/postImage", json={"base64img": b64(PHOTO), "k": "abc"}), 422, "bad_request", ("k",)
    ),
    "malformed json": Bad(
        lambda c, s: c.post("/postImage", content=b"{", headers={"content-type": "application/json"}),
        422,
        "bad_request",
        ("json",),
    ),
    "too large, streamed": Bad(
        lambda c, s: c.post(
            "/postImage",
            content=chunked(json.dumps({"base64img": b64(b"\0" * 300_000)}).encode()),
            headers={"content-type": "application/json"},
        ),
        413,
        "too_large",
        ("request body exceeds",),
        app="small",
    ),
    "too large, declared": Bad(
        lambda c, s: c.post("/postImage", json={"base64img": b64(b"\0" * 300_000)}),
        413,
        "too_large",
        ("request body exceeds",),
        app="small",
    ),
    "blocked url": Bad(
        lambda c, s: c.post("/postURL", json={"url": "http://169.254.169.254/latest/meta-data", "k": 3}),
        400,
        "blocked_url",
        ("link-local",),
        app="strict",
    ),
    "loopback url": Bad(
        lambda c, s: c.post("/postURL", json={"url": s.url("/photo.jpg")}), 400, "blocked_url", ("loopback",), "strict"
    ),
    "file url": Bad(lambda c, s: c.post("/postURL", json={"url": "file:///etc/passwd"}), 400, "blocked_url", ("file",)),
    "html url": Bad(
        lambda c, s: c.post("/postURL", json={"url": s.url("/page.html")}), 400, "fetch_failed", ("text/html",)
    ),
}


@pytest.mark.parametrize("case", REFERENCE_BAD_INPUTS.values(), ids=REFERENCE_BAD_INPUTS.keys())
def test_reference_routes_refuse_bad_input(case: Bad, request, server: Server, unchanged) -> None:
    test_client: TestClient = request.getfixturevalue(case.app)
    assert_error(case.send(test_client, server), case.status, case.code, *case.words)
    unchanged(test_client)


# ------------------------------------------------------------------------------------------------ concurrency
def test_concurrent_searches_agree(client: TestClient, query_photo: bytes) -> None:
    other = (make_photo(3030), make_photo(3031))

    def search(i: int) -> tuple[int, list[tuple[str, float]]]:
        photo = query_photo if i % 2 == 0 else other[i % 4 // 2]
        response = upload(client, photo, k="5")
        assert response.status_code == 200, response.text
        return i, [(r["id"], r["score"]) for r in response.json()["results"]]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(search, range(20)))
    by_query: dict[int, list[list[tuple[str, float]]]] = {}
    for i, results in answers:
        by_query.setdefault(0 if i % 2 == 0 else 1 + i % 4 // 2, []).append(results)
    assert sorted(by_query) == [0, 1, 2] and sum(map(len, by_query.values())) == 20
    for results in by_query.values():
        first = results[0]
        for other_results in results[1:]:
            assert [i for i, _ in other_results] == [i for i, _ in first]
            assert [s for _, s in other_results] == pytest.approx([s for _, s in first], abs=1e-5)
    assert by_query[0][0][0][0] == QUERY_ID


def test_replacing_an_item_and_an_image_gone_from_disk(writer: TestClient, writable: Catalog, uploads: Path) -> None:
    key = {"X-API-Key": API_KEY}
    before = writable.index.count()
    assert add(writer, make_photo(780), key, id="swap.jpg").status_code == 201
    assert add(writer, make_photo(781), key, id="swap.jpg", metadata='{"v": 2}').status_code == 201
    assert writable.index.count() == before + 1  # the same id replaces, it does not duplicate
    assert writer.get("/api/items/swap.jpg").json()["metadata"] == {"v": 2}
    assert result_ids(upload(writer, make_photo(781), k="1")) == ["swap.jpg"]
    served = writer.get("/api/images/swap.jpg")
    assert served.content == make_photo(781)

    item = writable.index.get("swap.jpg")
    assert item is not None and item.location
    Path(item.location).unlink()
    assert_error(writer.get("/api/images/swap.jpg"), 404, "not_found", "no longer")
    assert_error(writer.get("/api/images/swap.jpg?size=128"), 404, "not_found", "no longer")
    assert writer.delete("/api/items/swap.jpg", headers=key).status_code == 200
    assert writable.index.count() == before


# ------------------------------------------------------------------------------------- paging and feedback
def test_offset_pages_and_says_where_the_next_page_starts(client: TestClient) -> None:
    everything = result_ids(client.post("/api/search", json={"id": QUERY_ID, "k": 11}))
    first = client.post("/api/search", json={"id": QUERY_ID, "k": 5}).json()
    assert first["offset"] == 0 and first["next_offset"] == 5
    second = client.post("/api/search", json={"id": QUERY_ID, "k": 5, "offset": 5}).json()
    last = client.post("/api/search", json={"id": QUERY_ID, "k": 5, "offset": 10}).json()
    assert [r["id"] for r in first["results"] + second["results"] + last["results"]] == everything
    assert second["next_offset"] == 10 and last["next_offset"] is None  # 11 others: the last page has one
    paged_upload = upload(client, make_photo(77), k="3", offset="3")
    assert paged_upload.status_code == 200 and paged_upload.json()["offset"] == 3
    assert_error(upload(client, make_photo(77), offset="-1"), 400, "bad_request", "offset")
    assert_error(client.post("/api/search", json={"id": QUERY_ID, "offset": 5000}), 422, "bad_request", "offset")


def test_positive_and_negative_feedback_steer_and_leave_the_items_out(client: TestClient) -> None:
    plain = result_ids(client.post("/api/search", json={"id": QUERY_ID, "k": 11}))
    rejected = plain[0]
    steered = client.post("/api/search", json={"id": QUERY_ID, "k": 10, "negative": [rejected]})
    assert rejected not in result_ids(steered) and QUERY_ID not in result_ids(steered)
    liked = client.post("/api/search", json={"positive": [QUERY_ID], "k": 3})
    body = liked.json()
    assert body["query"]["type"] == "feedback" and QUERY_ID not in result_ids(liked)
    assert result_ids(liked) == plain[:3]  # the positive alone is the query: "more like this" by another road
    assert_error(client.post("/api/search", json={"negative": [QUERY_ID]}), 422, "bad_request", "positive")
    assert_error(client.post("/api/search", json={"id": QUERY_ID, "negative": ["nope"]}), 404, "not_found", "nope")
    too_many = {"id": QUERY_ID, "positive": [QUERY_ID] * 21}
    assert_error(client.post("/api/search", json=too_many), 422, "bad_request", "positive")
