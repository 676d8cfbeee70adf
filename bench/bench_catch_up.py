"""What keeping up with other processes costs a reader of the embedded index.

Before every search an EmbeddedIndex asks SQLite whether another connection committed (``PRAGMA
data_version``); this measures that check when nothing changed, a search for comparison, and catching up
with another process's 32-item batch (fetching it, then the first search, which searches the vectors not yet
in the HNSW graph by brute force: up to GRAPH_BATCH of them, inserted into the graph in one batch later).

    .venv/bin/python bench/bench_catch_up.py [--items 5000] [--dim 1280]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from lookalike.index.base import IndexSettings, Item
from lookalike.index.embedded import EmbeddedIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=1280)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.items} x {args.dim}-d HNSW")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        reader = EmbeddedIndex.create(directory, IndexSettings(dim=args.dim, metric="cosine", kind="hnsw"))
        for start in range(0, args.items, 1000):
            batch = range(start, min(start + 1000, args.items))
            reader.add([Item(f"i{j}", rng.standard_normal(args.dim).astype(np.float32)) for j in batch])
        reader.save()
        query = rng.standard_normal(args.dim).astype(np.float32)
        for _ in range(50):
            reader.search(query, 10)

        checks = 20_000
        started = time.perf_counter()
        for _ in range(checks):
            reader._catch_up()
        check = (time.perf_counter() - started) / checks
        searches = 1000
        started = time.perf_counter()
        for _ in range(searches):
            reader.search(query, 10)
        search = (time.perf_counter() - started) / searches
        print(f"check, nothing committed elsewhere: {check * 1e6:8.2f} us per query")
        print(f"search k=10 (check included):       {search * 1e6:8.0f} us per query")

        writer = EmbeddedIndex.open(directory)
        fetch, first = [], []
        for batch in range(20):
            writer.add([Item(f"n{batch}-{j}", rng.standard_normal(args.dim).astype(np.float32)) for j in range(32)])
            started = time.perf_counter()
            reader._catch_up()
            fetch.append(time.perf_counter() - started)
            started = time.perf_counter()
            reader.search(query, 10)
            first.append(time.perf_counter() - started)
        print(f"catching up with a 32-item batch:   {np.median(fetch) * 1e3:8.2f} ms (fetch)")
        print(f"first search after it:              {np.median(first) * 1e3:8.2f} ms (<= 640 vectors not in the graph)")
        writer.close()
        reader.close()


if __name__ == "__main__":
    main()
