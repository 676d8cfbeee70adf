"""Facets: counted values highest first, which fields count, and the same answer on every backend."""

from __future__ import annotations

from typing import Any

import numpy as np

from lookalike.index import EmbeddedIndex, IndexSettings, Item

from .helpers import KIDS_VALUES, xfail_on

ONE_TYPE = "OpenSearch maps each metadata field to one type (the first value's): kids={}"


def test_facets(make_index, request) -> None:
    xfail_on(request, {"opensearch": ONE_TYPE.format("true/false first, so kids=1 is not counted")})
    index = make_index()
    rng = np.random.default_rng(0)
    rows = (
        [{"label": "Dress", "kids": True, "size": 38, "price": 9.5}] * 5
        + [{"label": "Skirt", "kids": False, "size": 40}] * 3
        + [{"label": "Shoe", "kids": 1, "tags": ["x"]}] * 2
        + [{"sku": f"s{i}"} for i in range(60)]
    )
    index.add([Item(f"i{n}", rng.normal(size=16), row) for n, row in enumerate(rows)])
    facets = index.facets()
    assert facets["label"] == {"Dress": 5, "Skirt": 3, "Shoe": 2}
    assert list(facets["label"]) == ["Dress", "Skirt", "Shoe"]  # most common first
    assert facets["size"] == {"38": 5, "40": 3}
    # Booleans are named as the filter syntax writes them (kids=true), and true is not mixed up with 1.
    assert facets["kids"] == {"true": 5, "false": 3, "1": 2}
    assert "price" not in facets  # real numbers are ranges, not choices
    assert "tags" not in facets
    assert "sku" not in facets  # more distinct values than max_values
    assert len(index.facets(max_values=100)["sku"]) == 60
    assert "label" not in index.facets(max_values=2)
    index.delete(["i0", "i1"])
    assert index.facets()["label"]["Dress"] == 3


def test_facets_equal_the_embedded_index(make_index, tmp_path, request) -> None:
    xfail_on(
        request,
        {
            "opensearch": "OpenSearch maps each metadata field to one type: kids (booleans, integers, text) and "
            "size (integers, text, a float) count only the first type's values"
        },
    )
    index = make_index("cosine", "hnsw")
    rng = np.random.default_rng(5)
    items = []
    for i in range(120):
        metadata: dict[str, Any] = {"label": ["Dress", "Shirt", "Pants"][i % 3], "kids": KIDS_VALUES[i % 7]}
        metadata["size"] = [1, "1", 2, "L", 2.5][i % 5]  # 1 and "1" share a key; floats are not counted
        metadata["sku"] = i  # many values
        if i % 4:
            metadata["colour"] = "red" if i % 2 else "blue"
        metadata["tags"] = ["a", "b"]  # lists are not counted
        items.append(Item(f"f{i}", rng.normal(size=16), metadata))
    index.add(items)
    with EmbeddedIndex.create(tmp_path / "reference", IndexSettings(dim=16, metric="cosine")) as reference:
        reference.add(items)
        for max_values in (50, 3, 200):
            assert index.facets(max_values) == reference.facets(max_values)
    facets = index.facets()
    # true (18) and "true" (17) share a key, as 1 and "1" do; 1.0 is a float and not counted
    assert facets["kids"] == {"true": 35, "1": 34, "false": 17, "0": 17}
    assert "sku" not in facets and "tags" not in facets
