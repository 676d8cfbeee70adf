"""A manifest (CSV, JSON Lines or JSON list) naming images and their metadata, as a catalogue source.

A manifest is how a shop hands over a catalogue with labels, prices or SKUs attached: the metadata is
what search results are filtered on later, so CSV text is turned into numbers and booleans here, once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

from lookalike.errors import SourceError
from lookalike.sources.base import SourceItem
from lookalike.sources.fetch import AddressGuard, fetch_bytes
from lookalike.sources.folder import FsReader, is_local, location_of, url_to_fs

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json")
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
"""Upper bound for a manifest fetched over http(s); a catalogue of millions of rows fits."""

_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?((0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+|0|[1-9][0-9]*)([eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "false": False}


def infer_value(text: str) -> object:
    """Turn CSV (or command-line) text into the value it spells, so ``price < 20`` compares numbers.

    Rules, applied to the text without surrounding spaces: ``true``/``false`` in any case -> bool;
    an integer without leading zeros (``12``, ``-3``, ``0``) -> int; a decimal or exponent number
    (``1.5``, ``.5``, ``2e3``) -> float. Everything else is returned unchanged, on purpose including
    ``007``, ``01234`` and ``00.5`` (codes, not numbers: the zeros would be lost), ``nan``, ``inf``
    and ``1_000``.
    The empty string stays ``""``; the manifest drops such keys.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in _BOOLS:
        return _BOOLS[lowered]
    if _INT.fullmatch(stripped):
        return int(stripped)
    if _FLOAT.fullmatch(stripped):
        return float(stripped)
    return text


def _has_scheme(text: str) -> bool:
    """``s3://...``, ``https://...`` but not ``C:\\images`` (a one-letter scheme is a Windows drive)."""
    scheme = urlsplit(text).scheme
    return len(scheme) > 1 and "://" in text


def _is_http(text: str) -> bool:
    return urlsplit(text).scheme.lower() in ("http", "https")


class ManifestSource:
    """Rows of a ``.csv`` (with a header), ``.jsonl`` (one object per line) or ``.json`` (a list of
    objects) manifest, local or at any fsspec URL or http(s) URL.

    Each row needs ``path`` or ``url``; ``id`` is optional (default: the path as written, else the URL).
    With both ``path`` and ``url``, ``path`` is read and ``url`` is kept as metadata. Every other column
    is metadata: CSV text through :func:`infer_value` (empty cells omitted), JSON values as they are
    (nulls omitted); ``path``, ``url`` and ``id`` are never converted. ``url`` must be http(s) and is
    read with :func:`fetch_bytes` (with ``guard`` if given); ``path`` may be relative (to the manifest's
    folder, or URL for a manifest served over http), absolute, or a storage URL (``s3://...``, read
    through fsspec, with ``storage_options`` when it has the manifest's protocol).
    """

    def __init__(
        self,
        path: str,
        storage_options: dict[str, Any] | None = None,
        *,
        guard: AddressGuard | None = None,
    ) -> None:
        self.path = path
        self.storage_options = storage_options or {}
        self.guard = guard
        self.format = _manifest_format(path)
        if _is_http(path):
            self._fs = None
            self._base = path
            text = self._fetch_text(path)
        else:
            self._fs, fs_path = url_to_fs(path, self.storage_options)
            if is_local(self._fs):
                self._base = os.path.dirname(os.path.abspath(fs_path))
            else:
                self._base = posixpath.dirname(fs_path)
            text = self._read_text(fs_path)
        self._items = self._build(text)

    def _fetch_text(self, url: str) -> str:
        data = fetch_bytes(url, guard=self.guard, accept_content_types=(), max_bytes=MAX_MANIFEST_BYTES)
        return _decode(data, url)

    def _read_text(self, fs_path: str) -> str:
        assert self._fs is not None
        try:
            data = self._fs.cat_file(fs_path)
        except FileNotFoundError:
            raise SourceError(f"manifest not found: {self.path}") from None
        except IsADirectoryError:
            raise SourceError(f"manifest is a folder, not a file: {self.path}") from None
        except Exception as exc:
            raise SourceError(f"cannot read manifest {self.path}: {exc}") from exc
        return _decode(data, self.path)

    def _rows(self, text: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
        """(where, row, row_is_text) for each row; ``where`` names it in errors (``row 2 (line 3)``)."""
        if self.format == "csv":
            reader = csv.DictReader(io.StringIO(text))
            try:
                for number, row in enumerate(reader, start=1):
                    if None in row:
                        raise SourceError(f"{self.path} row {number} (line {reader.line_num}): more cells than columns")
                    clean = {(k or "").strip(): v for k, v in row.items() if k is not None}
                    yield f"row {number} (line {reader.line_num})", clean, True
            except csv.Error as exc:
                raise SourceError(f"{self.path} line {reader.line_num}: malformed CSV: {exc}") from None
        elif self.format == "jsonl":
            number = 0
            for line_number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                number += 1
                where = f"row {number} (line {line_number})"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{self.path} {where}: invalid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise SourceError(f"{self.path} {where}: expected a JSON object, got {type(row).__name__}")
                yield where, row, False
        else:
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{self.path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
            if not isinstance(rows, list):
                raise SourceError(f"{self.path}: expected a JSON list of objects, got {type(rows).__name__}")
            for index, row in enumerate(rows):
                where = f"row {index + 1} (index {index})"
                if not isinstance(row, dict):
                    raise SourceError(f"{self.path} {where}: expected a JSON object, got {type(row).__name__}")
                yield where, row, False

    def _build(self, text: str) -> list[SourceItem]:
        items: list[SourceItem] = []
        seen: dict[str, str] = {}
        for where, row, row_is_text in self._rows(text):
            # path, url and id are taken as written: "1.50" stays an id, never becomes 1.5.
            path, url, raw_id = (_as_text(row.pop(key, None)) for key in ("path", "url", "id"))
            values = {key: _clean(value, row_is_text) for key, value in row.items()}
            values = {key: value for key, value in values.items() if value is not None}
            if path is None and url is None:
                raise SourceError(f"{self.path} {where}: needs a 'path' or 'url' column")
            written = path if path is not None else url
            assert written is not None
            if path is not None and url is not None:
                values["url"] = url
            item_id = raw_id if raw_id is not None else written
            if item_id in seen:
                raise SourceError(f"{self.path} {where}: duplicate id {item_id!r} (first at {seen[item_id]})")
            seen[item_id] = where
            location, read = self._locate(written, is_url=path is None, where=where)
            items.append(SourceItem(id=item_id, location=location, read=read, metadata=values))
        return items

    def _locate(self, written: str, *, is_url: bool, where: str) -> tuple[str, Any]:
        """Where a row's image lives and how to read it (fetch for http(s), fsspec otherwise)."""
        if _is_http(written):
            return written, partial(fetch_bytes, written, guard=self.guard)
        if is_url:
            raise SourceError(
                f"{self.path} {where}: url {written!r} is not an http(s) URL "
                "(put files and s3:// or other storage URLs in the 'path' column)"
            )
        if _has_scheme(written):
            same_protocol = urlsplit(written).scheme == urlsplit(self.path).scheme
            fs, fs_path = url_to_fs(written, self.storage_options if same_protocol else None)
            location = location_of(fs, fs_path)
            return location, FsReader(fs, fs_path, location)
        if self._fs is None:  # a relative path in a manifest served over http(s)
            url = urljoin(self._base, written)
            return url, partial(fetch_bytes, url, guard=self.guard)
        if is_local(self._fs):
            full = os.path.normpath(os.path.join(self._base, os.path.expanduser(written)))
            return full, FsReader(self._fs, full, full)
        full = posixpath.normpath(posixpath.join(self._base, written))
        location = location_of(self._fs, full)
        return location, FsReader(self._fs, full, location)

    def __iter__(self) -> Iterator[SourceItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ManifestSource({self.path!r}, {len(self)} rows)"


def _manifest_format(path: str) -> str:
    name = urlsplit(path).path if _has_scheme(path) else path
    lowered = name.lower()
    for suffix in MANIFEST_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix[1:]
    raise SourceError(f"not a manifest: {path} (expected a name ending in .csv, .jsonl or .json)")


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")  # tolerate the byte-order mark spreadsheet programs write
    except UnicodeDecodeError as exc:
        raise SourceError(f"manifest {where} is not UTF-8 text: {exc}") from None


def _as_text(value: Any) -> str | None:
    """A path, url or id cell as text; empty or null means absent."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _clean(value: Any, row_is_text: bool) -> Any:
    """CSV text through :func:`infer_value`; ``None`` means "omit this key"."""
    if value is None:
        return None
    if row_is_text and isinstance(value, str):
        if not value.strip():
            return None
        return infer_value(value)
    return value
