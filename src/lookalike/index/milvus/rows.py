"""The collection's layout (see the package docstring) and items to and from its rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from lookalike.errors import IndexError_, IndexFormatError
from lookalike.index import validate
from lookalike.index.base import Item
from lookalike.index.settings import IndexSettings, settings_from_record

FORMAT = 1
"""Version of the collection layout, recorded in the description."""

NOTE_PROPERTY = "lookalike.note."
"""Notes are collection properties (Milvus's key-value settings of a collection, which can change after it is
made, unlike the description that holds the settings) named with this prefix."""

MAX_ID_BYTES = validate.MAX_ID_BYTES

MAX_TEXT_BYTES = validate.MAX_TEXT_BYTES
"""Milvus's largest VARCHAR, for location and content hash."""

MAX_METADATA_BYTES = validate.MAX_METADATA_BYTES
"""Milvus 2.3 refuses a JSON value longer than this (as pymilvus encodes it)."""

MAX_DIM = 32_768

MAX_TOPK = 16_384
"""Milvus's limit on a search's k and on a query's offset + limit."""

ID_CHUNK = 1_000
"""Ids per ``item_id in [...]`` expression."""

WRITE_BATCH_BYTES = 16 * 1024 * 1024
"""Rows per upsert request are bounded by size, well under gRPC's message limit."""


def _settings_from(collection: Any, uri: str, name: str) -> IndexSettings:
    """The settings in the description, by the one policy of every backend (``settings_from_record``)."""
    try:
        record = json.loads(collection.description)["lookalike"]
        settings = record["settings"]
    except (ValueError, KeyError, TypeError) as error:
        raise IndexError_(f"the collection {name} at {uri} is not a lookalike index") from error
    if record.get("format") != FORMAT:
        raise IndexFormatError(
            f"{name} at {uri} has lookalike layout {record.get('format')!r}, expected {FORMAT}: "
            "a newer lookalike probably made it"
        )
    return settings_from_record(settings, f"the Milvus collection {name} at {uri}")


def _metric(settings: IndexSettings) -> str:
    return "COSINE" if settings.metric == "cosine" else "L2"


def _storable_id(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        return len(value.encode("utf-8")) <= MAX_ID_BYTES
    except UnicodeEncodeError:
        return False


def _encode_json(value: Any) -> bytes:
    """The bytes pymilvus sends for a JSON field (compact ujson), whose length Milvus limits."""
    import ujson  # a dependency of pymilvus

    return ujson.dumps(value, ensure_ascii=False).encode("utf-8")


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, bytes | str) and value:
        return json.loads(value)
    return {}


def _colour(value: Any) -> np.ndarray | None:
    """A stored colour ({"h": [...]}; {} or a missing field for none) as float32."""
    histogram = _metadata(value).get("h")
    return None if histogram is None else np.asarray(histogram, dtype=np.float32)


def _item(row: dict[str, Any], with_vector: bool) -> Item:
    vector = np.asarray(row["vector"], dtype=np.float32) if with_vector else None
    return Item(
        row["item_id"],
        vector,
        _metadata(row.get("metadata")),
        row.get("location") or None,
        row.get("content_hash") or None,
        _colour(row.get("colour")),
    )


def _batches(rows: list[tuple[Any, ...]], dim: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        row_size = 4 * dim + len(row[0]) + len(row[2]) + len(row[3]) + sum(len(_encode_json(j)) for j in row[4:])
        if batch and size + row_size > WRITE_BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch
