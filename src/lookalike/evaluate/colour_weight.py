"""The catalogue's default colour weight, tuned on its own labels (``lookalike calibrate --colour-from FIELD``).

How much colour may weigh before results stop being the same kind of item differs per catalogue (a shop of
plain T-shirts can let colour decide; a shop where colour and kind go together cannot). So the default is
measured here: "more like this" searches of sampled labelled items, through the product's search (no
folding), at each candidate weight; the largest weight whose same-label precision@10 stays within
``TOLERANCE`` of shape-only search is the default, and the measurement is kept with it (training figures:
the labels tuned it; ``bench/colour_effect.py`` reports the trade-off on the whole catalogue).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from lookalike import colour
from lookalike.catalog import Catalog
from lookalike.errors import LookalikeError

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
TOLERANCE = 0.02
"""How much same-label precision@10 the default may cost against colour 0."""
QUERIES = 200
K = 10


def tune_colour_weight(catalog: Catalog, field: str, queries: int = QUERIES, seed: int = 0) -> dict[str, Any]:
    """The note ``colour`` to keep: the chosen weight, and precision and colour share at every weight tried."""
    from lookalike.search import Shaping, search_item

    labelled = [
        (item.id, item.metadata[field])
        for batch in catalog.index.iter_items(with_vectors=False)
        for item in batch
        if item.metadata.get(field) not in (None, "")
    ]
    if len(labelled) <= K:
        raise LookalikeError(f"tuning the colour weight needs labelled items: {len(labelled)} carry {field!r}")
    sample = random.Random(seed).sample(labelled, min(queries, len(labelled)))
    shades = catalog.index.colours([item_id for item_id, _ in sample])
    sample = [(item_id, label) for item_id, label in sample if shades.get(item_id) is not None]
    if not sample:
        raise LookalikeError("tuning the colour weight needs items with colours (re-index with --force)")
    measured: dict[str, dict[str, float]] = {}
    for weight in WEIGHTS:
        precision, share = [], []
        for item_id, label in sample:
            answer = search_item(catalog, item_id, K, shaping=Shaping(dedupe=False, colour=weight))
            found = catalog.index.colours([hit.id for hit in answer.results])
            shade = shades[item_id]
            assert shade is not None  # only items with a colour are asked
            wanted = colour.dominant(shade)
            precision.append(np.mean([hit.metadata.get(field) == label for hit in answer.results]))
            share.append(np.mean([(other := found[hit.id]) is not None and colour.dominant(other) == wanted
                                  for hit in answer.results]))  # fmt: skip
        measured[str(weight)] = {
            "precision@10": round(float(np.mean(precision)), 4),
            "dominant_colour_share@10": round(float(np.mean(share)), 4),
        }
    floor = measured["0.0"]["precision@10"] - TOLERANCE
    chosen = max(weight for weight in WEIGHTS if measured[str(weight)]["precision@10"] >= floor)
    return {"weight": chosen, "tuned_on": field, "queries": len(sample), "tolerance": TOLERANCE, "measured": measured}
