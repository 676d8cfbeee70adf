"""Fetch one image over http(s) with hard limits, optionally refusing internal addresses.

Catalogue manifests and FEIDEGGER point at images on the web, and the web API will accept a query image
by URL. Both are untrusted input, so a fetch is bounded in every direction (scheme, size, time,
redirects, content type) and, with an :class:`AddressGuard`, cannot be aimed at the machine itself or
its private network (SSRF): the guard checks every hop of a redirect chain, not only the first URL.

Known gap (DNS rebinding): the guard resolves a host name and checks its addresses, then httpx resolves
the name again to connect. A hostile DNS server can answer the two look-ups differently (public, then
private). Closing the gap needs connecting to the checked address itself (pinning), which httpx does not
offer without a custom transport; until then, a guard stops honest mistakes and naive attacks, and
deployments exposed to the internet should also restrict egress at the network level.

Compressed replies: we ask for ``Accept-Encoding: identity``, but a hostile server may answer with
``Content-Encoding: gzip`` (or ``br``) anyway, and a few hundred bytes of brotli expand to gigabytes.
httpx would decode a whole network chunk before we could count it, so the body is read raw and decoded
here in bounded steps, each step's output counted against ``max_bytes`` before the next is made.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from lookalike.errors import BlockedURLError, FetchError

try:
    import brotli as _brotli_module
except ImportError:  # optional: without it, brotli replies are refused
    _brotli_module = None


def _bounded_brotli() -> ModuleType | None:
    """The ``brotli`` module if its decoder can cap its output (brotli>=1.2), else None.

    Older versions (and the unrelated brotlipy) only decode a chunk all at once, which is the bomb.
    """
    module = _brotli_module
    if module is None or not hasattr(getattr(module, "Decompressor", None), "can_accept_more_data"):
        return None
    try:
        module.Decompressor().process(b"", output_buffer_limit=1)
    except Exception:  # no such argument (TypeError) or anything else: not a decoder to rely on
        return None
    return module


_BROTLI = _bounded_brotli()

DEFAULT_MAX_BYTES = 30 * 1024 * 1024
MAX_URL_LENGTH = 8192
"""Longest URL fetched, in characters. Most servers refuse longer request lines (nginx's default buffer
is 8 KiB, Apache's LimitRequestLine 8190 bytes), so a longer URL could not be fetched anyway; refusing it
up front gives a clear error, bounds the work of checking it, and keeps error messages short."""
_DECODE_STEP = 64 * 1024
"""Most decoded bytes made at once: the memory a compressed reply can cost beyond ``max_bytes``."""
ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HEADERS = {
    "User-Agent": "lookalike/0.1",
    # Images are compressed already; asking for the bytes as stored keeps max_bytes meaningful and
    # leaves no room for a decompression bomb from an honest server.
    "Accept-Encoding": "identity",
}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _shown(url: str) -> str:
    """``url`` for an error message, cut short: a refused URL may be long and is the client's text."""
    return repr(url) if len(url) <= 200 else repr(url[:200]) + f"... ({len(url)} characters)"


def _check_url_text(url: str) -> None:
    """Refuse a URL that is too long or holds characters no URL may hold literally.

    Control characters (tab, CR, LF, NUL, DEL, C1) and whitespace other than a plain space are refused
    anywhere: ``urlsplit`` and ``urljoin`` silently drop tabs and newlines while httpx raises on them,
    so the guard and the request would otherwise disagree about the URL. A plain space is refused at
    either end and before the path (scheme, user, host, port); inside the path or query httpx sends it
    as ``%20``, as browsers do, so a pasted ``.../red dress.jpg`` still works.
    """
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(f"invalid URL {_shown(url)}: longer than {MAX_URL_LENGTH} characters")
    for position, char in enumerate(url):
        if unicodedata.category(char) == "Cc" or (char.isspace() and char != " "):
            raise FetchError(f"invalid URL {_shown(url)}: control or whitespace character {char!r} at {position}")
    if url != url.strip(" "):
        raise FetchError(f"invalid URL {_shown(url)}: it starts or ends with a space")
    try:
        authority = urlsplit(url).netloc
    except ValueError as exc:
        raise FetchError(f"invalid URL {_shown(url)}: {exc}") from None
    if " " in authority:
        raise FetchError(f"invalid URL {_shown(url)}: a space before the path (in the host or port)")


def _split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port an http(s) URL is fetched from; anything else is refused before any network
    use. Every hop (the first URL, the guard's check, each redirect target) comes through here.

    The host is the one httpx will connect to (IDNA-encoded the way httpx encodes it), not the one
    ``urlsplit`` reads: a guard that judged another spelling of the name (``faß.de`` is ``fass.de`` to
    Python's resolver but ``xn--fa-hia.de`` to httpx) could pass a host that is not the one connected to.
    A URL that httpx cannot parse is judged by ``urlsplit``'s host, so an internal address still reads as
    blocked; httpx then refuses to build the request, which :func:`fetch_bytes` reports as invalid.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"invalid URL {_shown(url)}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "none"
        raise BlockedURLError(f"unsupported URL scheme {shown!r} in {_shown(url)}: only http and https are fetched")
    _check_url_text(url)
    host = parts.hostname
    if not host:
        raise FetchError(f"invalid URL {_shown(url)}: no host")
    default_port = 443 if scheme == "https" else 80
    try:
        parsed = httpx.URL(url)
        connect_host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return scheme, host, default_port if port is None else port
    if not connect_host:
        raise FetchError(f"invalid URL {_shown(url)}: no host")
    return scheme, connect_host, default_port if parsed.port is None else parsed.port


def _forbidden_kind(ip: IPAddress) -> str | None:
    """Why an address is off limits (``"loopback"``, ``"private"``, ...), or None for a public address.

    IPv6 forms that embed an IPv4 address (``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``) are judged by
    the embedded address too, since the packet ends up there.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour):
            if embedded is not None:
                kind = _forbidden_kind(embedded)
                if kind:
                    return kind
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


class AddressGuard:
    """Refuses URLs whose host resolves to a loopback, private, link-local, multicast, reserved or
    unspecified address, unless the host name, the address or a network containing it is allowed.

    ``allow`` entries are host names (``"images.internal"``), addresses (``"10.1.2.3"``, ``"::1"``) or
    networks (``"127.0.0.0/8"``). An allowed host name skips the address check entirely.
    See the module docstring for the DNS-rebinding gap between :meth:`check` and the connection.
    """

    def __init__(self, allow: Sequence[str] = ()) -> None:
        if isinstance(allow, str):
            allow = [allow]
        self._hosts: set[str] = set()
        self._networks: list[IPNetwork] = []
        for entry in allow:
            text = entry.strip().strip("[]")
            if not text:
                continue
            try:
                self._networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                self._hosts.add(text.lower().rstrip("."))

    def __repr__(self) -> str:
        allowed = sorted(self._hosts) + [str(net) for net in self._networks]
        return f"AddressGuard(allow={allowed!r})"

    def _allowed_ip(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c in net for c in candidates for net in self._networks if c.version == net.version)

    def _resolve(self, host: str, port: int, url: str) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise FetchError(f"cannot resolve host {host!r} in {url!r}: {exc}", "unreachable") from None
        addresses: list[IPAddress] = []
        for *_, sockaddr in infos:
            # IPv6 link-local results carry a scope ("fe80::1%eth0"), which ip_address rejects.
            text = str(sockaddr[0]).split("%", 1)[0]
            addresses.append(ipaddress.ip_address(text))
        if not addresses:
            raise FetchError(f"cannot resolve host {host!r} in {url!r}: no addresses", "unreachable")
        return addresses

    def check(self, url: str) -> None:
        """Raise :class:`FetchError` unless ``url`` is http(s) and every address of its host is allowed.

        Every address counts, not just the first: the connection may use any of them.
        """
        _, host, port = _split_url(url)
        host = host.lower().rstrip(".")
        if host in self._hosts:
            return
        for ip in self._resolve(host, port, url):
            if self._allowed_ip(ip):
                continue
            kind = _forbidden_kind(ip)
            if kind:
                shown = host if host == str(ip) else f"{host!r} resolves to {ip}, which"
                raise BlockedURLError(f"refusing to fetch {url!r}: {shown} is a {kind} address")


def _content_type_ok(content_type: str | None, accept: tuple[str, ...]) -> bool:
    """A missing type or ``application/octet-stream`` passes: many stores serve images that way."""
    if not accept or not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    if not media or media == "application/octet-stream":
        return True
    return any(media.startswith(prefix.lower()) for prefix in accept)


def _is_dns_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    text = str(exc).lower()
    return "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text


class _CorruptBody(ValueError):
    """A compressed body that does not decode (or stops mid-stream)."""


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]:
        """Decoded bytes of the next raw chunk, in pieces of about :data:`_DECODE_STEP` at most.

        Pieces are made one at a time, so a caller that stops iterating (the body is too large) stops
        the decoding too: nothing is ever decoded beyond the piece being counted.
        """
        ...

    def finish(self) -> None:
        """Called after the last chunk: raise :class:`_CorruptBody` if the stream was cut short."""
        ...


class _Identity:
    def decode(self, data: bytes) -> Iterator[bytes]:
        yield data

    def finish(self) -> None:
        pass


def _is_zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: method 8, window <= 32 KiB, check bits)."""
    return head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


class _Inflate:
    """gzip, or deflate with or without its zlib wrapper.

    RFC 9110 says ``deflate`` is zlib-wrapped, but some servers send raw deflate; like browsers, the
    first two bytes decide. ``decompress(max_length=...)`` keeps the rest of the input in
    ``unconsumed_tail``, so each call makes at most one step of output whatever the ratio.
    Bytes after the end of the stream are ignored, as httpx and browsers do.
    """

    def __init__(self, gzip: bool) -> None:
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16) if gzip else None
        self._head = b""
        self._seen = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        self._seen = self._seen or bool(data)
        if self._inflater is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if _is_zlib_header(data) else -zlib.MAX_WBITS)
        inflater = self._inflater
        while not inflater.eof:
            try:
                piece = inflater.decompress(data, _DECODE_STEP)
            except zlib.error as exc:
                raise _CorruptBody(str(exc)) from None
            data = inflater.unconsumed_tail
            if piece:
                yield piece
            # Less than a full step with no input left: zlib holds nothing more until the next chunk.
            if not data and len(piece) < _DECODE_STEP:
                return

    def finish(self) -> None:
        if self._seen and (self._inflater is None or not self._inflater.eof):
            raise _CorruptBody("the body ends before the compressed stream does")


class _Brotli:
    """brotli through a decoder whose output per call is capped (``output_buffer_limit``, brotli>=1.2).

    Once the cap is hit the decoder takes no input until it has been drained with empty calls. Like
    httpx's decoder, it refuses bytes after the end of the stream.
    """

    def __init__(self, module: ModuleType) -> None:
        self._error: type[Exception] = module.error
        self._decompressor = module.Decompressor()
        self._seen = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        self._seen = self._seen or bool(data)
        decompressor = self._decompressor
        if decompressor.is_finished():
            return
        try:
            piece = decompressor.process(data, output_buffer_limit=_DECODE_STEP)
            while True:
                if piece:
                    yield piece
                if decompressor.can_accept_more_data():
                    return
                piece = decompressor.process(b"", output_buffer_limit=_DECODE_STEP)
                if not piece and not decompressor.can_accept_more_data():
                    raise _CorruptBody("the brotli decoder stopped making progress")  # never loop forever
        except self._error as exc:
            raise _CorruptBody(str(exc) or "brotli could not decode it") from None

    def finish(self) -> None:
        if self._seen and not self._decompressor.is_finished():
            raise _CorruptBody("the body ends before the compressed stream does")


def _decoder_for(content_encoding: str | None, url: str) -> _Decoder:
    """The decoder for a reply's ``Content-Encoding``, or :class:`FetchError` if lookalike cannot decode
    it boundedly. One encoding at most: stacked ones (``gzip, br``) are a bomb's tool, not a store's."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return _Identity()
    refusal = f"{url!r} sent Content-Encoding {content_encoding!r}, which lookalike does not decode"
    if len(codings) > 1:
        raise FetchError(f"{refusal} (more than one encoding)")
    coding = codings[0]
    if coding in ("gzip", "x-gzip"):
        return _Inflate(gzip=True)
    if coding == "deflate":
        return _Inflate(gzip=False)
    if coding == "br":
        if _BROTLI is None:
            raise FetchError(f"{refusal} (no bounded brotli decoder installed: it needs brotli>=1.2)")
        return _Brotli(_BROTLI)
    raise FetchError(refusal)


def _read_limited(response: httpx.Response, url: str, max_bytes: int, deadline: float | None) -> bytes:
    """The decoded body, refused as soon as more than ``max_bytes`` arrive or are decoded.

    Raw bytes are read with ``iter_raw`` (``iter_bytes`` would let httpx decode a whole network chunk,
    unbounded, before we see it) and counted as received; decoded bytes are counted as each bounded
    piece is made. So what is held never exceeds ``max_bytes`` plus one network chunk (64 KiB from
    httpcore) and one decode step, whatever the compression ratio; the final join copies it once.
    """
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise FetchError(
            f"{url!r} is too large: Content-Length {int(length)} bytes exceeds {max_bytes} bytes", "too_large"
        )
    encoding = response.headers.get("content-encoding")
    decoder = _decoder_for(encoding, url)
    chunks: list[bytes] = []
    received = 0
    total = 0
    try:
        for raw in response.iter_raw():
            received += len(raw)
            if received > max_bytes:
                raise FetchError(f"{url!r} is too large: more than {max_bytes} bytes", "too_large")
            if deadline is not None and time.monotonic() > deadline:
                raise FetchError(f"fetching {url!r} timed out: the download took too long", "timeout")
            for piece in decoder.decode(raw):
                total += len(piece)
                if total > max_bytes:
                    raise FetchError(f"{url!r} is too large: more than {max_bytes} bytes once decoded", "too_large")
                chunks.append(piece)
        decoder.finish()
    except _CorruptBody as exc:
        raise FetchError(f"{url!r} sent a corrupt body for Content-Encoding {encoding!r}: {exc}") from None
    return b"".join(chunks)


def fetch_bytes(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 10.0,
    max_redirects: int = 5,
    guard: AddressGuard | None = None,
    accept_content_types: tuple[str, ...] = ("image/",),
    client: httpx.Client | None = None,
    total_timeout: float | None = 60.0,
) -> bytes:
    """Download ``url`` and return its body, or raise :class:`FetchError` saying what went wrong.

    ``timeout`` bounds each network step (connect, each read); ``total_timeout`` bounds the whole
    fetch, so a server dripping one byte at a time cannot hold a worker forever. Redirects are followed
    by hand so the guard sees every hop. An empty ``accept_content_types`` accepts any type.
    A caller's ``client`` is reused (its connection pool) but never closed, and its redirect and
    timeout settings are overridden by the arguments here.
    """
    _split_url(url)
    own_client = client is None
    if client is None:
        # With a guard, environment proxies are ignored: the guard checks where we connect.
        client = httpx.Client(timeout=httpx.Timeout(timeout), trust_env=guard is None)
    deadline = None if total_timeout is None else time.monotonic() + total_timeout
    current = url
    try:
        for _hop in range(max_redirects + 1):
            if deadline is not None and time.monotonic() > deadline:
                raise FetchError(f"fetching {url!r} timed out after {total_timeout:g} s in total", "timeout")
            if guard is not None:
                guard.check(current)
            else:
                _split_url(current)
            # httpx.InvalidURL is not an httpx.HTTPError, and the idna package raises UnicodeErrors of its own.
            try:
                request = client.build_request("GET", current, headers=_HEADERS, timeout=httpx.Timeout(timeout))
            except (httpx.InvalidURL, UnicodeError) as exc:
                raise FetchError(f"invalid URL {current!r}: {exc}") from None
            try:
                response = client.send(request, stream=True, follow_redirects=False)
            except (httpx.InvalidURL, UnicodeError) as exc:  # e.g. from parsing a Location header
                raise FetchError(f"cannot fetch {current!r}: invalid URL in the reply: {exc}") from None
            except httpx.TimeoutException:
                raise FetchError(f"fetching {current!r} timed out after {timeout:g} s", "timeout") from None
            except httpx.HTTPError as exc:
                if _is_dns_failure(exc):
                    raise FetchError(f"cannot resolve host of {current!r}: {exc}", "unreachable") from None
                raise FetchError(f"cannot fetch {current!r}: {exc}", "unreachable") from None
            try:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    location = response.headers["location"]
                    # Checked before urljoin, which would silently drop a tab or newline in it.
                    _check_url_text(location)
                    current = urljoin(str(response.url), location)
                    continue
                if not 200 <= response.status_code < 300:
                    reason = response.reason_phrase or ""
                    raise FetchError(
                        f"HTTP {response.status_code} {reason}".rstrip() + f" fetching {current!r}",
                        "not_found" if response.status_code in (404, 410) else "http_error",
                    )
                content_type = response.headers.get("content-type")
                if not _content_type_ok(content_type, accept_content_types):
                    wanted = ", ".join(f"{p}*" for p in accept_content_types)
                    raise FetchError(
                        f"{current!r} has content type {content_type!r}, expected {wanted}", "not_an_image"
                    )
                return _read_limited(response, current, max_bytes, deadline)
            except httpx.TimeoutException:
                raise FetchError(f"fetching {current!r} timed out after {timeout:g} s", "timeout") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch {current!r}: {exc}", "unreachable") from None
            finally:
                response.close()
        raise FetchError(f"too many redirects fetching {url!r} (more than {max_redirects})")
    finally:
        if own_client:
            client.close()
