"""FEIDEGGER (Zalando Research): 8,732 dress photos with German descriptions, as a catalogue source.

The published file (``data/FEIDEGGER_release_1.1.json`` in github.com/zalandoresearch/feidegger) is a JSON
list with one object per image::

    [{"url": "https://.../<name>.jpg", "descriptions": ["Ein Kleid ...", ...], "split": 3}, ...]

``split`` (0-9; 0-7 train, 8 dev, 9 test in Flair's loader) appeared in release 1.1. Older copies hold one
object per description (``"description": "..."``, the same ``url`` repeated); both shapes are accepted and
entries sharing a URL are merged, so each image is one item.

Items:

* id: the image file name without extension (``0VB21C000-A11@12.1``), stable and readable; when two
  different URLs share a name (or a URL has none), those entries get ``u`` + the first 16 hex digits of
  the URL's SHA-256 instead, which stays stable as long as the URL does.
* location: the image URL; reading fetches it with :func:`fetch_bytes` (with ``guard`` if given).
* metadata: ``description`` (the first description, for display and text filters), ``n_descriptions``
  (how many there are; lists are not kept because metadata values are meant to be scalars that filters
  can compare) and ``split`` (int) when present.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from lookalike.errors import SourceError
from lookalike.sources.base import SourceItem
from lookalike.sources.fetch import AddressGuard, fetch_bytes
from lookalike.sources.folder import url_to_fs

FEIDEGGER_JSON_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/feidegger/master/data/FEIDEGGER_release_1.1.json"
)
MAX_JSON_BYTES = 256 * 1024 * 1024


def _url_hash(url: str) -> str:
    return "u" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _file_stem(url: str) -> str:
    name = posixpath.basename(urlsplit(url).path)
    return posixpath.splitext(name)[0]


class _Entry:
    __slots__ = ("descriptions", "split", "url")

    def __init__(self, url: str, split: int | None) -> None:
        self.url = url
        self.split = split
        self.descriptions: list[str] = []


class FeideggerSource:
    """The images of a FEIDEGGER JSON file (local path, fsspec URL or http(s) URL); see the module doc."""

    def __init__(
        self,
        json_path_or_url: str,
        *,
        guard: AddressGuard | None = None,
        storage_options: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.path = json_path_or_url
        self.guard = guard
        self.timeout = timeout
        entries = self._parse(self._load(storage_options))
        self._items = self._build(entries)

    def _load(self, storage_options: dict[str, Any] | None) -> Any:
        if urlsplit(self.path).scheme.lower() in ("http", "https"):
            data = fetch_bytes(
                self.path,
                guard=self.guard,
                accept_content_types=(),
                max_bytes=MAX_JSON_BYTES,
                timeout=self.timeout,
            )
        else:
            fs, fs_path = url_to_fs(self.path, storage_options)
            try:
                data = fs.cat_file(fs_path)
            except FileNotFoundError:
                raise SourceError(f"FEIDEGGER file not found: {self.path}") from None
            except Exception as exc:
                raise SourceError(f"cannot read FEIDEGGER file {self.path}: {exc}") from exc
        try:
            return json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"{self.path} is not valid FEIDEGGER JSON: {exc}") from None

    def _parse(self, document: Any) -> list[_Entry]:
        if not isinstance(document, list):
            raise SourceError(f"{self.path}: expected a JSON list of images, got {type(document).__name__}")
        by_url: dict[str, _Entry] = {}
        for index, raw in enumerate(document):
            where = f"{self.path} entry {index}"
            if not isinstance(raw, dict):
                raise SourceError(f"{where}: expected an object, got {type(raw).__name__}")
            url = raw.get("url")
            if not isinstance(url, str) or urlsplit(url).scheme.lower() not in ("http", "https"):
                raise SourceError(f"{where}: 'url' must be an http(s) URL, got {url!r}")
            descriptions = _descriptions(raw, where)
            split = _split(raw.get("split"), where)
            entry = by_url.setdefault(url, _Entry(url, split))
            if entry.split is None:
                entry.split = split
            entry.descriptions.extend(descriptions)
        return list(by_url.values())

    def _build(self, entries: list[_Entry]) -> list[SourceItem]:
        stem_count: dict[str, int] = {}
        for entry in entries:
            stem = _file_stem(entry.url)
            stem_count[stem] = stem_count.get(stem, 0) + 1
        items: list[SourceItem] = []
        for entry in entries:
            stem = _file_stem(entry.url)
            item_id = stem if stem and stem_count[stem] == 1 else _url_hash(entry.url)
            metadata: dict[str, Any] = {"n_descriptions": len(entry.descriptions)}
            if entry.descriptions:
                metadata["description"] = entry.descriptions[0]
            if entry.split is not None:
                metadata["split"] = entry.split
            read = partial(fetch_bytes, entry.url, guard=self.guard, timeout=self.timeout)
            items.append(SourceItem(id=item_id, location=entry.url, read=read, metadata=metadata))
        return items

    def __iter__(self) -> Iterator[SourceItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FeideggerSource({self.path!r}, {len(self)} images)"


def _descriptions(raw: dict[str, Any], where: str) -> list[str]:
    if "descriptions" in raw:
        value = raw["descriptions"]
        if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
            raise SourceError(f"{where}: 'descriptions' must be a list of strings")
        return [d.strip() for d in value if d.strip()]
    if "description" in raw:
        value = raw["description"]
        if not isinstance(value, str):
            raise SourceError(f"{where}: 'description' must be a string")
        return [value.strip()] if value.strip() else []
    raise SourceError(f"{where}: no 'descriptions'")


def _split(value: Any, where: str) -> int | None:
    """``split`` as an int; Flair's loader calls ``int()`` on it, so numeric strings are accepted too."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SourceError(f"{where}: 'split' must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise SourceError(f"{where}: 'split' must be a whole number, got {value!r}")
