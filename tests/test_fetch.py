"""fetch_bytes and AddressGuard against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from lookalike.errors import FetchError, SourceError
from lookalike.sources.fetch import AddressGuard, fetch_bytes


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
BIG = b"\x89PNG" + b"x" * 5000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str | None = "image/png", **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        route = parts.path
        if route == "/ok.png":
            self._send(200, PNG)
        elif route == "/octet":
            self._send(200, PNG, "application/octet-stream")
        elif route == "/untyped":
            self._send(200, PNG, None)
        elif route == "/page.html":
            self._send(200, b"<html></html>", "text/html; charset=utf-8")
        elif route == "/big":
            self._send(200, BIG)
        elif route == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                piece = b"y" * 1000
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif route.startswith("/hop/"):  # /hop/N answers after exactly N redirects
            remaining = int(route.rsplit("/", 1)[1])
            if remaining == 0:
                self._send(200, PNG)
            else:
                self._send(302, b"", None, Location=f"/hop/{remaining - 1}")
        elif route == "/to":
            self._send(302, b"", None, Location=query["url"][0])
        elif route == "/slow":
            time.sleep(2.0)
            self._send(200, PNG)
        elif route == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(404, b"not found", "text/plain")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up early (size limit, timeout) break the pipe: expected here


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


LOCAL = AddressGuard(allow=["127.0.0.1"])


def test_ok_returns_exact_bytes(server: str) -> None:
    assert fetch_bytes(f"{server}/ok.png") == PNG


def test_octet_stream_and_missing_content_type_are_accepted(server: str) -> None:
    assert fetch_bytes(f"{server}/octet") == PNG
    assert fetch_bytes(f"{server}/untyped") == PNG


def test_404_names_status_and_url(server: str) -> None:
    with pytest.raises(FetchError, match=r"404.*/missing\.png"):
        fetch_bytes(f"{server}/missing.png")


def test_fetch_error_is_a_source_error(server: str) -> None:
    with pytest.raises(SourceError):
        fetch_bytes(f"{server}/missing.png")


def test_too_large_by_content_length(server: str) -> None:
    with pytest.raises(FetchError, match="Content-Length 5004"):
        fetch_bytes(f"{server}/big", max_bytes=1000)


def test_too_large_while_streaming_chunked(server: str) -> None:
    with pytest.raises(FetchError, match="more than 2500 bytes"):
        fetch_bytes(f"{server}/chunked", max_bytes=2500)
    assert len(fetch_bytes(f"{server}/chunked", max_bytes=10_000)) == 10_000


def test_wrong_content_type(server: str) -> None:
    with pytest.raises(FetchError, match="text/html"):
        fetch_bytes(f"{server}/page.html")
    # ...unless the caller accepts it
    assert fetch_bytes(f"{server}/page.html", accept_content_types=("text/",)) == b"<html></html>"


def test_redirects_are_followed(server: str) -> None:
    assert fetch_bytes(f"{server}/hop/3", max_redirects=3) == PNG


def test_redirect_chain_longer_than_max(server: str) -> None:
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_bytes(f"{server}/hop/3", max_redirects=2)
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_bytes(f"{server}/hop/1", max_redirects=0)
    assert fetch_bytes(f"{server}/hop/0", max_redirects=0) == PNG


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:9/x.png", "loopback"),
        ("http://10.0.0.1/x.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:9/x.png", "loopback"),
        ("http://0.0.0.0:9/x.png", "unspecified"),
        ("http://[::ffff:127.0.0.1]:9/x.png", "loopback"),
        ("http://224.0.0.1/x.png", "multicast"),
        ("http://localhost:9/x.png", "loopback"),
        ("http://127.1:9/x.png", "loopback"),  # legacy numeric forms resolve like the connection would
        ("http://2130706433:9/x.png", "loopback"),
        ("http://192.168.0.10/x.png", "private"),
        ("http://[fd00::1]/x.png", "private"),
    ],
)
def test_guard_blocks_internal_addresses(url: str, kind: str) -> None:
    guard = AddressGuard()
    with pytest.raises(FetchError, match=f"refusing.*{kind}"):
        guard.check(url)
    with pytest.raises(FetchError, match="refusing"):
        fetch_bytes(url, guard=guard, timeout=0.5)


def test_guard_blocks_localhost_by_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = socket.getaddrinfo

    def spy(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    with pytest.raises(FetchError, match=r"'localhost' resolves to .*loopback"):
        AddressGuard().check("http://localhost/x.png")
    assert calls == ["localhost"]


def test_guard_blocks_host_if_any_address_is_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(FetchError, match=r"192\.168\.1\.5.*private"):
        AddressGuard().check("https://shop.example/x.png")


def test_guard_allows_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    AddressGuard().check("https://shop.example/x.png")  # no exception


def test_guard_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(FetchError, match=r"cannot resolve host 'nowhere\.example'"):
        AddressGuard().check("http://nowhere.example/x.png")


def test_dns_failure_without_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(FetchError, match=r"cannot resolve host of 'http://nowhere\.example/x\.png'"):
        fetch_bytes("http://nowhere.example/x.png")


def test_guard_allow_list_admits_local_server(server: str) -> None:
    assert fetch_bytes(f"{server}/ok.png", guard=LOCAL) == PNG
    assert fetch_bytes(f"{server}/ok.png", guard=AddressGuard(allow=["127.0.0.0/8"])) == PNG
    with pytest.raises(FetchError, match="refusing"):
        fetch_bytes(f"{server}/ok.png", guard=AddressGuard(allow=["10.0.0.0/8"]))


def test_guard_allow_list_by_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("an allowed host name is not resolved")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    AddressGuard(allow=["images.internal"]).check("http://IMAGES.internal./x.png")


def test_guard_checks_every_redirect_hop(server: str) -> None:
    # The first hop is allowed (127.0.0.1 is on the allow list), the redirect target is not.
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://[::1]/x.png"):
        with pytest.raises(FetchError, match="refusing"):
            fetch_bytes(f"{server}/to?url={target}", guard=LOCAL, timeout=0.5)
    # A redirect to an allowed address is followed.
    assert fetch_bytes(f"{server}/to?url={server}/ok.png", guard=LOCAL) == PNG


@pytest.mark.parametrize("url", ["ftp://example.com/x.png", "file:///etc/passwd", "gopher://x/", "/etc/passwd"])
def test_unsupported_schemes(url: str) -> None:
    with pytest.raises(FetchError, match="unsupported URL scheme"):
        fetch_bytes(url)
    with pytest.raises(FetchError, match="unsupported URL scheme"):
        AddressGuard().check(url)


def test_redirect_to_unsupported_scheme_is_refused(server: str) -> None:
    with pytest.raises(FetchError, match="unsupported URL scheme 'file'"):
        fetch_bytes(f"{server}/to?url=file:///etc/passwd")


def test_slow_server_times_out(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_bytes(f"{server}/slow", timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_dripping_server_hits_total_timeout(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_bytes(f"{server}/drip", timeout=0.5, total_timeout=0.6)
    assert time.monotonic() - started < 1.5


def test_connection_refused(server: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=f"cannot fetch 'http://127.0.0.1:{port}/x.png'"):
        fetch_bytes(f"http://127.0.0.1:{port}/x.png")


def test_caller_client_is_used_and_left_open(server: str) -> None:
    with httpx.Client() as client:
        assert fetch_bytes(f"{server}/ok.png", client=client) == PNG
        assert not client.is_closed
