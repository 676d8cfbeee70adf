"""Search the demo catalogue with one of its dress photos and print what comes back.

Run after ``lookalike index clothing --index DIR`` (``make demo`` does both).
"""

from __future__ import annotations

import argparse

from lookalike.catalog import open_catalog
from lookalike.search import search_image
from lookalike.sources.datasets import clothing_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", default=".lookalike/index")
    parser.add_argument("--label", default="Dress", help="search with the first catalogue photo of this label")
    parser.add_argument("-k", type=int, default=8)
    args = parser.parse_args()

    query = next(item for item in clothing_dataset() if item.metadata.get("label") == args.label)
    catalog = open_catalog(args.index)
    response = search_image(catalog, query.read(), k=args.k)
    timings = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in response.timings_ms.items())
    print(f"\nquery: {query.location} (label {args.label})\nmodel {response.model}; {timings}")
    print(f"match: {response.match}")  # same_item: the catalogue holds this very photo
    for rank, result in enumerate(response.results, 1):
        tier = result.tier or ""
        label = result.metadata.get("label", "")
        print(f"{rank:>2}. score {result.score:.3f}  {tier:<9}  {label:<12} {result.location}")
    same = sum(r.metadata.get("label") == args.label for r in response.results)
    print(f"{same} of {len(response.results)} results are labelled {args.label}.")
    catalog.close()


if __name__ == "__main__":
    main()
