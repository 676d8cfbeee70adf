"""What an OpenSearch index reads back: items by id, every document in order (point in time + search_after),
counts, facets and ranges (terms and min/max aggregations), fields and notes (the mapping)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.errors import IndexError_
from lookalike.index import filters
from lookalike.index.base import Item
from lookalike.index.opensearch.client import _client_failure, _ClientError, _Unreachable
from lookalike.index.opensearch.mapping import (
    _FAMILIES,
    MAX_K,
    PIT_KEEP_ALIVE,
    _bucket_values,
    _colour_of,
    _mappings_of,
    _metadata_types,
    _original_length,
    _possible_id,
)
from lookalike.index.results import by_count, facets_under

if TYPE_CHECKING:
    from lookalike.index.opensearch.config import OpenSearchConfig


class OpenSearchReads:
    """The reads of :class:`OpenSearchIndex` (``self.client``, refreshed first when ``self._stale``)."""

    # Set by OpenSearchIndex.__init__; declared here so this module reads (and type-checks) on its own.
    client: Any
    name: str
    engine: str
    config: OpenSearchConfig
    _serverless: bool
    _types: dict[str, str] | None

    if TYPE_CHECKING:

        def _call(self, what: str, method: Callable[..., Any], /, **kwargs: Any) -> Any: ...
        def _filter_clauses(self, conditions: list[filters.Condition]) -> list[dict[str, Any]] | None: ...
        def _refresh_if_stale(self) -> None: ...

    def get(self, id: str, with_vector: bool = False) -> Item | None:
        if not _possible_id(id):
            return None
        extra = {} if with_vector else {"_source_excludes": "vector"}
        response = self._call("get an item", self.client.get, index=self.name, id=id, ignore=404, **extra)
        if not response.get("found"):
            return None
        return self._item(response["_id"], response.get("_source", {}), with_vector)

    def _item(self, item_id: str, source: Mapping[str, Any], with_vector: bool) -> Item:
        vector = None
        if with_vector and source.get("vector") is not None:
            vector = _original_length(np.asarray(source["vector"], dtype=np.float32), source.get("vector_norm"))
        return Item(
            item_id,
            vector,
            source.get("metadata") or {},
            source.get("location"),
            source.get("content_hash"),
            _colour_of(source),
        )

    def colours(self, ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        """One multi-get (per 1,000 ids) of the colour field alone."""
        ids = list(ids)
        found: dict[str, np.ndarray | None] = dict.fromkeys(ids)
        wanted = [item_id for item_id in dict.fromkeys(ids) if _possible_id(item_id)]
        for start in range(0, len(wanted), 1000):
            body = {"ids": wanted[start : start + 1000]}
            response = self._call(
                "read colours", self.client.mget, index=self.name, body=body, _source_includes="colour"
            )
            for doc in response.get("docs", []):
                if doc.get("found"):
                    found[doc["_id"]] = _colour_of(doc.get("_source", {}))
        return found

    def count(self) -> int:
        self._refresh_if_stale()
        return int(self._call("count items", self.client.count, index=self.name)["count"])

    def content_hashes(self) -> dict[str, str | None]:
        return {
            hit["_id"]: hit.get("_source", {}).get("content_hash")
            for hits in self._scan(MAX_K, {"includes": ["content_hash"]})
            for hit in hits
        }

    def iter_items(self, batch_size: int = 1000, with_vectors: bool = True) -> Iterator[list[Item]]:
        source = True if with_vectors else {"excludes": ["vector"]}
        for hits in self._scan(batch_size, source):
            yield [self._item(hit["_id"], hit.get("_source", {}), with_vectors) for hit in hits]

    def _scan(self, batch_size: int, source: Any) -> Iterator[list[dict[str, Any]]]:
        """Every document in item_id order: ``search_after`` over a point in time, the docs' recommended deep
        pagination, or over the live index where PITs are unavailable (Serverless, OpenSearch before 2.4)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_K:
            raise IndexError_(f"batch_size must be an integer from 1 to {MAX_K}, got {batch_size!r}")
        self._refresh_if_stale()
        pit = self._open_pit()
        after: list[Any] | None = None
        try:
            while True:
                body: dict[str, Any] = {"size": batch_size, "sort": [{"item_id": "asc"}], "_source": source}
                if after is not None:
                    body["search_after"] = after
                if pit:
                    body["pit"] = {"id": pit, "keep_alive": PIT_KEEP_ALIVE}
                    response = self._call("page through items", self.client.search, body=body)
                    pit = response.get("pit_id", pit)
                else:
                    response = self._call("page through items", self.client.search, index=self.name, body=body)
                hits = response["hits"]["hits"]
                if hits:
                    yield hits
                if len(hits) < batch_size:
                    return
                after = hits[-1]["sort"]
        finally:
            if pit:
                self._close_pit(pit)

    def _open_pit(self) -> str | None:
        if self._serverless or not hasattr(self.client, "create_pit"):
            return None
        try:
            return self.client.create_pit(index=self.name, keep_alive=PIT_KEEP_ALIVE)["pit_id"]
        except _Unreachable as error:
            raise _client_failure(error, self.config.describe(), self.name, "open a point in time") from error
        except _ClientError:
            return None  # a server without PITs: plain search_after still pages through everything

    def _close_pit(self, pit: str) -> None:
        with suppress(_ClientError):  # it expires after PIT_KEEP_ALIVE anyway
            self.client.delete_pit(body={"pit_id": [pit]})

    def fields(self) -> set[str]:
        """The metadata properties of the mapping (a value only ever null or an empty list adds none)."""
        mappings = self._mappings()
        self._types = _metadata_types(mappings)
        return set(mappings.get("properties", {}).get("metadata", {}).get("properties", {}))

    def _facets(self, max_values: int, conditions: list[filters.Condition]) -> dict[str, dict[str, int]]:
        """Terms aggregations, one per keyword, number or boolean field. Under a filter the filter is the
        query (the clauses a search sends) and a ``global`` aggregation counts every document in the same
        request, which decides the fields."""
        self._types = None  # fields appear as items are added: read the mapping afresh
        families = {name: _FAMILIES.get(kind) for name, kind in self._metadata_types().items()}
        names = sorted(name for name, family in families.items() if family)
        if not names:
            return {}
        terms = {
            f"f{i}": {"terms": {"field": f"metadata.{name}", "size": max_values + 1}} for i, name in enumerate(names)
        }
        clauses = self._filter_clauses(conditions)
        body: dict[str, Any] = {"size": 0, "aggs": terms}
        if clauses:
            body = {
                "size": 0,
                "query": {"bool": {"filter": clauses}},
                "aggs": {**terms, "all": {"global": {}, "aggs": terms}},
            }
        self._refresh_if_stale()
        aggregations = self._call("count facet values", self.client.search, index=self.name, body=body)["aggregations"]
        everything: dict[str, dict[str, int]] = {}
        for i, name in enumerate(names):
            counted = (aggregations["all"] if clauses else aggregations)[f"f{i}"]
            if len(counted["buckets"]) > max_values or counted.get("sum_other_doc_count", 0):
                continue  # too many distinct values to offer as choices
            values = _bucket_values(counted, families[name])
            if values:
                everything[name] = by_count(values)
        if not conditions:
            return everything
        if not clauses:  # None: a condition no document can meet
            return {name: {} for name in everything}
        index_of = {name: i for i, name in enumerate(names)}
        return facets_under(
            everything,
            {name: _bucket_values(aggregations[f"f{index_of[name]}"], families[name]) for name in everything},
        )

    def _ranges(self, conditions: list[filters.Condition]) -> dict[str, tuple[float, float]]:
        """min and max aggregations over the number-mapped fields (integers and reals are both mapped double),
        under the filter's clauses as the query."""
        self._types = None
        names = sorted(name for name, kind in self._metadata_types().items() if _FAMILIES.get(kind) == "number")
        clauses = self._filter_clauses(conditions)
        if not names or clauses is None:
            return {}
        aggs: dict[str, Any] = {}
        for i, name in enumerate(names):
            aggs[f"min{i}"] = {"min": {"field": f"metadata.{name}"}}
            aggs[f"max{i}"] = {"max": {"field": f"metadata.{name}"}}
        body: dict[str, Any] = {"size": 0, "aggs": aggs}
        if clauses:
            body["query"] = {"bool": {"filter": clauses}}
        self._refresh_if_stale()
        aggregations = self._call("read numeric ranges", self.client.search, index=self.name, body=body)["aggregations"]
        spans = {}
        for i, name in enumerate(names):
            low, high = aggregations[f"min{i}"].get("value"), aggregations[f"max{i}"].get("value")
            if low is not None and high is not None:  # null: no passing document has a number there
                spans[name] = (float(low), float(high))
        return spans

    def _metadata_types(self, needed: Iterable[str] = ()) -> dict[str, str]:
        if self._types is None or any(name not in self._types for name in needed):
            self._types = _metadata_types(self._mappings())
        return self._types

    def _mappings(self) -> dict[str, Any]:
        return _mappings_of(self._call("read the mapping", self.client.indices.get_mapping, index=self.name))

    def _lookalike_meta(self) -> dict[str, Any]:
        return dict(self._mappings().get("_meta", {}).get("lookalike", {}))

    def notes(self) -> dict[str, dict[str, Any]]:
        return dict(self._lookalike_meta().get("notes", {}))

    def stats(self) -> dict[str, Any]:
        return {"items": self.count(), "engine": self.engine, "opensearch_index": self.name}
