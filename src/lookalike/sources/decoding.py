"""Compressed replies, decoded in bounded steps.

We ask for ``Accept-Encoding: identity``, but a hostile server may answer with ``Content-Encoding: gzip`` (or
``br``) anyway, and a few hundred bytes of brotli expand to gigabytes. httpx would decode a whole network chunk
before we could count it, so :func:`~lookalike.sources.fetch.fetch_bytes` reads the body raw and decodes it
with these decoders, each step's output counted against ``max_bytes`` before the next is made.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Protocol

from lookalike.errors import FetchError

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

_DECODE_STEP = 64 * 1024
"""Most decoded bytes made at once: the memory a compressed reply can cost beyond ``max_bytes``."""


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
