"""fetch_bytes and AddressGuard against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import functools
import gzip
import io
import ipaddress
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hostile import corpus
from PIL import Image

from lookalike.errors import BlockedURLError, FetchError, SourceError
from lookalike.sources import decoding
from lookalike.sources.fetch import MAX_URL_LENGTH, AddressGuard, fetch_bytes

try:
    import brotli
except ImportError:  # optional; the brotli tests skip without it
    brotli = None

MIB = 1024 * 1024


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
BIG = b"\x89PNG" + b"x" * 5000
BOMB_EXPANDS_TO = 256 * MIB


@functools.cache
def gzip_bomb() -> bytes:
    """256 MiB of zeros in ~260 KB of gzip."""
    return corpus.gzip_of_zeros(BOMB_EXPANDS_TO)


@functools.cache
def brotli_bomb() -> bytes:
    """256 MiB of zeros in ~50 KB of brotli (quality 1, so it is made in a few milliseconds)."""
    assert brotli is not None
    return corpus.brotli_of_zeros(BOMB_EXPANDS_TO)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _corrupt_gzip() -> bytes:
    body = bytearray(gzip.compress(BIG))
    body[12:20] = b"\xff" * 8  # garbage where the deflate data starts
    return bytes(body)


# Bodies for /encoded?body=NAME&as=CONTENT-ENCODING; made on first use (brotli may not be installed).
ENCODED: dict[str, Callable[[], bytes]] = {
    "png": lambda: PNG,
    "gzip-png": lambda: gzip.compress(PNG),
    "zlib-png": lambda: zlib.compress(PNG),
    "raw-deflate-png": lambda: _raw_deflate(PNG),
    "brotli-png": lambda: brotli.compress(PNG),
    "gzip-big": lambda: gzip.compress(BIG),
    "gzip-truncated": lambda: gzip.compress(BIG)[:-12],
    "gzip-corrupt": _corrupt_gzip,
    "gzip-bomb": gzip_bomb,
    "brotli-bomb": brotli_bomb,
}


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
        elif route == "/encoded":  # ?body=NAME&as=ENCODING: an ENCODED body with that Content-Encoding
            self._send(200, ENCODED[query["body"][0]](), Content_Encoding=query.get("as", [""])[0])
        elif route == "/red%20dress.png":
            self._send(200, PNG)
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
    assert time.monotonic() - started < 1.9  # the server answers after 2 s: the timeout cut it short


def test_dripping_server_hits_total_timeout(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_bytes(f"{server}/drip", timeout=0.5, total_timeout=0.6)
    assert time.monotonic() - started < 5.0  # the drip lasts 10 s: the total timeout cut it short


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


# -- compressed replies: decoded here, in bounded steps, whatever the server was asked for


@contextmanager
def allocation_peak() -> Iterator[list[int]]:
    """The most memory Python allocated at once inside the block, above what it held before: one number,
    appended to the yielded list on exit. zlib's and brotli's outputs are Python bytes, so they count."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1] - before)
        if not was_tracing:
            tracemalloc.stop()


def encoded(server: str, body: str, encoding: str) -> str:
    return f"{server}/encoded?body={body}&as={quote(encoding)}"


def test_gzip_bomb_is_refused_having_allocated_little(server: str) -> None:
    assert len(gzip_bomb()) < BOMB_EXPANDS_TO // 500  # ~260 KB on the wire for 256 MiB decoded
    with allocation_peak() as peak, pytest.raises(FetchError, match=f"too large: more than {MIB} bytes"):
        fetch_bytes(encoded(server, "gzip-bomb", "gzip"), max_bytes=MIB)
    # Decoding a whole 64 KiB network chunk at once (what iter_bytes does) would take 64 MiB here.
    assert peak[0] < 8 * MIB, f"peak {peak[0] / MIB:.1f} MiB"


@pytest.mark.skipif(brotli is None, reason="brotli is not installed")
def test_brotli_bomb_is_refused_having_allocated_little(server: str) -> None:
    assert len(brotli_bomb()) < 64 * 1024  # ~50 KB, one network read, for 256 MiB decoded
    if decoding._BROTLI is not None:
        expected = f"too large: more than {MIB} bytes"
    else:  # an old brotli without a bounded decoder: refused, never decoded
        expected = "Content-Encoding 'br', which lookalike does not decode"
    with allocation_peak() as peak, pytest.raises(FetchError, match=expected):
        fetch_bytes(encoded(server, "brotli-bomb", "br"), max_bytes=MIB)
    assert peak[0] < 8 * MIB, f"peak {peak[0] / MIB:.1f} MiB"


def test_decoded_bytes_count_against_max_bytes(server: str) -> None:
    # ~50 bytes on the wire (so the Content-Length check passes), 5004 once decoded.
    with pytest.raises(FetchError, match="too large: more than 1000 bytes"):
        fetch_bytes(encoded(server, "gzip-big", "gzip"), max_bytes=1000)
    assert fetch_bytes(encoded(server, "gzip-big", "gzip"), max_bytes=len(BIG)) == BIG


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ("gzip-png", "gzip"),
        ("gzip-png", "x-gzip"),
        ("gzip-png", "GZIP"),
        ("zlib-png", "deflate"),  # deflate as RFC 9110 says: zlib-wrapped
        ("raw-deflate-png", "deflate"),  # and as some servers send it: raw, which browsers accept too
        ("png", "identity"),
        ("png", ""),
        ("gzip-png", "identity, gzip"),
    ],
)
def test_honest_compressed_image_comes_back_decoded(server: str, body: str, encoding: str) -> None:
    assert fetch_bytes(encoded(server, body, encoding)) == PNG


@pytest.mark.skipif(brotli is None or decoding._BROTLI is None, reason="no bounded brotli decoder installed")
def test_honest_brotli_image_comes_back_decoded(server: str) -> None:
    assert fetch_bytes(encoded(server, "brotli-png", "br")) == PNG


def test_brotli_is_refused_by_name_without_a_bounded_decoder(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "_BROTLI", None)
    with pytest.raises(FetchError, match=r"sent Content-Encoding 'br', which lookalike does not decode"):
        fetch_bytes(encoded(server, "png", "br"))


@pytest.mark.parametrize("encoding", ["zstd", "compress", "x-bomb", "gzip, br", "gzip, gzip"])
def test_unknown_or_stacked_encoding_is_refused_by_name(server: str, encoding: str) -> None:
    with pytest.raises(FetchError, match=f"sent Content-Encoding '{encoding}', which lookalike does not decode"):
        fetch_bytes(encoded(server, "png", encoding))


@pytest.mark.parametrize("body", ["gzip-truncated", "gzip-corrupt"])
def test_broken_gzip_body_is_a_fetch_error(server: str, body: str) -> None:
    with pytest.raises(FetchError, match="corrupt body for Content-Encoding 'gzip'"):
        fetch_bytes(encoded(server, body, "gzip"))


# -- malformed URLs: a FetchError (a 400 from the API), never httpx.InvalidURL or another crash


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names looked up (an IP literal passes through: httpcore looks those up too). Any name fails the test,
    since every URL these tests use must be refused before resolving."""
    real = socket.getaddrinfo
    names: list[str] = []

    def only_literals(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            names.append(host)
            raise AssertionError(f"{host!r} was looked up") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", only_literals)
    return names


BAD_URLS = {
    "tab": "http://127.0.0.1:9/a\tb.png",
    "newline": "http://127.0.0.1:9/a\nb.png",
    "carriage return": "http://127.0.0.1:9/a\rb.png",
    "tab in host": "http://exam\tple.com/x.png",
    "newline in host": "http://127.0.0.1\n.example/x.png",
    "NUL": "http://example.com/\x00.png",
    "DEL": "http://example.com/\x7f.png",
    "C1 control": "http://example.com/\x85.png",
    "no-break space": "http://exam\u00a0ple.com/x.png",
    "line separator": "http://example.com/a\u2028b.png",
    "space in host": "http://exam ple.com/x.png",
    "space in port": "http://example.com: 80/x.png",
    "leading space": " http://example.com/x.png",
    "70,000 characters": "http://example.com/" + "a" * 70_000,
    "just over MAX_URL_LENGTH": "http://example.com/" + "a" * (MAX_URL_LENGTH - 18),
}


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_malformed_url_is_a_fetch_error(url: str, no_dns: list[str]) -> None:
    for attempt in (lambda: fetch_bytes(url), lambda: AddressGuard().check(url), lambda: fetch_bytes(url, guard=LOCAL)):
        with pytest.raises(FetchError, match="invalid URL") as caught:
            attempt()
        message = str(caught.value)
        assert len(message) < 500  # the URL is shown cut short, and escaped
        assert not any(ord(c) < 32 or c in "\x7f\x85\u2028" for c in message), message
    assert no_dns == []


def test_url_of_exactly_max_length_is_not_refused_for_length(no_dns: list[str]) -> None:
    url = "http://10.0.0.1/" + "a" * (MAX_URL_LENGTH - 16)
    assert len(url) == MAX_URL_LENGTH
    with pytest.raises(BlockedURLError, match="private"):  # refused for where it points, not for its length
        fetch_bytes(url, guard=AddressGuard())


@pytest.mark.parametrize(
    "url",
    [
        "http://xn--a.com/x.png",  # idna raises its own UnicodeError subclass, not InvalidURL
        "http://0177.0.0.1:9/x.png",  # a leading-zero address: httpx refuses it
        "http://exa\u200dmple.com/x.png",  # a zero-width joiner: not a valid IDNA host
    ],
)
def test_url_that_httpx_refuses_is_a_fetch_error(url: str, no_dns: list[str]) -> None:
    with pytest.raises(FetchError, match="invalid URL"):
        fetch_bytes(url)


def test_url_that_httpx_refuses_is_still_judged_by_the_guard() -> None:
    # 127.0.0.1 in octal: the resolver would connect there, so the guard names it as blocked.
    with pytest.raises(BlockedURLError, match="loopback"):
        fetch_bytes("http://0177.0.0.1:9/x.png", guard=AddressGuard())


def test_space_in_path_is_sent_encoded_as_browsers_do(server: str) -> None:
    assert fetch_bytes(f"{server}/red dress.png") == PNG


def test_guard_resolves_the_host_httpx_connects_to(monkeypatch: pytest.MonkeyPatch) -> None:
    # Python's resolver spells faß as fass (IDNA 2003), httpx as xn--fa-hia (IDNA 2008): two different hosts.
    calls: list[str] = []

    def fake(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(BlockedURLError, match=r"'xn--fa-hia\.example' resolves to 10\.0\.0\.7"):
        AddressGuard().check("http://faß.example/x.png")
    assert calls == ["xn--fa-hia.example"]


@pytest.mark.parametrize("bad", ["\n", "\r", "\t"])
def test_redirect_to_url_with_control_character_is_refused(server: str, bad: str) -> None:
    target = f"{server}/ok{bad}.png"  # urljoin alone would drop the character and fetch /ok.png
    with pytest.raises(FetchError) as caught:
        fetch_bytes(f"{server}/to?url={quote(target)}")
    assert bad not in str(caught.value)


@pytest.mark.parametrize("target", ["http://xn--a.com/x.png", "http://0177.0.0.1/x.png"])
def test_redirect_to_url_that_httpx_refuses_is_a_fetch_error(server: str, target: str, no_dns: list[str]) -> None:
    with pytest.raises(FetchError, match=r"(?i)invalid"):
        fetch_bytes(f"{server}/to?url={quote(target)}")


class _Body(httpx.SyncByteStream):
    """A response body still to be read, as from the network (``content=`` would be read already)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


def mock_redirect(location: str) -> httpx.Client:
    """A client whose /r answers 302 to ``location`` verbatim, UTF-8 encoded (a real server could not send
    every such header), and every other path a PNG."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/r":
            return httpx.Response(302, headers=[(b"Location", location.encode())])
        return httpx.Response(200, headers={"Content-Type": "image/png"}, stream=_Body(PNG))

    return httpx.Client(transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://127.0.0.1/ok\n.png", "non-printable"),  # httpx itself refuses this Location
        ("/ok\t.png", "non-printable"),
        ("/ok\u00a0.png", r"whitespace character '\\xa0'"),  # httpx would send it as %C2%A0
        ("http://exam ple.com/x.png", "space before the path"),  # httpx would send exam%20ple.com
        ("/" + "a" * 10_000, f"longer than {MAX_URL_LENGTH} characters"),  # httpx allows up to 65536
        ("/" + "a" * 70_000, "URL too long|longer than"),
    ],
)
def test_redirect_to_malformed_url_is_refused(location: str, why: str) -> None:
    with mock_redirect(location) as client, pytest.raises(FetchError, match=why):
        fetch_bytes("http://127.0.0.1/r", client=client)
    with mock_redirect("/ok.png") as client:  # the same client path with an honest Location
        assert fetch_bytes("http://127.0.0.1/r", client=client) == PNG
