"""What every backend accepts, checked once before anything is written: the write half of the index contract.

The limits on items are the tightest any backend has, so an item that one backend takes every other backend
takes too (a catalogue migrates without surprises) and a bad item is refused whole, before a byte reaches
SQLite, OpenSearch or Milvus: a batch with one bad item changes nothing. What does differ between backends
(the largest dimension and k, whether the embedded-only settings apply) is stated as data too: each backend
declares its :class:`Limits`, and :meth:`VectorIndex.add` / ``search`` and every ``create`` check against them
here, so no backend repeats a check and none can drift from the others.

Metadata gets the strictest treatment because it comes from outside (manifest columns, the API's ``metadata``
field) and is read back on every search that returns the item: a value that can be stored but not read back
(a nesting too deep for the JSON encoders of the response, an integer no engine can compare, a lone UTF-16
surrogate, NaN) would poison every later answer that contains the item, so it must never be stored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.errors import IndexRequestError, VectorSizeError
from lookalike.index import filters
from lookalike.index.settings import IndexSettings, refuse_embedded_options

if TYPE_CHECKING:
    from lookalike.index.base import Item

IndexError_ = IndexRequestError
"""Every refusal here is the caller's to fix: the request error, under the name this module always raised."""

MAX_ID_BYTES = 512
"""OpenSearch's ``_id`` limit; Milvus is given the same (its VARCHAR primary key is declared that long)."""
MAX_TEXT_BYTES = 65_535
"""Location and content hash: Milvus's longest VARCHAR."""
MAX_METADATA_BYTES = 65_536
"""Metadata as compact JSON (no spaces after separators): Milvus's JSON field limit; ample for a product."""
MAX_METADATA_DEPTH = 32
"""Nesting levels of objects and lists: product metadata is flat or nearly so, and the response encoders
(pydantic, Python's json) refuse or recurse on a few hundred."""
MAX_NOTE_BYTES = 65_536
"""A note as compact JSON: Milvus keeps notes as collection properties and OpenSearch in the mapping's
``_meta``, both read on every open, so a note is a small record (a calibration), never a data set."""
NOTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""Note names are identifiers: they become a Milvus property key and an OpenSearch ``_meta`` key."""
COLOUR_SIZE = 12
"""Floats in an item's colour descriptor (``lookalike.colour.COLOUR_NAMES``; the index stores it and knows
no more of it, as it knows no model)."""
INT64_MIN, INT64_MAX = filters.INT64_MIN, filters.INT64_MAX
"""SQLite, OpenSearch's ``long`` and Milvus's JSON store integers as signed 64-bit; -2**63 is left out, as
filters must leave it out (Milvus cannot parse it as a literal), so that every stored integer can be found."""


@dataclass(frozen=True)
class Limits:
    """What one backend can hold beyond the shared item limits above: each backend class declares one."""

    backend: str
    """How messages name the backend."""
    max_dim: int | None = None
    """The largest vector dimension (None: only memory bounds it)."""
    max_k: int | None = None
    """The largest k of one search (None: any)."""
    embedded_options: bool = False
    """Whether it honours the embedded-only settings (``settings.EMBEDDED_ONLY_FIELDS``); others refuse them."""


@dataclass(frozen=True)
class Batch:
    """One add, checked whole: the items with their vectors as float32 rows, metadata as canonical JSON, and
    colours as float32 (or None). What a backend's ``_write`` receives: it needs to check nothing again."""

    items: Sequence[Item]
    vectors: np.ndarray
    metadata_json: list[str]
    colours: list[np.ndarray | None]

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def metadata(self) -> list[dict[str, Any]]:
        """The metadata as plain dicts (re-read from the canonical JSON: exactly what is stored)."""
        return [json.loads(text) for text in self.metadata_json]


def check_settings(settings: IndexSettings, limits: Limits) -> None:
    """Settings a backend can create an index with, checked before anything is created or any server is
    contacted: the settings' own rules (:meth:`IndexSettings.check`), the backend's largest dimension, and
    no embedded-only setting on a backend that would ignore it."""
    if not limits.embedded_options:  # first: "embedded only" is the clearer message for such a setting
        refuse_embedded_options(settings, limits.backend)
    settings.check()
    if limits.max_dim is not None and settings.dim > limits.max_dim:
        raise VectorSizeError(
            f"{limits.backend} holds vectors of at most {limits.max_dim} dimensions, got {settings.dim}"
        )


def check_k(k: Any, limits: Limits) -> int:
    """A search's k: a positive integer, within the backend's limit."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise IndexRequestError(f"k must be a positive integer, got {k!r}")
    if limits.max_k is not None and k > limits.max_k:
        raise IndexRequestError(f"k must be at most {limits.max_k} on {limits.backend}, got {k}")
    return k


def check_id(item_id: Any) -> str:
    """An id every backend can store: any text (folder ingests make ``tops/item-05.jpg``, manifests anything)
    up to :data:`MAX_ID_BYTES`; the web API refuses control characters on top, as a face's own rule."""
    if not isinstance(item_id, str) or not item_id:
        raise IndexError_(f"item ids must be non-empty strings, got {item_id!r}")
    size = _utf8_size(item_id, f"item id {item_id[:40]!r}")
    if size > MAX_ID_BYTES:
        raise IndexError_(f"item id {item_id[:40]!r}... is {size:,} bytes long (UTF-8); at most {MAX_ID_BYTES} allowed")
    return item_id


def check_vector(item_id: str, vector: Any, dim: int, metric: str) -> np.ndarray:
    """The item's vector as float32 of the index's dimension, finite, and with a direction under cosine."""
    if vector is None:
        raise VectorSizeError(f"item {item_id!r} has no vector")
    try:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as error:
        raise VectorSizeError(f"item {item_id!r} has a vector that is not a list of numbers: {error}") from None
    if array.shape[0] != dim:
        raise VectorSizeError(f"item {item_id!r} has a {array.shape[0]}-d vector; this index holds {dim}-d")
    if not np.isfinite(array).all():
        raise VectorSizeError(f"item {item_id!r} has a vector with NaN or infinite values (or beyond float32)")
    if metric == "cosine" and not array.any():
        raise VectorSizeError(f"item {item_id!r} has a zero vector, which has no direction to compare by cosine")
    return array


def check_colour(item_id: str, colour: Any) -> np.ndarray | None:
    """An item's colour descriptor as :data:`COLOUR_SIZE` float32 values, finite and non-negative (a
    histogram), or None for an item without one."""
    if colour is None:
        return None
    try:
        array = np.asarray(colour, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as error:
        raise IndexError_(f"item {item_id!r} has a colour that is not a list of numbers: {error}") from None
    if array.shape[0] != COLOUR_SIZE:
        raise IndexError_(f"item {item_id!r} has a colour of {array.shape[0]} values; a colour has {COLOUR_SIZE}")
    if not np.isfinite(array).all():
        raise IndexError_(f"item {item_id!r} has a colour with NaN or infinite values")
    if (array < 0).any():
        raise IndexError_(f"item {item_id!r} has a colour with negative values (it is a histogram)")
    return array


def check_query(vector: Any, dim: int, metric: str) -> np.ndarray:
    """A query vector: the index's dimension, finite, and not zero under cosine (it would match nothing)."""
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        raise VectorSizeError(f"query vector is {query.shape[0]}-d; this index holds {dim}-d")
    if not np.isfinite(query).all():
        raise VectorSizeError("query vector has NaN or infinite values")
    if metric == "cosine" and not query.any():
        raise VectorSizeError("query vector is all zeros, which has no direction to compare by cosine")
    return query


def check_metadata(item_id: str, metadata: Any) -> str:
    """Metadata as canonical JSON text (sorted keys, UTF-8), after checking it is plain, bounded JSON."""
    if not isinstance(metadata, dict):
        raise IndexError_(f"item {item_id!r} has metadata that is not an object: {type(metadata).__name__}")
    _check_json_value(f"item {item_id!r}", metadata)
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False)  # as stored since 0.1
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:  # the stored form has spaces; the limit is on the compact one, never larger
        size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise IndexError_(f"item {item_id!r} has {size:,} bytes of metadata (as JSON); at most {MAX_METADATA_BYTES:,}")
    return text


def check_text(item_id: str, value: Any, what: str) -> str | None:
    """Location or content hash: None or a string of bounded length."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise IndexError_(f"item {item_id!r}: {what} must be a string or None, got {type(value).__name__}")
    if _utf8_size(value, f"item {item_id!r}: {what}") > MAX_TEXT_BYTES:
        raise IndexError_(f"item {item_id!r}: {what} is longer than {MAX_TEXT_BYTES:,} bytes")
    return value


def check_note(name: Any, value: Any) -> str | None:
    """A note every backend can keep: an identifier name and a JSON object, returned as compact JSON
    (``None``, a removal, checks the name only and returns ``None``).

    Checked like metadata (no NaN, no lone surrogate, bounded depth), since it is read back whenever asked."""
    if not isinstance(name, str) or not NOTE_NAME.fullmatch(name):
        raise IndexError_(f"a note name must be lower-case letters, digits and _ (up to 64), got {name!r}")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise IndexError_(f"note {name!r} must be a JSON object, got {type(value).__name__}")
    value = dict(value)
    _check_json_value(f"note {name!r}", value, "JSON")
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if _utf8_size(text, f"note {name!r}") > MAX_NOTE_BYTES:
        raise IndexError_(f"note {name!r} is over {MAX_NOTE_BYTES} bytes as JSON")
    return text


def check_batch(items: Sequence[Item], settings: IndexSettings) -> Batch:
    """Every item of one add, checked before anything is written (:class:`Batch`)."""
    vectors, texts, colours = check_items(items, settings.dim, settings.metric)
    return Batch(items, vectors, texts, colours)


def check_items(items: Sequence[Any], dim: int, metric: str) -> tuple[np.ndarray, list[str], list[np.ndarray | None]]:
    """Every item of one add, checked before anything is written: (vectors, metadata JSON texts, colours)."""
    vectors = np.empty((len(items), dim), dtype=np.float32)
    texts: list[str] = []
    colours: list[np.ndarray | None] = []
    seen: set[str] = set()
    for row, item in enumerate(items):
        item_id = check_id(item.id)
        if item_id in seen:
            raise IndexError_(f"the same id appears twice in one add: {item_id!r}")
        seen.add(item_id)
        vectors[row] = check_vector(item_id, item.vector, dim, metric)
        texts.append(check_metadata(item_id, item.metadata))
        check_text(item_id, item.location, "location")
        check_text(item_id, item.content_hash, "content_hash")
        colours.append(check_colour(item_id, item.colour))
    return vectors, texts, colours


def _check_json_value(owner: str, root: dict[str, Any], what: str = "metadata") -> None:
    """Walk the JSON without recursion (a hostile nesting must not hit Python's recursion limit).

    ``owner`` names whose JSON it is in the error (``item 'x'``, ``note 'y'``), ``what`` which part."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                raise IndexError_(f"{owner} has {what} nested deeper than {MAX_METADATA_DEPTH} levels")
            if isinstance(value, dict):
                for key, child in value.items():
                    if not isinstance(key, str):
                        raise IndexError_(f"{owner} has a {what} key that is not text: {key!r}")
                    _utf8_size(key, f"{owner}: {what} key {key[:40]!r}")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in value)
        elif isinstance(value, str):
            _utf8_size(value, f"{owner}: {what} value {value[:40]!r}")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise IndexError_(
                    f"{owner} has a {what} integer outside the signed 64-bit range, which no backend "
                    "can store or compare (send it as text)"
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise IndexError_(f"{owner} has a {what} number that is NaN or infinite")
        else:
            raise IndexError_(f"{owner} has {what} that is not plain JSON: a {type(value).__name__} value")


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise IndexError_(f"{what} is not valid Unicode (a lone surrogate?): {error.reason}") from None
