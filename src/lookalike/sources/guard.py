"""Which URLs a fetch may be aimed at: the URL checks every hop goes through, and the :class:`AddressGuard`.

A URL is untrusted input: it is refused when too long, when it holds characters no URL may hold literally, or
when its scheme is not http(s); with an :class:`AddressGuard`, also when its host is the machine itself or its
private network (SSRF). :func:`~lookalike.sources.fetch.fetch_bytes` checks every hop of a redirect chain here,
not only the first URL.

Known gap (DNS rebinding): the guard resolves a host name and checks its addresses, then httpx resolves
the name again to connect. A hostile DNS server can answer the two look-ups differently (public, then
private). Closing the gap needs connecting to the checked address itself (pinning), which httpx does not
offer without a custom transport; until then, a guard stops honest mistakes and naive attacks, and
deployments exposed to the internet should also restrict egress at the network level.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from lookalike.errors import BlockedURLError, FetchError

MAX_URL_LENGTH = 8192
"""Longest URL fetched, in characters. Most servers refuse longer request lines (nginx's default buffer
is 8 KiB, Apache's LimitRequestLine 8190 bytes), so a longer URL could not be fetched anyway; refusing it
up front gives a clear error, bounds the work of checking it, and keeps error messages short."""

ALLOWED_SCHEMES = ("http", "https")

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
