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
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import httpx

from lookalike.errors import BlockedURLError, FetchError

DEFAULT_MAX_BYTES = 30 * 1024 * 1024
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


def _split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; anything else is refused before any network use."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "none"
        raise BlockedURLError(f"unsupported URL scheme {shown!r} in {url!r}: only http and https are fetched")
    host = parts.hostname
    if not host:
        raise FetchError(f"invalid URL {url!r}: no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


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
            raise FetchError(f"cannot resolve host {host!r} in {url!r}: {exc}") from None
        addresses: list[IPAddress] = []
        for *_, sockaddr in infos:
            # IPv6 link-local results carry a scope ("fe80::1%eth0"), which ip_address rejects.
            text = str(sockaddr[0]).split("%", 1)[0]
            addresses.append(ipaddress.ip_address(text))
        if not addresses:
            raise FetchError(f"cannot resolve host {host!r} in {url!r}: no addresses")
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


def _read_limited(response: httpx.Response, url: str, max_bytes: int, deadline: float | None) -> bytes:
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise FetchError(f"{url!r} is too large: Content-Length {int(length)} bytes exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"{url!r} is too large: more than {max_bytes} bytes")
        if deadline is not None and time.monotonic() > deadline:
            raise FetchError(f"fetching {url!r} timed out: the download took too long")
        chunks.append(chunk)
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
                raise FetchError(f"fetching {url!r} timed out after {total_timeout:g} s in total")
            if guard is not None:
                guard.check(current)
            else:
                _split_url(current)
            request = client.build_request("GET", current, headers=_HEADERS, timeout=httpx.Timeout(timeout))
            try:
                response = client.send(request, stream=True, follow_redirects=False)
            except httpx.TimeoutException:
                raise FetchError(f"fetching {current!r} timed out after {timeout:g} s") from None
            except httpx.HTTPError as exc:
                if _is_dns_failure(exc):
                    raise FetchError(f"cannot resolve host of {current!r}: {exc}") from None
                raise FetchError(f"cannot fetch {current!r}: {exc}") from None
            try:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    current = urljoin(str(response.url), response.headers["location"])
                    continue
                if not 200 <= response.status_code < 300:
                    reason = response.reason_phrase or ""
                    raise FetchError(f"HTTP {response.status_code} {reason}".rstrip() + f" fetching {current!r}")
                content_type = response.headers.get("content-type")
                if not _content_type_ok(content_type, accept_content_types):
                    wanted = ", ".join(f"{p}*" for p in accept_content_types)
                    raise FetchError(f"{current!r} has content type {content_type!r}, expected {wanted}")
                return _read_limited(response, current, max_bytes, deadline)
            except httpx.TimeoutException:
                raise FetchError(f"fetching {current!r} timed out after {timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch {current!r}: {exc}") from None
            finally:
                response.close()
        raise FetchError(f"too many redirects fetching {url!r} (more than {max_redirects})")
    finally:
        if own_client:
            client.close()
