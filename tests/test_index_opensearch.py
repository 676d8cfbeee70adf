"""Contract tests for the OpenSearch backend, against a fake client that records every request.

They pin the request bodies to the shapes in OpenSearch's documentation and parse responses in the documented
shapes, so no cluster is needed. ``test_live_cluster_roundtrip`` runs the same calls against a real cluster
when ``OPENSEARCH_URL`` is set (for example ``OPENSEARCH_URL=https://admin:pass@localhost:9200?verify_certs=false``).
"""

from __future__ import annotations

import copy
import math
import operator
import os
import uuid
from typing import Any

import numpy as np
import pytest

from lookalike.errors import FilterError, IndexError_, VectorSizeError
from lookalike.index import IndexSettings, Item
from lookalike.index.opensearch import OpenSearchConfig, OpenSearchIndex

EMBEDDING = {"name": "efficientnet-lite0", "dim": 4, "preprocessing": {"size": 224}}
HOST = "http://search.example:9200"


# ----------------------------------------------------------------------------------------- the fake client


class FakeIndices:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def exists(self, index: str, **kwargs: Any) -> bool:
        self.client.record("indices.exists", index=index, **kwargs)
        return index in self.client.mappings

    def create(self, index: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.client.record("indices.create", index=index, body=body, **kwargs)
        self.client.mappings[index] = copy.deepcopy(body["mappings"])
        self.client.refresh_interval = body["settings"]["index"].get("refresh_interval")
        return {"acknowledged": True, "shards_acknowledged": True, "index": index}

    def get_mapping(self, index: str, **kwargs: Any) -> dict[str, Any]:
        self.client.record("indices.get_mapping", index=index, **kwargs)
        if index not in self.client.mappings:
            cause = {"type": "index_not_found_exception", "reason": f"no such index [{index}]", "index": index}
            return {"error": {"root_cause": [cause], **cause}, "status": 404}
        return {index: {"mappings": copy.deepcopy(self.client.mappings[index])}}

    def put_mapping(self, index: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """OpenSearch replaces ``_meta`` whole on a mapping update (and merges new properties)."""
        self.client.record("indices.put_mapping", index=index, body=body, **kwargs)
        mapping = self.client.mappings[index]
        if "_meta" in body:
            mapping["_meta"] = copy.deepcopy(body["_meta"])
        mapping.setdefault("properties", {}).update(copy.deepcopy(body.get("properties", {})))
        return {"acknowledged": True}

    def get_settings(self, index: str, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        self.client.record("indices.get_settings", index=index, name=name, **kwargs)
        interval = self.client.refresh_interval
        return {index: {"settings": {"index": {"refresh_interval": interval}} if interval else {}}}

    def put_settings(self, index: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.client.record("indices.put_settings", index=index, body=body, **kwargs)
        self.client.refresh_interval = body["index"]["refresh_interval"]
        return {"acknowledged": True}

    def refresh(self, index: str, **kwargs: Any) -> dict[str, Any]:
        self.client.record("indices.refresh", index=index, **kwargs)
        return {"_shards": {"total": 1, "successful": 1, "failed": 0}}

    def delete(self, index: str, **kwargs: Any) -> dict[str, Any]:
        self.client.record("indices.delete", index=index, **kwargs)
        self.client.mappings.pop(index, None)
        return {"acknowledged": True}


class FakeClient:
    """Records calls; keeps documents for bulk/get/count/paging; answers k-NN searches from a queue."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.indices = FakeIndices(self)
        self.mappings: dict[str, dict[str, Any]] = {}
        self.refresh_interval: str | None = None
        self.docs: dict[str, dict[str, Any]] = {}
        self.search_answers: list[dict[str, Any]] = []
        self.bulk_answer: dict[str, Any] | None = None
        self.failures: dict[str, Exception] = {}
        self.closed = False

    def record(self, name: str, /, **kwargs: Any) -> None:
        self.calls.append((name, copy.deepcopy(kwargs)))
        if name in self.failures:
            raise self.failures[name]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def last(self, name: str) -> dict[str, Any]:
        return next(kwargs for called, kwargs in reversed(self.calls) if called == name)

    def bulk(self, body: list[dict[str, Any]], index: str | None = None, **kwargs: Any) -> dict[str, Any]:
        self.record("bulk", body=body, index=index, **kwargs)
        if self.bulk_answer is not None:
            return self.bulk_answer
        items, lines = [], iter(body)
        for action in lines:
            verb, doc_id = next(iter(action)), next(iter(action.values()))["_id"]
            if verb == "index":
                source = next(lines)
                result = "updated" if doc_id in self.docs else "created"
                self.docs[doc_id] = copy.deepcopy(source)
                self._map_metadata(index, source["metadata"])
                items.append({"index": {"_index": index, "_id": doc_id, "result": result, "status": 201}})
            else:
                found = self.docs.pop(doc_id, None) is not None
                result, status = ("deleted", 200) if found else ("not_found", 404)
                items.append({"delete": {"_index": index, "_id": doc_id, "result": result, "status": status}})
        return {"took": 3, "errors": False, "items": items}

    def _map_metadata(self, index: str | None, metadata: dict[str, Any]) -> None:
        """What the dynamic templates do: strings keyword, numbers double, booleans boolean."""
        properties = self.mappings[index]["properties"]["metadata"].setdefault("properties", {})
        for key, value in metadata.items():
            kind = "boolean" if isinstance(value, bool) else "double" if isinstance(value, int | float) else "keyword"
            properties.setdefault(key, {"type": kind})

    def search(self, body: dict[str, Any] | None = None, index: str | None = None, **kwargs: Any) -> dict[str, Any]:
        self.record("search", body=body, index=index, **kwargs)
        if body and "sort" in body:
            return self._page(body)
        if not self.search_answers and body and "aggs" in body:
            return self._aggregate(body, index)
        return self.search_answers.pop(0)

    # -- aggregations, computed from the documents: only what facets and ranges send (a bool filter of term,
    # terms and range clauses as the query; terms, min, max and global aggregations), as OpenSearch answers it
    def _aggregate(self, body: dict[str, Any], index: str | None) -> dict[str, Any]:
        assert set(body) <= {"size", "query", "aggs"} and body["size"] == 0, body
        types = self._types(index)
        docs = [doc["metadata"] for doc in self.docs.values()]
        everything = docs
        if "query" in body:
            assert set(body["query"]) == {"bool"} and set(body["query"]["bool"]) == {"filter"}, body["query"]
            docs = [
                doc
                for doc in docs
                if all(self._passes(doc, clause, types) for clause in body["query"]["bool"]["filter"])
            ]
        answer = {name: self._aggregation(spec, docs, everything, types) for name, spec in body["aggs"].items()}
        return {"hits": {"total": {"value": len(docs), "relation": "eq"}, "hits": []}, "aggregations": answer}

    def _types(self, index: str | None) -> dict[str, str]:
        properties = self.mappings[index]["properties"]["metadata"].get("properties", {})
        return {name: spec["type"] for name, spec in properties.items()}

    @staticmethod
    def _typed(value: Any, kind: str) -> bool:
        """Whether a source value is one the field's mapping indexes (keyword text, double numbers, booleans)."""
        if kind == "boolean":
            return isinstance(value, bool)
        if kind == "double":
            return isinstance(value, int | float) and not isinstance(value, bool)
        return isinstance(value, str)

    def _passes(self, doc: dict[str, Any], clause: dict[str, Any], types: dict[str, str]) -> bool:
        ((kind, spec),) = clause.items()
        ((path, condition),) = spec.items()
        field = path.removeprefix("metadata.")
        value = doc.get(field)
        if field not in doc or not self._typed(value, types.get(field, "")):
            return False
        if kind == "term":
            return value == condition and isinstance(value, bool) == isinstance(condition, bool)
        if kind == "terms":
            return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in condition)
        assert kind == "range" and set(condition) <= {"gt", "gte", "lt", "lte"}, clause
        tests = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
        return all(tests[op](value, bound) for op, bound in condition.items())

    def _aggregation(
        self, spec: dict[str, Any], docs: list[dict[str, Any]], everything: list[dict[str, Any]], types: dict[str, str]
    ) -> dict[str, Any]:
        if "global" in spec:
            assert spec["global"] == {} and set(spec) == {"global", "aggs"}, spec
            inner = {name: self._aggregation(sub, everything, everything, types) for name, sub in spec["aggs"].items()}
            return {"doc_count": len(everything), **inner}
        ((kind, options),) = spec.items()
        field = options["field"].removeprefix("metadata.")
        mapped = types.get(field, "")
        values = [doc[field] for doc in docs if field in doc and self._typed(doc[field], mapped)]
        if kind in ("min", "max"):
            assert mapped == "double", spec
            return {"value": float((min if kind == "min" else max)(values)) if values else None}
        assert kind == "terms" and set(options) == {"field", "size"}, spec
        counts: dict[Any, int] = {}
        for value in values:
            key = float(value) if mapped == "double" else value
            counts[key] = counts.get(key, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        buckets = []
        for key, count in ranked[: options["size"]]:
            if mapped == "boolean":
                buckets.append({"key": int(key), "key_as_string": "true" if key else "false", "doc_count": count})
            else:
                buckets.append({"key": key, "doc_count": count})
        rest = sum(count for _, count in ranked[options["size"] :])
        return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": rest, "buckets": buckets}

    def _page(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = sorted(self.docs)
        if "search_after" in body:
            ids = [i for i in ids if i > body["search_after"][0]]
        hits = []
        for doc_id in ids[: body["size"]]:
            source = copy.deepcopy(self.docs[doc_id])
            wanted = body["_source"]
            if isinstance(wanted, dict) and "includes" in wanted:
                source = {key: value for key, value in source.items() if key in wanted["includes"]}
            elif isinstance(wanted, dict):
                source = {key: value for key, value in source.items() if key not in wanted["excludes"]}
            hits.append({"_index": "x", "_id": doc_id, "_score": None, "_source": source, "sort": [doc_id]})
        answer: dict[str, Any] = {"hits": {"total": {"value": len(self.docs), "relation": "eq"}, "hits": hits}}
        if "pit" in body:
            answer["pit_id"] = body["pit"]["id"]
        return answer

    def count(self, index: str, **kwargs: Any) -> dict[str, Any]:
        self.record("count", index=index, **kwargs)
        return {"count": len(self.docs), "_shards": {"total": 1, "successful": 1, "failed": 0}}

    def get(self, index: str, id: str, **kwargs: Any) -> dict[str, Any]:
        self.record("get", index=index, id=id, **kwargs)
        if id not in self.docs:
            return {"_index": index, "_id": id, "found": False}
        source = copy.deepcopy(self.docs[id])
        if kwargs.get("_source_excludes") == "vector":
            source.pop("vector")
        return {"_index": index, "_id": id, "_version": 1, "found": True, "_source": source}

    def mget(self, body: dict[str, Any], index: str, **kwargs: Any) -> dict[str, Any]:
        self.record("mget", body=body, index=index, **kwargs)
        docs = []
        for doc_id in body["ids"]:
            if doc_id not in self.docs:
                docs.append({"_index": index, "_id": doc_id, "found": False})
                continue
            source = copy.deepcopy(self.docs[doc_id])
            if "_source_includes" in kwargs:
                source = {key: value for key, value in source.items() if key in kwargs["_source_includes"].split(",")}
            docs.append({"_index": index, "_id": doc_id, "_version": 1, "found": True, "_source": source})
        return {"docs": docs}

    def create_pit(self, index: str, keep_alive: str, **kwargs: Any) -> dict[str, Any]:
        self.record("create_pit", index=index, keep_alive=keep_alive, **kwargs)
        return {"pit_id": "pit-1", "_shards": {"total": 1, "successful": 1}, "creation_time": 1}

    def delete_pit(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.record("delete_pit", body=body, **kwargs)
        return {"pits": [{"pit_id": pit, "successful": True} for pit in body["pit_id"]]}

    def close(self) -> None:
        self.closed = True


def make(metric: str = "l2", kind: str = "hnsw", dim: int = 4, engine: str | None = None, **settings: Any):
    client = FakeClient()
    index = OpenSearchIndex.create(
        OpenSearchConfig(hosts=[HOST]),
        "products",
        IndexSettings(dim=dim, metric=metric, kind=kind, embedding=EMBEDDING, **settings),  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
        client=client,
    )
    return index, client


def hits(*pairs: tuple[str, float], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A search response in the documented shape."""
    return {
        "took": 2,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(pairs), "relation": "eq"},
            "max_score": pairs[0][1] if pairs else None,
            "hits": [
                {
                    "_index": "products",
                    "_id": doc_id,
                    "_score": score,
                    "_source": {"item_id": doc_id, "metadata": metadata or {}, "location": f"/img/{doc_id}.jpg"},
                }
                for doc_id, score in pairs
            ],
        },
    }


ITEMS = [
    Item("a/1", np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), {"label": "Dress", "kids": True}, "/a1.jpg", "h1"),
    Item("b 2", np.array([0.0, 2.0, 0.0, 0.5], dtype=np.float32), {"label": "Skirt", "price": 12.5}, None, None),
]


# ----------------------------------------------------------------------------------------- creating and opening


def test_create_sends_the_documented_index_body() -> None:
    _, client = make("l2", hnsw_m=24, ef_construction=128, ef_search=100)
    assert client.names() == ["indices.exists", "indices.create"]
    create = client.last("indices.create")
    assert create["index"] == "products"
    assert create["body"] == {
        "settings": {"index": {"knn": True, "knn.algo_param.ef_search": 100, "refresh_interval": "1s"}},
        "mappings": {
            "_meta": {
                "lookalike": {
                    "format": 1,
                    "engine": "faiss",
                    "settings": {
                        "dim": 4,
                        "metric": "l2",
                        "kind": "hnsw",
                        "hnsw_m": 24,
                        "ef_construction": 128,
                        "ef_search": 100,
                        "embedding": EMBEDDING,
                    },
                }
            },
            "date_detection": False,
            "dynamic_templates": [
                {
                    "metadata_strings": {
                        "path_match": "metadata.*",
                        "match_mapping_type": "string",
                        "mapping": {"type": "keyword", "ignore_above": 1024},
                    }
                },
                {
                    "metadata_integers": {
                        "path_match": "metadata.*",
                        "match_mapping_type": "long",
                        "mapping": {"type": "double"},
                    }
                },
                {
                    "metadata_reals": {
                        "path_match": "metadata.*",
                        "match_mapping_type": "double",
                        "mapping": {"type": "double"},
                    }
                },
            ],
            "properties": {
                "vector": {
                    "type": "knn_vector",
                    "dimension": 4,
                    "method": {
                        "name": "hnsw",
                        "engine": "faiss",
                        "space_type": "l2",
                        "parameters": {"m": 24, "ef_construction": 128},
                    },
                },
                "vector_norm": {"type": "float", "index": False, "doc_values": False},
                "colour": {"type": "float", "index": False, "doc_values": False},
                "item_id": {"type": "keyword"},
                "location": {"type": "keyword", "index": False},
                "content_hash": {"type": "keyword"},
                "metadata": {"type": "object", "dynamic": True},
            },
        },
    }


def test_cosine_and_lucene_choose_the_space_and_engine() -> None:
    _, client = make("cosine", engine="lucene")
    method = client.last("indices.create")["body"]["mappings"]["properties"]["vector"]["method"]
    assert (method["engine"], method["space_type"]) == ("lucene", "cosinesimil")
    config = OpenSearchConfig.from_url("http://localhost:9200?engine=lucene")
    OpenSearchIndex.create(config, "other", IndexSettings(dim=4), client=client)
    assert client.last("indices.create")["body"]["mappings"]["properties"]["vector"]["method"]["engine"] == "lucene"


def test_create_refuses_an_existing_index_and_bad_settings() -> None:
    index, client = make()
    with pytest.raises(IndexError_, match="already exists"):
        OpenSearchIndex.create(index.config, "products", IndexSettings(dim=4), client=client)
    with pytest.raises(VectorSizeError):
        OpenSearchIndex.create(index.config, "zero", IndexSettings(dim=0), client=client)
    with pytest.raises(IndexError_, match="engine"):
        OpenSearchIndex.create(index.config, "nmslib", IndexSettings(dim=4), engine="nmslib", client=client)  # type: ignore[arg-type]
    assert client.names().count("indices.create") == 1


def test_open_recovers_settings_from_meta() -> None:
    created, client = make("cosine", kind="exact", engine="lucene", hnsw_m=8, ef_construction=64, ef_search=50)
    opened = OpenSearchIndex.open(created.config, "products", client=client)
    assert opened.settings == created.settings
    assert opened.settings.embedding == EMBEDDING
    assert opened.engine == "lucene"
    assert OpenSearchIndex.exists(created.config, "products", client=client)
    assert not OpenSearchIndex.exists(created.config, "missing", client=client)


def test_open_refuses_missing_and_foreign_indexes() -> None:
    client = FakeClient()
    config = OpenSearchConfig(hosts=[HOST])
    with pytest.raises(IndexError_, match=r"no OpenSearch index 'missing'.*lookalike index"):
        OpenSearchIndex.open(config, "missing", client=client)
    client.mappings["logs"] = {"properties": {"message": {"type": "text"}}}
    with pytest.raises(IndexError_, match="not made by lookalike"):
        OpenSearchIndex.open(config, "logs", client=client)


def test_drop_deletes_the_index() -> None:
    index, client = make()
    index.drop()
    assert client.last("indices.delete") == {"index": "products", "ignore": 404}
    assert not OpenSearchIndex.exists(index.config, "products", client=client)


# ----------------------------------------------------------------------------------------- writing


def test_add_sends_bulk_index_actions_with_the_item_as_source() -> None:
    index, client = make()
    index.add(ITEMS)
    bulk = client.last("bulk")
    assert bulk["index"] == "products"
    assert bulk["body"] == [
        {"index": {"_id": "a/1"}},
        {
            "item_id": "a/1",
            "vector": [1.0, 0.0, 0.0, 0.0],
            "vector_norm": 1.0,
            "metadata": {"label": "Dress", "kids": True},
            "location": "/a1.jpg",
            "content_hash": "h1",
        },
        {"index": {"_id": "b 2"}},
        {
            "item_id": "b 2",
            "vector": [0.0, 2.0, 0.0, 0.5],
            "vector_norm": pytest.approx(math.sqrt(4.25)),
            "metadata": {"label": "Skirt", "price": 12.5},
            "location": None,
            "content_hash": None,
        },
    ]
    assert all(type(value) is float for value in bulk["body"][1]["vector"] + bulk["body"][3]["vector"])


def test_add_splits_big_batches_into_several_bulk_requests() -> None:
    index, client = make(dim=2048)
    rng = np.random.default_rng(0)
    index.add([Item(f"i{n}", rng.normal(size=2048).astype(np.float32)) for n in range(500)])
    bodies = [kwargs["body"] for name, kwargs in client.calls if name == "bulk"]
    assert len(bodies) > 1 and sum(len(body) for body in bodies) == 1000
    assert len(client.docs) == 500


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Item("x", np.zeros(3)), VectorSizeError),
        (Item("x", np.zeros(5)), VectorSizeError),
        (Item("x", np.array([1.0, np.nan, 0.0, 0.0])), VectorSizeError),
        (Item("x", np.array([1.0, np.inf, 0.0, 0.0])), VectorSizeError),
        (Item("x", None), VectorSizeError),
        (Item("", np.ones(4)), IndexError_),
        (Item(None, np.ones(4)), IndexError_),  # type: ignore[arg-type]
        (Item("é" * 257, np.ones(4)), IndexError_),  # 514 bytes: over the _id limit
        (Item("x", np.ones(4), {"price": float("nan")}), IndexError_),
        (Item("x", np.ones(4), {"when": object()}), IndexError_),
        (Item("a/1", np.ones(4)), IndexError_),  # the same id twice in one add
        (Item("x", np.ones(4), colour=np.full(11, 1 / 11)), IndexError_),
        (Item("x", np.ones(4), colour=np.array([np.nan] + [0.1] * 11)), IndexError_),
    ],
)
def test_bad_items_are_refused_before_any_request(bad: Item, error: type[Exception]) -> None:
    index, client = make()
    with pytest.raises(error):
        index.add([*ITEMS, bad])
    assert "bulk" not in client.names()


def test_a_zero_vector_has_no_cosine() -> None:
    index, client = make("cosine")
    with pytest.raises(VectorSizeError, match="zero"):
        index.add([Item("z", np.zeros(4))])
    with pytest.raises(VectorSizeError, match="zeros"):
        index.search(np.zeros(4))
    assert "bulk" not in client.names() and "search" not in client.names()


def test_an_id_of_exactly_512_bytes_is_accepted() -> None:
    index, client = make()
    index.add([Item("é" * 256, np.ones(4))])
    assert client.last("bulk")["body"][0] == {"index": {"_id": "é" * 256}}


def test_bulk_errors_become_an_index_error_naming_the_first() -> None:
    index, client = make()
    reason = "failed to parse field [metadata.price] of type [double] in document with id 'b 2'"
    client.bulk_answer = {
        "took": 4,
        "errors": True,
        "items": [
            {"index": {"_index": "products", "_id": "a/1", "result": "created", "status": 201}},
            {
                "index": {
                    "_index": "products",
                    "_id": "b 2",
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": reason},
                }
            },
        ],
    }
    with pytest.raises(IndexError_, match=r"refused 1 of 2 writes.*'b 2'.*mapper_parsing_exception") as raised:
        index.add(ITEMS)
    assert HOST in str(raised.value)


def test_delete_sends_bulk_delete_actions_and_counts_what_existed() -> None:
    index, client = make()
    index.add(ITEMS)
    assert index.delete(["a/1", "nope", "a/1", "", "x" * 600]) == 1
    assert client.last("bulk")["body"] == [{"delete": {"_id": "a/1"}}, {"delete": {"_id": "nope"}}]
    assert index.delete([]) == 0
    assert list(client.docs) == ["b 2"]


def test_bulk_load_turns_refresh_off_and_restores_it() -> None:
    index, client = make()
    with index.bulk_load():
        assert client.refresh_interval == "-1"
        index.add(ITEMS)
    names = client.names()
    first = names.index("indices.get_settings")
    assert names[first:] == [
        "indices.get_settings",
        "indices.put_settings",
        "bulk",
        "indices.put_settings",
        "indices.refresh",
    ]
    puts = [kwargs["body"] for name, kwargs in client.calls if name == "indices.put_settings"]
    assert puts == [{"index": {"refresh_interval": "-1"}}, {"index": {"refresh_interval": "1s"}}]
    assert client.last("indices.get_settings") == {"index": "products", "name": "index.refresh_interval"}


def test_bulk_load_restores_refresh_even_when_the_load_fails() -> None:
    index, client = make()
    with pytest.raises(VectorSizeError), index.bulk_load():
        index.add([Item("bad", np.zeros(2))])
    assert client.refresh_interval == "1s"


def test_writes_are_refreshed_once_before_the_next_read() -> None:
    index, client = make()
    index.add(ITEMS)
    assert "indices.refresh" not in client.names()
    client.search_answers = [hits(), hits()]
    index.search(np.ones(4))
    assert client.names()[-2:] == ["indices.refresh", "search"]
    index.search(np.ones(4))
    assert client.names()[-2:] == ["search", "search"]
    index.delete(["a/1"])
    assert index.count() == 1
    assert client.names()[-2:] == ["indices.refresh", "count"]
    index.add(ITEMS)
    index.save()
    assert client.names()[-1] == "indices.refresh"
    index.close()
    assert not client.closed  # an injected client belongs to the caller


# ----------------------------------------------------------------------------------------- searching


def test_approximate_search_sends_a_knn_query_with_an_efficient_filter() -> None:
    index, client = make()
    index.add([*ITEMS, Item("c", np.ones(4), {"label": "Dress", "kids": False, "price": 30, "size": "M"})])
    client.search_answers = [hits()]
    query = np.array([0.5, 0.25, 0.0, 1.0], dtype=np.float32)
    wanted = {"label": "Dress", "kids": True, "size": ["S", "M"], "price": {"gte": 10, "lt": 50}}
    index.search(query, k=5, filter=wanted)
    body = client.last("search")["body"]
    assert client.last("search")["index"] == "products"
    assert body == {
        "size": 5,
        "query": {
            "knn": {
                "vector": {
                    "vector": [0.5, 0.25, 0.0, 1.0],
                    "k": 5,
                    "filter": {
                        "bool": {
                            "filter": [
                                {"term": {"metadata.label": "Dress"}},
                                {"term": {"metadata.kids": True}},
                                {"terms": {"metadata.size": ["S", "M"]}},
                                {"range": {"metadata.price": {"gte": 10.0, "lt": 50.0}}},
                            ]
                        }
                    },
                }
            }
        },
        "_source": {"excludes": ["vector"]},
    }
    assert body["query"]["knn"]["vector"]["filter"]["bool"]["filter"][1]["term"]["metadata.kids"] is True


def test_unfiltered_approximate_search_has_no_filter() -> None:
    index, client = make()
    client.search_answers = [hits()]
    index.search(np.ones(4), k=3)
    assert client.last("search")["body"] == {
        "size": 3,
        "query": {"knn": {"vector": {"vector": [1.0, 1.0, 1.0, 1.0], "k": 3}}},
        "_source": {"excludes": ["vector"]},
    }


@pytest.mark.parametrize(
    "impossible",
    [
        {"label": 3},  # a number against a keyword field
        {"label": True},
        {"price": "cheap"},  # a word against a number field
        {"kids": "true"},
        {"label": {"gte": 1}},  # a range over words
        {"colour": "red"},  # no item has the field
        {"label": [1, False]},
    ],
)
def test_filters_that_match_nothing_send_no_search(impossible: dict[str, Any]) -> None:
    index, client = make()
    index.add(ITEMS)
    assert index.search(np.ones(4), k=3, filter=impossible) == []
    assert "search" not in client.names()


def test_a_one_of_list_keeps_only_values_of_the_fields_type() -> None:
    index, client = make()
    index.add(ITEMS)
    client.search_answers = [hits()]
    index.search(np.ones(4), k=3, filter={"label": ["Dress", 1, True], "price": [12.5, "x"]})
    clauses = client.last("search")["body"]["query"]["knn"]["vector"]["filter"]["bool"]["filter"]
    assert clauses == [{"term": {"metadata.label": "Dress"}}, {"term": {"metadata.price": 12.5}}]


@pytest.mark.parametrize(("kind", "exact"), [("hnsw", True), ("exact", False), ("exact", True)])
def test_exact_l2_search_uses_the_knn_score_script(kind: str, exact: bool) -> None:
    index, client = make("l2", kind=kind)
    index.add(ITEMS)
    client.search_answers = [hits(), hits()]
    index.search(np.ones(4), k=7, exact=exact)
    assert client.last("search")["body"] == {
        "size": 7,
        "query": {
            "script_score": {
                "query": {"match_all": {}},
                "script": {
                    "lang": "knn",
                    "source": "knn_score",
                    "params": {"field": "vector", "query_value": [1.0, 1.0, 1.0, 1.0], "space_type": "l2"},
                },
            }
        },
        "_source": {"excludes": ["vector"]},
    }
    index.search(np.ones(4), k=7, exact=exact, filter={"label": "Skirt", "price": {"lte": 20}})
    assert client.last("search")["body"]["query"]["script_score"]["query"] == {
        "bool": {"filter": [{"term": {"metadata.label": "Skirt"}}, {"range": {"metadata.price": {"lte": 20.0}}}]}
    }


def test_exact_cosine_search_uses_painless_cosine_similarity() -> None:
    index, client = make("cosine")
    client.search_answers = [hits()]
    index.search(np.ones(4), k=2, exact=True)
    assert client.last("search")["body"]["query"]["script_score"]["script"] == {
        "lang": "painless",
        "source": "1.0 + cosineSimilarity(params.query_value, doc[params.field])",
        "params": {"field": "vector", "query_value": [1.0, 1.0, 1.0, 1.0]},
    }


@pytest.mark.parametrize("exact", [False, True])
def test_l2_scores_become_euclidean_distances(exact: bool) -> None:
    # Query 0; documents at squared distances 4 and 9 (vectors (1,1,1,1) and (1.5,1.5,1.5,1.5)):
    # OpenSearch scores them 1/(1+4) = 0.2 and 1/(1+9) = 0.1, approximate or exact.
    index, client = make("l2")
    client.search_answers = [hits(("near", 0.2), ("far", 0.1), metadata={"label": "Dress"})]
    results = index.search(np.zeros(4), k=2, exact=exact)
    assert [r.id for r in results] == ["near", "far"]
    assert [r.distance for r in results] == pytest.approx([2.0, 3.0])
    assert [r.score for r in results] == pytest.approx([0.2, 0.1])
    assert results[0].metadata == {"label": "Dress"} and results[0].location == "/img/near.jpg"


def test_cosine_scores_become_cosine_distances() -> None:
    # Query (1,0); documents (0.6,0.8) with cosine 0.6 and (0,1) with cosine 0.
    # The k-NN query scores (1 + cos) / 2: 0.8 and 0.5; the exact Painless script scores 1 + cos: 1.6 and 1.0.
    index, client = make("cosine", dim=2)
    client.search_answers = [hits(("a", 0.8), ("b", 0.5)), hits(("a", 1.6), ("b", 1.0))]
    for exact in (False, True):
        results = index.search(np.array([1.0, 0.0]), k=2, exact=exact)
        assert [r.distance for r in results] == pytest.approx([0.4, 1.0])
        assert [r.score for r in results] == pytest.approx([0.6, 0.0])


@pytest.mark.parametrize("k", [0, -1, True, False, 2.0, 2.5, "3", None, 10_001])
def test_bad_k_is_refused_before_any_request(k: Any) -> None:
    index, client = make()
    with pytest.raises(IndexError_):
        index.search(np.ones(4), k=k)
    assert "search" not in client.names()


def test_bad_query_vectors_and_filters_are_refused_before_any_request() -> None:
    index, client = make()
    for query in (np.zeros(3), np.zeros(5), np.zeros(0), np.array([1.0, np.nan, 0, 0]), np.array([np.inf, 0, 0, 0])):
        with pytest.raises(VectorSizeError):
            index.search(query, k=3)
    with pytest.raises(FilterError):
        index.search(np.ones(4), k=3, filter={"price": {"above": 3}})
    assert "search" not in client.names()


# ----------------------------------------------------------------------------------------- reading


def test_get_returns_the_item_with_or_without_its_vector() -> None:
    index, client = make()
    index.add(ITEMS)
    item = index.get("a/1")
    assert (item.id, item.vector, item.metadata, item.location, item.content_hash) == (
        "a/1",
        None,
        {"label": "Dress", "kids": True},
        "/a1.jpg",
        "h1",
    )
    assert client.last("get") == {"index": "products", "id": "a/1", "ignore": 404, "_source_excludes": "vector"}
    full = index.get("b 2", with_vector=True)
    assert full.vector.dtype == np.float32 and full.vector.tolist() == [0.0, 2.0, 0.0, 0.5]
    assert "_source_excludes" not in client.last("get")
    assert index.get("missing") is None
    assert index.get("") is None and index.get("x" * 600) is None


def test_colours_are_kept_in_the_source_and_read_with_one_multi_get() -> None:
    index, client = make()
    colour = np.linspace(0, 1, 12, dtype=np.float32) / np.float32(6)
    index.add([Item("red", ITEMS[0].vector, {}, None, None, colour), ITEMS[1]])
    bulk = client.last("bulk")["body"]
    assert bulk[1]["colour"] == colour.tolist() and "colour" not in bulk[3]  # no colour: no field
    assert "indices.put_mapping" not in client.names()  # a new index declares the field at creation
    found = index.colours(["red", "b 2", "missing", "x" * 600])
    assert client.last("mget") == {
        "body": {"ids": ["red", "b 2", "missing"]},
        "index": "products",
        "_source_includes": "colour",
    }
    assert found["red"].dtype == np.float32 and found["red"].tolist() == colour.tolist()
    assert found["b 2"] is None and found["missing"] is None and found["x" * 600] is None
    assert index.get("red").colour.tolist() == colour.tolist() and index.get("b 2").colour is None
    assert [item.colour is not None for batch in index.iter_items() for item in batch] == [False, True]


def test_an_index_made_before_colours_gets_the_field_declared_before_the_first_colour() -> None:
    _, client = make()
    del client.mappings["products"]["properties"]["colour"]  # as the current release creates it
    old = OpenSearchIndex.open(OpenSearchConfig(hosts=[HOST]), "products", client=client)
    old.add([ITEMS[1]])
    assert "indices.put_mapping" not in client.names()  # nothing to declare for an item without a colour
    assert old.colours(["b 2"]) == {"b 2": None}
    old.add([Item("red", ITEMS[0].vector, {}, None, None, np.full(12, 1 / 12, dtype=np.float32))])
    names = client.names()
    last_bulk = len(names) - 1 - names[::-1].index("bulk")
    assert names.index("indices.put_mapping") < last_bulk  # declared before the document that has one
    assert client.last("indices.put_mapping")["body"] == {
        "properties": {"colour": {"type": "float", "index": False, "doc_values": False}}
    }
    assert "_meta" in client.mappings["products"]  # adding a field leaves the settings alone
    old.add([Item("blue", ITEMS[0].vector, {}, None, None, np.full(12, 1 / 12, dtype=np.float32))])
    assert client.names().count("indices.put_mapping") == 1
    assert old.get("red").colour is not None


def test_get_restores_the_length_of_a_vector_stored_normalised() -> None:
    """faiss with cosinesimil stores unit vectors, and derived source returns them (k-NN issue #3083)."""
    index, client = make("cosine")
    index.add(ITEMS)
    client.docs["b 2"]["vector"] = (ITEMS[1].vector / np.linalg.norm(ITEMS[1].vector)).tolist()
    np.testing.assert_allclose(index.get("b 2", with_vector=True).vector, ITEMS[1].vector, rtol=1e-6)


def test_missing_index_on_get_is_an_index_error() -> None:
    index, client = make()
    client.get = lambda **kwargs: {  # type: ignore[method-assign]
        "error": {"root_cause": [{"type": "index_not_found_exception", "reason": "no such index [products]"}]},
        "status": 404,
    }
    with pytest.raises(IndexError_, match="no OpenSearch index 'products'"):
        index.get("a/1")


def test_count_content_hashes_and_iteration_page_through_a_point_in_time() -> None:
    index, client = make()
    items = [Item(f"i{n:02d}", np.full(4, n, dtype=np.float32), {"n": n}, f"/{n}.jpg", f"h{n}") for n in range(7)]
    index.add(items)
    assert index.count() == 7
    assert index.content_hashes() == {item.id: item.content_hash for item in items}
    batches = list(index.iter_items(batch_size=3))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    got = [item for batch in batches for item in batch]
    assert [item.id for item in got] == [item.id for item in items]
    assert all(np.array_equal(a.vector, b.vector) and a.metadata == b.metadata for a, b in zip(got, items, strict=True))
    pages = [kwargs for name, kwargs in client.calls if name == "search"][-3:]
    assert [page["body"].get("search_after") for page in pages] == [None, ["i02"], ["i05"]]
    assert all(page["index"] is None for page in pages)  # a PIT search names no index
    assert pages[1]["body"] == {
        "size": 3,
        "sort": [{"item_id": "asc"}],
        "_source": True,
        "search_after": ["i02"],
        "pit": {"id": "pit-1", "keep_alive": "5m"},
    }
    assert client.last("create_pit") == {"index": "products", "keep_alive": "5m"}
    assert client.last("delete_pit") == {"body": {"pit_id": ["pit-1"]}}
    without = next(index.iter_items(batch_size=10, with_vectors=False))
    assert all(item.vector is None for item in without)
    with pytest.raises(IndexError_):
        next(index.iter_items(batch_size=0))


def test_iteration_without_point_in_time_support_uses_search_after_on_the_index() -> None:
    opensearchpy = pytest.importorskip("opensearchpy")
    index, client = make()
    index.add(ITEMS)
    client.failures["create_pit"] = opensearchpy.exceptions.RequestError(400, "illegal_argument_exception", {})
    assert [item.id for batch in index.iter_items(batch_size=1) for item in batch] == ["a/1", "b 2"]
    assert client.last("search")["index"] == "products" and "pit" not in client.last("search")["body"]
    assert "delete_pit" not in client.names()


def test_facets_count_values_of_discovered_metadata_fields() -> None:
    index, client = make()
    index.add(ITEMS)
    client.search_answers = [
        {
            "hits": {"total": {"value": 2, "relation": "eq"}, "hits": []},
            "aggregations": {
                "f0": {"buckets": [{"key": 1, "key_as_string": "true", "doc_count": 1}], "sum_other_doc_count": 0},
                "f1": {
                    "buckets": [{"key": "Dress", "doc_count": 5}, {"key": "Skirt", "doc_count": 2}],
                    "sum_other_doc_count": 0,
                },
                "f2": {"buckets": [{"key": 12.0, "doc_count": 3}, {"key": 12.5, "doc_count": 1}]},
            },
        }
    ]
    assert index.facets(max_values=2) == {"kids": {"true": 1}, "label": {"Dress": 5, "Skirt": 2}, "price": {"12": 3}}
    assert client.last("search")["body"] == {
        "size": 0,
        "aggs": {
            "f0": {"terms": {"field": "metadata.kids", "size": 3}},
            "f1": {"terms": {"field": "metadata.label", "size": 3}},
            "f2": {"terms": {"field": "metadata.price", "size": 3}},
        },
    }
    client.search_answers = [
        {
            "aggregations": {
                "f0": {"buckets": [], "sum_other_doc_count": 0},
                "f1": {"buckets": [{"key": k, "doc_count": 1} for k in "xyz"], "sum_other_doc_count": 4},
                "f2": {"buckets": [], "sum_other_doc_count": 0},
            }
        }
    ]
    assert index.facets(max_values=2) == {}  # label has too many values; the others none


def test_facets_under_a_filter_query_its_clauses_and_count_every_document_in_a_global_aggregation() -> None:
    index, client = make()
    index.add(ITEMS)
    terms = {
        "f0": {"terms": {"field": "metadata.kids", "size": 51}},
        "f1": {"terms": {"field": "metadata.label", "size": 51}},
        "f2": {"terms": {"field": "metadata.price", "size": 51}},
    }
    # the fake counts the documents: a/1 {label Dress, kids true}, "b 2" {label Skirt, price 12.5}
    assert index.facets(filter={"label": "Skirt"}) == {"kids": {}, "label": {"Skirt": 1}}  # price: a real
    clauses = [{"term": {"metadata.label": "Skirt"}}]
    assert client.last("search")["body"] == {
        "size": 0,
        "query": {"bool": {"filter": clauses}},  # what a search under the filter sends
        "aggs": {**terms, "all": {"global": {}, "aggs": terms}},
    }
    assert index.knn_body(np.zeros(4, dtype=np.float32), 3, clauses)["query"]["knn"]["vector"]["filter"] == {
        "bool": {"filter": clauses}
    }
    assert index.facets() == {"kids": {"true": 1}, "label": {"Dress": 1, "Skirt": 1}}
    assert client.last("search")["body"] == {"size": 0, "aggs": terms}  # no filter: the body as before
    assert index.facets(filter={"label": 5}) == {"kids": {}, "label": {}}  # no document can match
    assert client.last("search")["body"] == {"size": 0, "aggs": terms}


def test_ranges_send_min_and_max_aggregations_of_the_number_fields_under_the_filter() -> None:
    index, client = make()
    assert index.ranges() == {}
    assert "search" not in client.names()  # no number field: nothing to ask
    index.add(ITEMS)
    aggs = {"min0": {"min": {"field": "metadata.price"}}, "max0": {"max": {"field": "metadata.price"}}}
    assert index.ranges() == {"price": (12.5, 12.5)}
    assert client.last("search")["body"] == {"size": 0, "aggs": aggs}
    assert index.ranges(filter={"kids": True}) == {}  # the kids' item has no price: min and max are null
    assert client.last("search")["body"] == {
        "size": 0,
        "aggs": aggs,
        "query": {"bool": {"filter": [{"term": {"metadata.kids": True}}]}},
    }
    searches = client.names().count("search")
    assert index.ranges(filter={"label": True}) == {}
    assert client.names().count("search") == searches  # a filter no document can meet sends nothing


def test_fields_are_the_mapped_metadata_properties() -> None:
    index, client = make()
    assert index.fields() == set()
    index.add(ITEMS)
    assert index.fields() == {"label", "kids", "price"}
    assert client.last("indices.get_mapping")["index"] == "products"


def test_facets_of_an_empty_index_send_no_search() -> None:
    index, client = make()
    assert index.facets() == {}
    assert "search" not in client.names()


# ----------------------------------------------------------------------------------------- client errors


def test_connection_refused_becomes_an_index_error_naming_the_host() -> None:
    opensearchpy = pytest.importorskip("opensearchpy")
    index, client = make()
    refused = opensearchpy.exceptions.ConnectionError("N/A", "Connection refused", OSError(111, "Connection refused"))
    client.failures["search"] = refused
    with pytest.raises(IndexError_, match=r"cannot reach OpenSearch at http://search\.example:9200 to search"):
        index.search(np.ones(4))
    client.failures["indices.exists"] = refused
    with pytest.raises(IndexError_, match="cannot reach"):
        OpenSearchIndex.create(index.config, "new", IndexSettings(dim=4), client=client)


def test_server_refusals_become_index_errors_with_the_reason() -> None:
    opensearchpy = pytest.importorskip("opensearchpy")
    index, client = make()
    info = {
        "error": {"root_cause": [{"type": "security_exception", "reason": "missing authentication"}]},
        "status": 401,
    }
    client.failures["count"] = opensearchpy.exceptions.AuthenticationException(401, "security_exception", info)
    with pytest.raises(IndexError_, match=r"HTTP 401.*security_exception: missing authentication.*username"):
        index.count()
    client.failures["bulk"] = opensearchpy.exceptions.TransportError(413, "Request Entity Too Large", "too large")
    with pytest.raises(IndexError_, match="HTTP 413"):
        index.add(ITEMS)


# ----------------------------------------------------------------------------------------- configuration


def test_config_from_url() -> None:
    config = OpenSearchConfig.from_url(
        "https://ad%40min:p%3Ass@search.example:9243/prefix?verify_certs=false&ca_certs=/ca.pem"
    )
    assert config.hosts == ["https://search.example:9243/prefix"]
    assert (config.username, config.password) == ("ad@min", "p:ss")
    assert (config.use_ssl, config.verify_certs, config.ca_certs) == (True, False, "/ca.pem")
    plain = OpenSearchConfig.from_url("localhost:9200")
    assert plain.hosts == ["http://localhost:9200"] and plain.username is None and plain.use_ssl is False
    aws = OpenSearchConfig.from_url("https://abc.eu-west-1.aoss.amazonaws.com?aws_region=eu-west-1&aws_service=aoss")
    assert (aws.aws_region, aws.aws_service) == ("eu-west-1", "aoss")
    for bad in ("ftp://host", "https://host?colour=red", "https://host?aws_service=s3", "https://host?engine=nmslib"):
        with pytest.raises(IndexError_):
            OpenSearchConfig.from_url(bad)


def test_basic_auth_and_tls_reach_the_client_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    opensearchpy = pytest.importorskip("opensearchpy")
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(opensearchpy, "OpenSearch", lambda **kwargs: made.append(kwargs) or FakeClient())
    config = OpenSearchConfig.from_url("https://user:secret@search.example:9200?verify_certs=false&ca_certs=/ca.pem")
    index = OpenSearchIndex.create(config, "products", IndexSettings(dim=4))
    assert made == [
        {
            "hosts": ["https://search.example:9200"],
            "use_ssl": True,
            "verify_certs": False,
            "timeout": 30.0,
            "ca_certs": "/ca.pem",
            "http_auth": ("user", "secret"),
        }
    ]
    client = index.client
    index.close()
    assert client.closed  # a client the index made is closed with it


def test_sigv4_signing_builds_an_aws_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    opensearchpy = pytest.importorskip("opensearchpy")
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = OpenSearchConfig.from_url("https://abc.eu-west-1.aoss.amazonaws.com?aws_region=eu-west-1&aws_service=aoss")
    kwargs = config.client_kwargs()
    assert isinstance(kwargs["http_auth"], opensearchpy.RequestsAWSV4SignerAuth)
    assert kwargs["http_auth"].signer.region == "eu-west-1" and kwargs["http_auth"].service == "aoss"
    assert kwargs["connection_class"] is opensearchpy.RequestsHttpConnection
    assert kwargs["use_ssl"] is True and "ca_certs" not in kwargs


# ----------------------------------------------------------------------------------------- a real cluster


def test_live_cluster_roundtrip() -> None:
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("OPENSEARCH_URL is not set (no OpenSearch cluster to test against)")
    config = OpenSearchConfig.from_url(url)
    name = f"lookalike-test-{uuid.uuid4().hex[:10]}"
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    items = [
        Item(f"p/{n}", vectors[n], {"label": ["Dress", "Skirt", "Shoe"][n % 3], "kids": n % 2 == 0, "price": n}, None)
        for n in range(60)
    ]
    for metric in ("l2", "cosine"):
        index = OpenSearchIndex.create(config, f"{name}-{metric}", IndexSettings(dim=8, metric=metric))  # type: ignore[arg-type]
        try:
            with index.bulk_load():
                index.add(items)
            assert index.count() == 60
            query = vectors[7] + 0.01
            if metric == "l2":
                truth = np.linalg.norm(vectors - query, axis=1)
            else:
                truth = 1 - vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
            order = np.argsort(truth, kind="stable")[:5]
            for exact in (True, False):
                results = index.search(query, k=5, exact=exact)
                assert [r.id for r in results] == [items[i].id for i in order]
                np.testing.assert_allclose([r.distance for r in results], truth[order], atol=1e-4)
            wanted = {"label": "Dress", "kids": True, "price": {"gte": 10, "lt": 40}}
            matching = {
                i.id
                for i in items
                if i.metadata["label"] == "Dress" and i.metadata["kids"] and 10 <= i.metadata["price"] < 40
            }
            for exact in (True, False):
                assert {r.id for r in index.search(query, k=60, filter=wanted, exact=exact)} == matching
            with OpenSearchIndex.open(config, index.name) as reopened:
                assert reopened.settings == index.settings
                got = reopened.get("p/7", with_vector=True)
            np.testing.assert_allclose(got.vector, vectors[7], rtol=1e-5, atol=1e-6)
            assert index.facets()["label"] == {"Dress": 20, "Skirt": 20, "Shoe": 20}
            assert len(index.content_hashes()) == 60
            assert index.delete(["p/7", "p/8", "nope"]) == 2
            assert index.count() == 58 and index.get("p/7") is None
            assert sum(len(batch) for batch in index.iter_items(batch_size=25)) == 58
        finally:
            index.drop()
        assert not OpenSearchIndex.exists(config, index.name)


def test_notes_live_in_meta_beside_the_settings_and_survive_reopening() -> None:
    index, client = make("cosine")
    index.write_note("calibration", {"same_item": 0.9})
    index.write_note("colour", {"weight": 0.3})
    index.write_note("colour", None)
    put = [kwargs for name, kwargs in client.calls if name == "indices.put_mapping"]
    assert len(put) == 3 and set(put[-1]["body"]) == {"_meta"}  # only _meta: no field mapping changes
    meta = client.mappings["products"]["_meta"]["lookalike"]
    assert meta["notes"] == {"calibration": {"same_item": 0.9}}
    opened = OpenSearchIndex.open(index.config, "products", client=client)
    assert opened.settings == index.settings  # the settings were written back with the notes
    assert opened.notes() == {"calibration": {"same_item": 0.9}}
    with pytest.raises(IndexError_, match="note name"):
        opened.write_note("../x", {})
    assert len([c for c in client.calls if c[0] == "indices.put_mapping"]) == 3  # refused before any request
