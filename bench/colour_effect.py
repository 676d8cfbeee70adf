"""Colour or shape: what the ``colour`` weight of a search does to its results, through the product's search.

The clothing catalogue is indexed with the default model through the product's ingest (which stores each
item's colour descriptor beside its vector). For 600 random items, a "more like this" search (the item
itself left out, k=10, exact, no folding) at each colour weight; reported per weight:

* the share of the top 10 whose dominant colour is the query's (``lookalike.colour.dominant`` of the stored
  descriptors): what colour is for;
* same-label precision@10 (the data set's labels): what colour must not cost (the issue: within 0.05 of
  colour 0);
* the mean rank change of the results and the time of the re-ranking.

No method here learns from the data: the descriptor is fixed rules and the weights are the request's.

    .venv/bin/python bench/colour_effect.py [--model efficientnet-lite1] [--out bench/results/colour-effect.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tiers import cpu_flags

from lookalike import colour
from lookalike.catalog import open_or_create_catalog
from lookalike.ingest import ingest
from lookalike.search import Shaping, search_item
from lookalike.sources.datasets import clothing_dataset

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
QUERIES = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sources = list(clothing_dataset(fallback=False))
    labels = {source.id: source.metadata.get("label") for source in sources}
    workdir = Path(tempfile.mkdtemp(prefix="lookalike-colour-"))
    result: dict[str, Any] = {"model": args.model, "cpu": cpu_flags(), "queries": QUERIES, "weights": {}}
    try:
        catalog = open_or_create_catalog(workdir / "index", args.model, kind="exact")
        ingest(sources, catalog.index, catalog.embedder, progress=False)
        ids = [source.id for source in random.Random(0).sample(sources, QUERIES)]
        shades = catalog.index.colours(ids)
        for weight in WEIGHTS:
            same_colour, same_label, colour_ms = [], [], []
            for item_id in ids:
                answer = search_item(catalog, item_id, 10, exact=True, shaping=Shaping(dedupe=False, colour=weight))
                found = catalog.index.colours([hit.id for hit in answer.results])
                wanted = colour.dominant(shades[item_id])
                same_colour.append(np.mean([colour.dominant(found[hit.id]) == wanted for hit in answer.results]))
                same_label.append(np.mean([labels[hit.id] == labels[item_id] for hit in answer.results]))
                colour_ms.append(answer.timings_ms.get("colour", 0.0))
            result["weights"][str(weight)] = {
                "dominant_colour_share@10": round(float(np.mean(same_colour)), 4),
                "same_label_precision@10": round(float(np.mean(same_label)), 4),
                "colour_ms_p50": round(float(np.median(colour_ms)), 3),
            }
            print(weight, result["weights"][str(weight)], flush=True)
        catalog.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
