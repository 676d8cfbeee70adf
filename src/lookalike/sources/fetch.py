"""Fetch one image over http(s) with hard limits, optionally refusing internal addresses.

Catalogue manifests and FEIDEGGER point at images on the web, and the web API will accept a query image
by URL. Both are untrusted input, so a fetch is bounded in every direction (scheme, size, time,
redirects, content type) and, with an :class:`~lookalike.sources.guard.AddressGuard`, cannot be aimed at the
machine itself or its private network (SSRF): the guard checks every hop of a redirect chain, not only the
first URL. The URL checks and the guard (with its known DNS-rebinding gap) are in :mod:`lookalike.sources.guard`,
the bounded decoding of compressed replies in :mod:`lookalike.sources.decoding`.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urljoin

import httpx

from lookalike.errors import FetchError
from lookalike.sources.decoding import _CorruptBody, _decoder_for
from lookalike.sources.guard import MAX_URL_LENGTH, AddressGuard, _check_url_text, _split_url

__all__ = ["DEFAULT_MAX_BYTES", "MAX_URL_LENGTH", "AddressGuard", "FetchError", "fetch_bytes"]

DEFAULT_MAX_BYTES = 30 * 1024 * 1024

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_HEADERS = {
    "User-Agent": "lookalike/0.1",
    # Images are compressed already; asking for the bytes as stored keeps max_bytes meaningful and
    # leaves no room for a decompression bomb from an honest server.
    "Accept-Encoding": "identity",
}


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
