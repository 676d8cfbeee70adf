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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from lookalike.errors import BackendUnavailableError, IndexError_, IndexRequestError
from lookalike.index import filters, validate
from lookalike.index.base import Item, VectorIndex
from lookalike.index.results import Hit, by_count, facets_under
from lookalike.index.settings import IndexSettings, settings_from_record, shared_record
from lookalike.index.validate import Batch, Limits

try:
    from opensearchpy.exceptions import ConnectionError as _Unreachable
    from opensearchpy.exceptions import OpenSearchException as _ClientError
except ImportError:  # the extra is not installed: only an injected client can be used

    class _ClientError(Exception):  # type: ignore[no-redef]
        """Stands in for opensearch-py's errors when it is missing; nothing raises it."""

    _Unreachable = _ClientError  # type: ignore[misc]

Engine = Literal["faiss", "lucene"]
ENGINES: tuple[Engine, ...] = ("faiss", "lucene")
DEFAULT_URL = "http://127.0.0.1:9200"
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
URL_OPTIONS = {"verify_certs", "ca_certs", "aws_region", "aws_service", "timeout", "engine"}
_NUMBER_TYPES = ("double", "float", "half_float", "scaled_float", "long", "integer", "short", "byte", "unsigned_long")
_FAMILIES = {
    "keyword": "string",
    "constant_keyword": "string",
    "boolean": "boolean",
    **dict.fromkeys(_NUMBER_TYPES, "number"),
}
"""Mapped type -> the JSON type its values have; fields of other types are neither filtered nor faceted."""


@dataclass
class OpenSearchConfig:
    """How to reach a cluster: hosts, and basic auth, TLS or AWS SigV4 signing."""

    hosts: list[str] = field(default_factory=lambda: [DEFAULT_URL])
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_ssl: bool | None = None
    """None: TLS when the hosts are https URLs."""
    verify_certs: bool = True
    ca_certs: str | None = None
    aws_region: str | None = None
    """Set to sign requests with SigV4 (boto3's default credentials) instead of basic auth."""
    aws_service: Literal["es", "aoss"] = "es"
    timeout: float = 30.0
    engine: Engine = "faiss"
    """The k-NN engine of indexes created with this config."""

    def __post_init__(self) -> None:
        if self.aws_service not in ("es", "aoss"):
            raise IndexError_(
                f"aws_service must be 'es' (managed domain) or 'aoss' (Serverless), got {self.aws_service!r}"
            )
        if self.engine not in ENGINES:
            raise IndexError_(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    @classmethod
    def from_url(cls, url: str) -> OpenSearchConfig:
        """``https://user:pass@host:9200?verify_certs=false&ca_certs=/ca.pem&aws_region=eu-west-1&engine=lucene``."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IndexError_(f"bad OpenSearch URL {url!r}: use http(s)://[user:password@]host[:port]")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if unknown := set(options) - URL_OPTIONS:
            raise IndexError_(f"unknown OpenSearch URL options {sorted(unknown)}; known: {sorted(URL_OPTIONS)}")
        address = parts.netloc.rsplit("@", 1)[-1]
        path = parts.path.rstrip("/")
        try:
            timeout = float(options.get("timeout", 30.0))
        except ValueError as error:
            raise IndexError_(f"bad timeout in OpenSearch URL {url!r}") from error
        return cls(
            hosts=[f"{parts.scheme}://{address}{path}"],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_ssl=parts.scheme == "https",
            verify_certs=options.get("verify_certs", "true").lower() not in ("false", "0", "no"),
            ca_certs=options.get("ca_certs"),
            aws_region=options.get("aws_region"),
            aws_service=options.get("aws_service", "es"),  # type: ignore[arg-type]
            timeout=timeout,
            engine=options.get("engine", "faiss"),  # type: ignore[arg-type]
        )

    def describe(self) -> str:
        return ", ".join(self.hosts)

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``opensearchpy.OpenSearch``."""
        use_ssl = self.use_ssl if self.use_ssl is not None else any(h.startswith("https://") for h in self.hosts)
        kwargs: dict[str, Any] = {
            "hosts": list(self.hosts),
            "use_ssl": use_ssl,
            "verify_certs": self.verify_certs,
            "timeout": self.timeout,
        }
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if self.aws_region:
            from opensearchpy import RequestsHttpConnection

            kwargs["http_auth"] = self._aws_auth()
            kwargs["connection_class"] = RequestsHttpConnection  # what the requests-based signer plugs into
        elif self.username is not None:
            kwargs["http_auth"] = (self.username, self.password or "")
        return kwargs

    def connect(self) -> Any:
        """A new ``opensearchpy.OpenSearch`` client."""
        try:
            from opensearchpy import OpenSearch
        except ImportError as error:
            raise IndexError_(
                "the OpenSearch backend needs opensearch-py: pip install 'lookalike[opensearch]'"
            ) from error
        return OpenSearch(**self.client_kwargs())

    def _aws_auth(self) -> Any:
        try:
            import boto3
            from opensearchpy import RequestsAWSV4SignerAuth
        except ImportError as error:
            raise IndexError_("signing OpenSearch requests for AWS needs boto3: pip install boto3") from error
        credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise IndexError_(
                f"no AWS credentials (environment, ~/.aws or an instance role) to sign requests to {self.describe()}"
            )
        return RequestsAWSV4SignerAuth(credentials, self.aws_region, self.aws_service)


class OpenSearchIndex(VectorIndex):
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

    # ----------------------------------------------------------------------------------- opening
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

    # ----------------------------------------------------------------------------------- writing
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
        previous = next(iter(response.values()), {}).get("settings", {}).get("index", {}).get("refresh_interval")
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

    # ----------------------------------------------------------------------------------- searching
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

    # ----------------------------------------------------------------------------------- reading
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

    # ----------------------------------------------------------------------------------- notes
    def _lookalike_meta(self) -> dict[str, Any]:
        return dict(self._mappings().get("_meta", {}).get("lookalike", {}))

    def notes(self) -> dict[str, dict[str, Any]]:
        return dict(self._lookalike_meta().get("notes", {}))

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

    def stats(self) -> dict[str, Any]:
        return {"items": self.count(), "engine": self.engine, "opensearch_index": self.name}

    # ----------------------------------------------------------------------------------- durability
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


# --------------------------------------------------------------------------------------- pure helpers
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
    return next(iter(response.values()), {}).get("mappings", {})


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


@contextmanager
def _connection(config: OpenSearchConfig, client: Any) -> Iterator[tuple[Any, bool]]:
    """The injected client, or a new one that is closed again if the block fails."""
    owns = client is None
    connection = config.connect() if owns else client
    try:
        yield connection, owns
    except BaseException:
        if owns:
            connection.close()
        raise


def _call(where: str, name: str, what: str, method: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run one client call; client errors and error bodies (``ignore=404``) become one clear IndexError_."""
    try:
        response = method(**kwargs)
    except _ClientError as error:
        raise _client_failure(error, where, name, what) from error
    if isinstance(response, Mapping) and "error" in response and "status" in response:
        raise _server_failure(response["status"], response, where, name, what)
    return response


def _client_failure(error: Exception, where: str, name: str, what: str) -> IndexError_:
    if isinstance(error, _Unreachable):
        return BackendUnavailableError(
            f"cannot reach OpenSearch at {where} to {what} (index {name!r}): {error}. "
            "Is the server running, and are the URL's scheme (http/https) and port right?"
        )
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        return IndexError_(f"the OpenSearch client could not {what} on index {name!r} at {where}: {error}")
    return _server_failure(status, getattr(error, "info", None), where, name, what)


def _server_failure(status: int, info: Any, where: str, name: str, what: str) -> IndexError_:
    reason = _reason(info)
    if status in (429, 502, 503, 504):  # overloaded or restarting: the request itself may be fine (a 503 to ours)
        return BackendUnavailableError(
            f"OpenSearch at {where} is unavailable to {what} on index {name!r} (HTTP {status}): {reason}"
        )
    if status == 404 and "index_not_found" in reason:
        return IndexError_(
            f"no OpenSearch index {name!r} at {where} (build one with: lookalike index SOURCE --backend opensearch)"
        )
    hint = ""
    if status in (401, 403):
        hint = "; check the username and password (or the AWS credentials and the domain's access policy)"
    return IndexError_(f"OpenSearch at {where} refused to {what} on index {name!r} (HTTP {status}): {reason}{hint}")


def _reason(info: Any) -> str:
    """The most specific reason in an OpenSearch error body or bulk item."""
    if not isinstance(info, Mapping):
        return str(info)
    error = info.get("error", info)
    if not isinstance(error, Mapping):
        return str(error)
    cause = (error.get("root_cause") or [error])[0]
    return f"{cause.get('type', 'error')}: {cause.get('reason', error.get('reason', ''))}"
