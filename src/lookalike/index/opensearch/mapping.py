"""The OpenSearch index's shape (the create request, see the package docstring), filters as bool clauses, and
how stored documents and aggregations read back in the contract's terms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lookalike.index import filters, validate
from lookalike.index.opensearch.config import Engine
from lookalike.index.settings import IndexSettings, shared_record

SPACE_TYPES = {"l2": "l2", "cosine": "cosinesimil"}

MAX_K = 10_000
"""The k-NN query's limit on k, and the default ``index.max_result_window`` for the exact query's size."""

MAX_DIM = 16_000

MAX_ID_BYTES = validate.MAX_ID_BYTES

BULK_BYTES = 8 * 1024 * 1024
"""Bulk requests stay under this estimate: AWS domains accept 10 MiB bodies on their smallest instances."""

PIT_KEEP_ALIVE = "5m"

COSINE_SCRIPT = "1.0 + cosineSimilarity(params.query_value, doc[params.field])"

META_FORMAT = 1

COLOUR_MAPPING = {"type": "float", "index": False, "doc_values": False}
"""The colour descriptor is only read back (by id, to re-rank), never searched: kept in ``_source`` alone."""

_NUMBER_TYPES = ("double", "float", "half_float", "scaled_float", "long", "integer", "short", "byte", "unsigned_long")

_FAMILIES = {
    "keyword": "string",
    "constant_keyword": "string",
    "boolean": "boolean",
    **dict.fromkeys(_NUMBER_TYPES, "number"),
}
"""Mapped type -> the JSON type its values have; fields of other types are neither filtered nor faceted."""


def index_body(settings: IndexSettings, engine: Engine) -> dict[str, Any]:
    """The create-index request: k-NN settings, the vector field, keyword metadata and our settings in ``_meta``."""
    metadata_templates = [
        ("metadata_strings", "string", {"type": "keyword", "ignore_above": 1024}),
        ("metadata_integers", "long", {"type": "double"}),  # 3 and 3.0 are one number, as in the filters
        ("metadata_reals", "double", {"type": "double"}),
    ]
    return {
        "settings": {"index": {"knn": True, "knn.algo_param.ef_search": settings.ef_search, "refresh_interval": "1s"}},
        "mappings": {
            "_meta": {"lookalike": {"format": META_FORMAT, "engine": engine, "settings": shared_record(settings)}},
            "date_detection": False,  # a date-like string stays a keyword, equal only to itself
            "dynamic_templates": [
                {name: {"path_match": "metadata.*", "match_mapping_type": json_type, "mapping": mapping}}
                for name, json_type, mapping in metadata_templates
            ],
            "properties": {
                "vector": {
                    "type": "knn_vector",
                    "dimension": settings.dim,
                    "method": {
                        "name": "hnsw",
                        "engine": engine,
                        "space_type": SPACE_TYPES[settings.metric],
                        "parameters": {"m": settings.hnsw_m, "ef_construction": settings.ef_construction},
                    },
                },
                "vector_norm": {"type": "float", "index": False, "doc_values": False},
                "colour": COLOUR_MAPPING,
                "item_id": {"type": "keyword"},
                "location": {"type": "keyword", "index": False},
                "content_hash": {"type": "keyword"},
                "metadata": {"type": "object", "dynamic": True},
            },
        },
    }


def filter_clauses(conditions: Iterable[filters.Condition], types: Mapping[str, str]) -> list[dict[str, Any]] | None:
    """term / terms / range clauses for a bool filter, or None when some condition can match nothing.

    A value only matches a field of its own JSON type (as in ``filters.matches``): OpenSearch would otherwise
    coerce, so 1 would match the keyword "1" and a word against a number field would be a 400 error.
    """
    clauses: list[dict[str, Any]] = []
    for condition in conditions:
        family = _FAMILIES.get(types.get(condition.field, ""))
        path = f"metadata.{condition.field}"
        if condition.kind == "range":
            if family != "number":
                return None
            clauses.append({"range": {path: dict(condition.bounds)}})
            continue
        values = [value for value in condition.values if family is not None and _family_of(value) == family]
        if not values:
            return None
        clauses.append({"term": {path: values[0]}} if len(values) == 1 else {"terms": {path: values}})
    return clauses


def _family_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "string"


def _mappings_of(response: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mappings`` of a get-mapping response, which is keyed by the (possibly aliased) index name."""
    first: dict[str, Any] = next(iter(response.values()), {})
    return first.get("mappings", {})


def _metadata_types(mappings: Mapping[str, Any]) -> dict[str, str]:
    """Top-level metadata field -> mapped type (nested objects are left out, as the embedded index does)."""
    properties = mappings.get("properties", {}).get("metadata", {}).get("properties", {})
    return {name: spec["type"] for name, spec in properties.items() if "type" in spec}


def _bucket_values(terms: Mapping[str, Any], family: str | None) -> dict[str, int]:
    """A terms aggregation's buckets as counted values (reals left out; 1 and "1" would share a key)."""
    values: dict[str, int] = {}
    for bucket in terms["buckets"]:
        value = _facet_value(bucket, family)
        if value is not None:
            values[value] = values.get(value, 0) + int(bucket["doc_count"])
    return values


def _facet_value(bucket: Mapping[str, Any], family: str | None) -> str | None:
    """A bucket's key as the embedded index shows it: "true"/"false", whole numbers without ".0", no reals."""
    if family == "boolean":
        return bucket.get("key_as_string") or ("true" if bucket["key"] else "false")
    if family == "number":
        key = float(bucket["key"])
        return str(int(key)) if key.is_integer() else None
    return str(bucket["key"])


def _original_length(vector: np.ndarray, norm: float | None) -> np.ndarray:
    """Undo faiss-cosine's normalisation of the stored vector (a no-op when it kept its length)."""
    length = float(np.linalg.norm(vector))
    if norm is None or length == 0 or abs(length - norm) <= 1e-6 * max(norm, 1.0):
        return vector
    return (vector * np.float32(norm / length)).astype(np.float32)


def _colour_of(source: Mapping[str, Any]) -> np.ndarray | None:
    colour = source.get("colour")
    return None if colour is None else np.asarray(colour, dtype=np.float32)


def _possible_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value.encode("utf-8")) <= MAX_ID_BYTES
