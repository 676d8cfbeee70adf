"""The OpenSearch backend: one OpenSearch index per lookalike index, searched with the k-NN plugin.

Each item is one document whose ``_id`` is the item id::

    {"item_id": id, "vector": [floats], "vector_norm": |vector|, "metadata": {...}, "location": .., "content_hash": ..,
     "colour": [12 floats] (absent without one)}

The index's settings (dimension, metric, HNSW parameters, the model descriptor) live in the mapping's ``_meta``,
so :meth:`OpenSearchIndex.open` needs nothing but the index name.

Scores. OpenSearch ranks by its own ``_score``; we turn each back into our distance and report
``score_from_distance`` like every backend (docs: "Spaces", field-types/supported-field-types/knn-spaces):

* l2, approximate and exact (``knn_score`` script): ``_score = 1 / (1 + d^2)`` (``d^2`` squared Euclidean).
* cosinesimil, approximate (faiss >= 2.19, lucene): ``_score = (2 - (1 - cos)) / 2 = (1 + cos) / 2``.
* cosine, exact: the ``knn_score`` script's cosinesimil score changed between versions (``1 + cos`` before 2.19,
  ``(1 + cos) / 2`` in 2.19.0: k-NN issue #2561, documentation-website PR #9078), so exact cosine uses the
  Painless ``cosineSimilarity`` function, whose value is plain cosine in every version, as ``1.0 + cosine``.

Vectors. With faiss and cosinesimil the plugin stores unit vectors, and with derived source (default in 3.x) the
``_source`` gives those back (k-NN issue #3083); the stored ``vector_norm`` restores the original length.

Visibility. Writes mark the index stale and the next read (search, count, iteration, facets) refreshes it once, so
a search right after ``add`` sees the data without ``refresh=wait_for`` slowing every bulk request; ``save()``
refreshes too. :meth:`OpenSearchIndex.bulk_load` turns periodic refresh off for big ingests and restores it after.

Documentation relied on (https://docs.opensearch.org/latest/..., read from opensearch-project/documentation-website):

* field-types/supported-field-types/knn-vector, knn-methods-engines: ``knn_vector`` with ``dimension`` and
  ``method`` {name hnsw, engine faiss | lucene (nmslib deprecated), space_type, parameters m, ef_construction};
  faiss supports cosinesimil from 2.19. knn-spaces: the score table above.
* vector-search/settings: ``index.knn`` (static), ``index.knn.algo_param.ef_search`` (dynamic, default 100),
  ``index.knn.derived_source.enabled`` (default true).
* vector-search/vector-search-techniques/approximate-knn: the ``knn`` query {vector, k} with ``size``; k <= 10,000.
* vector-search/filter-search-knn/efficient-knn-filtering: ``filter`` inside the ``knn`` query (faiss from 2.9,
  lucene from 2.4) falls back to exact search over the matches, so k results come back when k match.
* vector-search/vector-search-techniques/knn-score-script and painless-functions: ``script_score`` with
  ``{"lang": "knn", "source": "knn_score", "params": {field, query_value, space_type}}`` over a filter query;
  Painless ``cosineSimilarity(params.query_value, doc[params.field])`` is the raw cosine.
* search-plugins/knn/performance-tuning and api-reference/index-apis/refresh: ``refresh_interval: -1`` while
  bulk indexing, then restore it and refresh.
* search-plugins/searching-data/paginate and point-in-time-api: PIT + ``search_after`` for deep pagination (2.4+).
* opensearch-py guides/auth.md: SigV4 with ``RequestsAWSV4SignerAuth(credentials, region, service)`` on
  ``RequestsHttpConnection``; service ``es`` (managed domains) or ``aoss`` (Serverless).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from lookalike.errors import IndexError_, IndexRequestError
from lookalike.index import filters, validate
from lookalike.index.base import VectorIndex
from lookalike.index.opensearch.client import _call, _connection, _reason
from lookalike.index.opensearch.config import ENGINES, Engine, OpenSearchConfig
from lookalike.index.opensearch.mapping import (
    BULK_BYTES,
    COLOUR_MAPPING,
    COSINE_SCRIPT,
    MAX_DIM,
    MAX_K,
    _mappings_of,
    _metadata_types,
    _possible_id,
    filter_clauses,
    index_body,
)
from lookalike.index.opensearch.reads import OpenSearchReads
from lookalike.index.results import Hit
from lookalike.index.settings import IndexSettings, settings_from_record
from lookalike.index.validate import Batch, Limits


class OpenSearchIndex(OpenSearchReads, VectorIndex):
    """A lookalike index kept in one OpenSearch k-NN index; open with :meth:`create` or :meth:`open`."""

    limits = Limits("OpenSearch", max_dim=MAX_DIM, max_k=MAX_K)
    """k is bounded by the k-NN query and the default result window."""

    def __init__(
        self,
        client: Any,
        name: str,
        settings: IndexSettings,
        engine: Engine,
        config: OpenSearchConfig,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.name = name
        self.settings = settings
        self.engine = engine
        self.config = config
        self._owns_client = owns_client
        self._serverless = config.aws_service == "aoss" and config.aws_region is not None
        self._stale = False  # written since the last refresh
        self._types: dict[str, str] | None = None  # metadata field -> mapped type, from the mapping
        self._colour_mapped = True  # the mapping declares "colour" (indexes made before colours do not)
        self._bulk_depth = 0
        self._dropped = False

    @classmethod
    def create(
        cls,
        config: OpenSearchConfig,
        name: str,
        settings: IndexSettings,
        engine: Engine | None = None,
        client: Any = None,
    ) -> OpenSearchIndex:
        """A new, empty index called ``name`` (which must not exist yet)."""
        engine = engine or config.engine
        if engine not in ENGINES:
            raise IndexRequestError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        validate.check_settings(settings, cls.limits)  # before connecting: a bad setting never reaches the cluster
        where = config.describe()
        with _connection(config, client) as (connection, owns):
            if _call(where, name, "check for an existing index", connection.indices.exists, index=name):
                raise IndexError_(f"an index named {name!r} already exists at {where}; choose another --name")
            body = index_body(settings, engine)
            try:
                _call(where, name, "create the index", connection.indices.create, index=name, body=body)
            except IndexError_ as error:
                if settings.metric == "cosine" and engine == "faiss" and "HTTP 400" in str(error):
                    raise IndexError_(
                        f"{error}. Faiss supports cosinesimil from OpenSearch 2.19; before that use "
                        "the lucene engine (add ?engine=lucene to the URL)"
                    ) from error
                raise
            index = cls(connection, name, settings, engine, config, owns)
        index._types = {}
        return index

    @classmethod
    def open(cls, config: OpenSearchConfig, name: str, client: Any = None) -> OpenSearchIndex:
        """An existing index; its settings come from the ``_meta`` written by :meth:`create`."""
        where = config.describe()
        with _connection(config, client) as (connection, owns):
            response = _call(where, name, "read the mapping", connection.indices.get_mapping, index=name, ignore=404)
            mappings = _mappings_of(response)
            meta = mappings.get("_meta", {}).get("lookalike")
            if not isinstance(meta, Mapping) or "settings" not in meta:
                raise IndexError_(
                    f"OpenSearch index {name!r} at {where} was not made by lookalike (no settings in _meta)"
                )
            settings = settings_from_record(meta["settings"], f"OpenSearch index {name!r} at {where}")
            index = cls(connection, name, settings, meta.get("engine", "faiss"), config, owns)
        index._types = _metadata_types(mappings)
        index._colour_mapped = "colour" in mappings.get("properties", {})
        return index

    @classmethod
    def exists(cls, config: OpenSearchConfig, name: str, client: Any = None) -> bool:
        with _connection(config, client) as (connection, owns):
            found = _call(config.describe(), name, "check for the index", connection.indices.exists, index=name)
            if owns:
                connection.close()
            return bool(found)

    def drop(self) -> None:
        """Delete the whole OpenSearch index."""
        self._call("delete the index", self.client.indices.delete, index=self.name, ignore=404)
        self._dropped = True
        self.close()

    def _write(self, batch: Batch) -> None:
        items, vectors, metadata, colours = batch.items, batch.vectors, batch.metadata(), batch.colours
        actions: list[dict[str, Any]] = []
        for item, meta, vector, colour in zip(items, metadata, vectors, colours, strict=True):
            actions.append({"index": {"_id": item.id}})
            document = {
                "item_id": item.id,
                "vector": vector.tolist(),
                "vector_norm": float(np.linalg.norm(vector)),
                "metadata": meta,
                "location": item.location,
                "content_hash": item.content_hash,
            }
            if colour is not None:
                document["colour"] = colour.tolist()
            actions.append(document)
        if not self._colour_mapped and any(colour is not None for colour in colours):
            # An index made before colours: declare the field first, or dynamic mapping would index it.
            body = {"properties": {"colour": COLOUR_MAPPING}}
            self._call("add the colour field", self.client.indices.put_mapping, index=self.name, body=body)
            self._colour_mapped = True
        per_request = 2 * max(1, BULK_BYTES // (20 * self.settings.dim + 1024))
        for start in range(0, len(actions), per_request):
            self._stale = True
            self._bulk(actions[start : start + per_request], "add items")

    def delete(self, ids: Iterable[str]) -> int:
        wanted = [i for i in dict.fromkeys(ids) if _possible_id(i)]
        deleted = 0
        for start in range(0, len(wanted), 1000):
            self._stale = True
            results = self._bulk([{"delete": {"_id": i}} for i in wanted[start : start + 1000]], "delete items")
            deleted += sum(1 for result in results if result.get("delete", {}).get("result") == "deleted")
        return deleted

    @contextmanager
    def bulk_load(self) -> Iterator[OpenSearchIndex]:
        """Periodic refresh off while a big ingest runs (the docs' advice for bulk loads), restored afterwards."""
        if self._bulk_depth or self._serverless:
            yield self
            return
        response = self._call(
            "read refresh_interval", self.client.indices.get_settings, index=self.name, name="index.refresh_interval"
        )
        first: dict[str, Any] = next(iter(response.values()), {})
        previous = first.get("settings", {}).get("index", {}).get("refresh_interval")
        self._put_settings({"refresh_interval": "-1"})
        self._bulk_depth += 1
        try:
            yield self
        finally:
            self._bulk_depth -= 1
            self._put_settings({"refresh_interval": previous})  # None resets the index default
            self.refresh()

    def _put_settings(self, values: dict[str, Any]) -> None:
        self._call("change settings", self.client.indices.put_settings, index=self.name, body={"index": values})

    def _bulk(self, actions: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        response = self._call(what, self.client.bulk, index=self.name, body=actions)
        results = response.get("items", [])
        if response.get("errors"):
            failed = [result for result in results if "error" in next(iter(result.values()), {})]
            first = next(iter(failed[0].values())) if failed else {}
            raise IndexError_(
                f"OpenSearch at {self.config.describe()} refused {len(failed)} of {len(results)} writes to index "
                f"{self.name!r}; the first, item {first.get('_id')!r}: {_reason(first)}"
            )
        return results

    def _knn(self, query: np.ndarray, k: int, conditions: list[filters.Condition], exact: bool) -> list[Hit]:
        clauses = self._filter_clauses(conditions)
        if clauses is None:
            return []  # a condition no document can meet
        brute = exact or self.settings.kind == "exact"
        body = self.exact_body(query, k, clauses) if brute else self.knn_body(query, k, clauses)
        self._refresh_if_stale()
        response = self._call("search", self.client.search, index=self.name, body=body)
        return [
            Hit(
                hit["_id"],
                self._distance(float(hit["_score"]), brute),
                hit.get("_source", {}).get("metadata"),
                hit.get("_source", {}).get("location"),
            )
            for hit in response["hits"]["hits"]
        ]

    def knn_body(self, query: np.ndarray, k: int, clauses: list[dict[str, Any]]) -> dict[str, Any]:
        """Approximate search; the filter goes inside the k-NN query (efficient filtering), not after it."""
        knn: dict[str, Any] = {"vector": query.tolist(), "k": k}
        if clauses:
            knn["filter"] = {"bool": {"filter": clauses}}
        return {"size": k, "query": {"knn": {"vector": knn}}, "_source": {"excludes": ["vector"]}}

    def exact_body(self, query: np.ndarray, k: int, clauses: list[dict[str, Any]]) -> dict[str, Any]:
        """Brute force over the filtered documents with a scoring script."""
        params: dict[str, Any] = {"field": "vector", "query_value": query.tolist()}
        if self.settings.metric == "l2":
            script = {"lang": "knn", "source": "knn_score", "params": {**params, "space_type": "l2"}}
        else:
            script = {"lang": "painless", "source": COSINE_SCRIPT, "params": params}
        inner = {"bool": {"filter": clauses}} if clauses else {"match_all": {}}
        return {
            "size": k,
            "query": {"script_score": {"query": inner, "script": script}},
            "_source": {"excludes": ["vector"]},
        }

    def _distance(self, score: float, exact: bool) -> float:
        """Undo OpenSearch's score translation (see the module docstring) to get our distance."""
        if self.settings.metric == "l2":
            return math.sqrt(max(1.0 / score - 1.0, 0.0)) if score > 0 else math.inf
        return 2.0 - score if exact else 2.0 - 2.0 * score

    def _filter_clauses(self, conditions: list[filters.Condition]) -> list[dict[str, Any]] | None:
        if not conditions:
            return []
        return filter_clauses(conditions, self._metadata_types({c.field for c in conditions}))

    def write_note(self, name: str, value: Mapping[str, Any] | None) -> None:
        # A mapping update replaces ``_meta`` whole, so the settings are written back with the notes (read,
        # changed and written: two writers of notes at once keep the later; items are not involved).
        text = validate.check_note(name, value)
        meta = self._lookalike_meta()
        notes = dict(meta.get("notes", {}))
        if text is None:
            notes.pop(name, None)
        else:
            notes[name] = json.loads(text)
        meta["notes"] = notes
        self._call(
            "write a note", self.client.indices.put_mapping, index=self.name, body={"_meta": {"lookalike": meta}}
        )

    def refresh(self) -> None:
        """Make every write so far visible to searches (Serverless refreshes on its own)."""
        if not self._serverless:
            self._call("refresh", self.client.indices.refresh, index=self.name)
        self._stale = False

    def _refresh_if_stale(self) -> None:
        if self._stale:
            self.refresh()

    def save(self) -> None:
        """Acknowledged writes are already durable (the translog); make them searchable too."""
        if not self._dropped:
            self._refresh_if_stale()

    def close(self) -> None:
        self.save()
        if self._owns_client:
            self.client.close()
            self._owns_client = False

    def _call(self, what: str, method: Callable[..., Any], /, **kwargs: Any) -> Any:
        return _call(self.config.describe(), self.name, what, method, **kwargs)
