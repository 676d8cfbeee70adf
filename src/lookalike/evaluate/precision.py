"""Same-label precision@k, leave-one-out: "more like this" on every labelled item of the catalogue.

Every item whose label is not ignored is a query; the item itself is left out of its own results, and
precision@k is the share of its k neighbours that carry its label. Ignored labels (the clothing catalogue's
"Not sure", "Skip" and "Other": no visual class) are not queries but stay in the catalogue as distractors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lookalike.evaluate.neighbours import Snapshot, exact_neighbours
from lookalike.index import VectorIndex

NOT_CLASSES = ("Not sure", "Skip", "Other")
"""Labels of the clothing catalogue that name no class."""


@dataclass
class PrecisionReport:
    k_values: tuple[int, ...]
    precision: dict[int, float]
    queries: int
    exact: bool
    chance: float | None = None
    """The precision a random ranking would have: mean share of the other items carrying the query's label."""


def default_ignore_labels(snapshot: Snapshot, label_field: str = "label") -> tuple[str, ...]:
    """The non-classes (:data:`NOT_CLASSES`) present in the catalogue, when the label field is "label"."""
    if label_field != "label":
        return ()
    present = {str(value) for value in snapshot.values(label_field) if value is not None}
    return tuple(label for label in NOT_CLASSES if label in present)


def label_queries(snapshot: Snapshot, label_field: str, ignore: Iterable[str] = ()) -> np.ndarray:
    """Positions of the items with a label not in ``ignore`` (compared as text)."""
    ignored = {str(label) for label in ignore}
    return np.asarray(
        [
            position
            for position, value in enumerate(snapshot.values(label_field))
            if value is not None and str(value) not in ignored
        ],
        dtype=np.int64,
    )


def precision_from_neighbours(
    labels: list[object], queries: np.ndarray, neighbours: np.ndarray, k_values: tuple[int, ...]
) -> dict[int, float]:
    """Mean share, over the queries, of the first k neighbours (rows of positions, -1 = none) sharing the label."""
    if not len(queries):
        return {k: 0.0 for k in k_values}
    coded = np.append(value_codes(labels), -2)  # -2: what position -1 (no neighbour) reads, never a label
    same = coded[neighbours] == coded[queries][:, None]
    same &= neighbours >= 0
    return {k: float(same[:, :k].sum(axis=1).mean() / k) for k in k_values}


def value_codes(values: list[object]) -> np.ndarray:
    """One integer per distinct value (equal values, as ``==`` compares them, share a code); None is -1."""
    codes: dict[object, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for position, value in enumerate(values):
        if value is None:
            out[position] = -1
            continue
        key = value if isinstance(value, str | int | float) else json.dumps(value, sort_keys=True)
        out[position] = codes.setdefault(key, len(codes))
    return out


def chance_precision(labels: list[object], queries: np.ndarray) -> float:
    """Expected precision of a random ranking: the share of the *other* items with the query's label."""
    return same_value_chance(value_codes(labels), queries)


def same_value_chance(codes: np.ndarray, queries: np.ndarray) -> float:
    """Mean, over the queries, of the share of the other items whose code (-1: no value) equals the query's."""
    if not len(queries) or len(codes) < 2:
        return 0.0
    counts = np.bincount(codes[codes >= 0], minlength=int(codes.max()) + 1)
    return float(np.mean((counts[codes[queries]] - 1) / (len(codes) - 1)))


def same_label_precision(
    index: VectorIndex,
    k_values: tuple[int, ...] = (1, 10),
    label_field: str = "label",
    exact: bool = True,
    ignore_labels: Iterable[str] = (),
    sample: int | None = None,
    seed: int = 0,
    snapshot: Snapshot | None = None,
    neighbours: np.ndarray | None = None,
    among: np.ndarray | None = None,
) -> PrecisionReport:
    """Leave-one-out same-label precision at each k in ``k_values``.

    ``exact``: brute force over the whole catalogue in batches (:func:`exact_neighbours`, the same results as
    ``index.search(..., exact=True)``); else one approximate ``index.search`` per query, as a user's query
    runs. ``snapshot`` saves reading the index again; ``neighbours`` (exact, for every item of ``snapshot``,
    at least ``max(k_values)`` columns) saves the brute force. ``among``: a bool per item, only those are
    queries (a held-out half); their neighbours still come from the whole catalogue.
    """
    snapshot = snapshot if snapshot is not None else Snapshot.load(index)
    queries = label_queries(snapshot, label_field, ignore_labels)
    if among is not None:
        queries = queries[among[queries]]
    if sample is not None and sample < len(queries):
        queries = np.asarray(random.Random(seed).sample(list(queries), sample), dtype=np.int64)
    k_max = max(k_values)
    if exact:
        found = neighbours[queries, :k_max] if neighbours is not None else exact_neighbours(snapshot, k_max, queries)
    else:
        found = approximate_neighbours(index, snapshot, queries, k_max)
    labels = snapshot.values(label_field)
    precision = precision_from_neighbours(labels, queries, found, k_values)
    return PrecisionReport(k_values, precision, len(queries), exact, chance_precision(labels, queries))


def approximate_neighbours(index: VectorIndex, snapshot: Snapshot, queries: np.ndarray, k: int) -> np.ndarray:
    """Like :func:`exact_neighbours`, through the index's own (approximate) search, one query at a time."""
    position_of = {item_id: position for position, item_id in enumerate(snapshot.ids)}
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for row, query in enumerate(queries):
        results = index.search(snapshot.vectors[query], k + 1, exact=False)
        kept = [position_of[r.id] for r in results if r.id != snapshot.ids[query] and r.id in position_of][:k]
        out[row, : len(kept)] = kept
    return out
