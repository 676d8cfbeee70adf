"""Build the committed fixture indexes: embedded indexes made by this release, with the answers they gave.

tests/test_fixture_indexes.py opens them with whatever the code is now and checks it answers the same: an
index built by a release must open, unchanged, after any redesign of the index code. Run this only to add
a fixture for a new release (never to refresh an old one: the old files are the point).

    python scripts/make-fixture-indexes.py tests/fixtures/indexes/2026-12
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lookalike.index import IndexSettings, Item
from lookalike.index.embedded import EmbeddedIndex

DIM = 16
ITEMS = 60
KINDS = {
    "hnsw-cosine": ("hnsw", "cosine", "none"),
    "exact-l2": ("exact", "l2", "none"),
    "hnsw-sq8": ("hnsw", "cosine", "sq8"),
}
FILTERS = [None, {"label": "Dress"}, {"price": {"lt": 30}}, {"label": ["Skirt", "Shoes"], "kids": True}]


def items(rng: np.random.Generator) -> list[Item]:
    labels = ("Dress", "Skirt", "Shoes", "Top")
    out = []
    for number in range(ITEMS):
        colour = rng.random(12).astype(np.float32)
        out.append(
            Item(
                id=f"item-{number:02d}" if number % 7 else f"folder/ünï {number}.jpg",
                vector=rng.standard_normal(DIM).astype(np.float32),
                metadata={
                    "label": labels[number % 4],
                    "price": 5 + number * 1.5,
                    "kids": number % 3 == 0,
                    "size": number % 5,
                },
                location=f"/catalogue/{number}.jpg",
                content_hash=f"{number:032x}",
                colour=colour / colour.sum(),
            )
        )
    return out


def answers(index: EmbeddedIndex, queries: np.ndarray) -> dict:
    return {
        "count": index.count(),
        "searches": [
            [[hit.id, round(float(hit.score), 5)] for hit in index.search(query, 8, filter)]
            for query in queries
            for filter in FILTERS
        ],
        "facets": index.facets(),
        "get": {item_id: _item(index.get(item_id, with_vector=True)) for item_id in ("item-01", "folder/ünï 7.jpg")},
        "notes": index.notes(),
        "settings": {"dim": index.settings.dim, "metric": index.settings.metric, "kind": index.settings.kind},
    }


def _item(item: Item | None) -> dict | None:
    if item is None:
        return None
    return {
        "metadata": item.metadata,
        "location": item.location,
        "content_hash": item.content_hash,
        "vector": [round(float(v), 6) for v in item.vector],
        "colour": None if item.colour is None else [round(float(v), 6) for v in item.colour],
    }


def main(target: Path) -> None:
    rng = np.random.default_rng(2026)
    catalogue = items(rng)
    queries = rng.standard_normal((4, DIM)).astype(np.float32)
    target.mkdir(parents=True, exist_ok=False)
    (target / "queries.json").write_text(json.dumps(queries.tolist()))
    for name, (kind, metric, encoding) in KINDS.items():
        settings = IndexSettings(
            dim=DIM, metric=metric, kind=kind, encoding=encoding, embedding={"model": "fixture", "dim": DIM}
        )
        index = EmbeddedIndex.create(target / name, settings)
        index.add(catalogue[:50])
        index.add(catalogue[50:])
        index.delete(["item-03"])  # a dead vector in the graph
        index.add([Item("item-04", catalogue[5].vector, {"label": "Top", "replaced": True})])  # an upsert
        index.write_note("calibration", {"made": "fixture", "same_item": 0.9})
        index.save()
        (target / f"{name}.json").write_text(json.dumps(answers(index, queries), indent=1, ensure_ascii=False))
        index.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
