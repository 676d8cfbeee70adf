"""Near-duplicate groups of a catalogue: copies, re-encodes and crops of one photo, found by k-NN on the index.

Each item is searched with its own vector (k nearest, itself left out): the index answers in milliseconds,
so the whole catalogue costs n small searches and never an n x n matrix. Candidates are the neighbours
scoring at least the calibration's ``pair``, and the nearest one if it scores in the verification band
(a tight crop of a photo scores lower than two photos of different jeans on one photographer's wall, so
scores alone cannot decide). A candidate is a copy when its score reaches ``identical`` or geometric
verification of the two images passes. Copies are joined into groups (union-find).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lookalike.confidence import verify
from lookalike.confidence.judge import same_picture
from lookalike.confidence.tiers import Calibration
from lookalike.index.base import Item, SearchResult, VectorIndex

NEIGHBOURS = 10


@dataclass
class Group:
    """Items that are one picture: ``ids`` best connected first, and the score of each pair found."""

    ids: list[str]
    pairs: list[tuple[str, str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "ids": self.ids,
            "pairs": [{"a": a, "b": b, "score": round(score, 4)} for a, b, score in self.pairs],
        }


def find_duplicates(
    index: VectorIndex,
    calibration: Calibration,
    neighbours: int = NEIGHBOURS,
    verifying: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[Group]:
    """Every group of near-identical items, largest first (then by id)."""
    verifying = verifying and calibration.inliers > 0 and verify.available()
    parent: dict[str, str] = {}

    def root(item_id: str) -> str:
        while parent.get(item_id, item_id) != item_id:
            parent[item_id] = parent.get(parent[item_id], parent[item_id])
            item_id = parent[item_id]
        return item_id

    pairs: list[tuple[str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    done = 0
    for batch in index.iter_items(with_vectors=True):
        for item in batch:
            for other, score in _copies_of(index, item, calibration, neighbours, verifying):
                key = (item.id, other) if item.id < other else (other, item.id)
                if key in seen:
                    continue
                seen.add(key)
                pairs.append((*key, score))
                a, b = root(key[0]), root(key[1])
                if a != b:
                    parent[max(a, b)] = min(a, b)
        done += len(batch)
        if progress:
            progress(done)
    members: dict[str, list[str]] = {}
    for a, b, _ in pairs:
        for item_id in (a, b):
            group = members.setdefault(root(item_id), [])
            if item_id not in group:
                group.append(item_id)
    by_root: dict[str, list[tuple[str, str, float]]] = {}
    for pair in pairs:
        by_root.setdefault(root(pair[0]), []).append(pair)
    groups = [Group(sorted(ids), sorted(by_root[key], key=lambda p: -p[2])) for key, ids in members.items()]
    return sorted(groups, key=lambda group: (-len(group.ids), group.ids[0]))


def _copies_of(
    index: VectorIndex,
    item: Item,
    calibration: Calibration,
    neighbours: int,
    verifying: bool,
) -> Iterator[tuple[str, float]]:
    """The neighbours of one item that are copies of it, with their scores."""
    assert item.vector is not None
    results = [hit for hit in index.search(item.vector, neighbours + 1) if hit.id != item.id][:neighbours]
    if not results:
        return
    candidates = [hit for hit in results if hit.score >= calibration.pair]
    if results[0].score < calibration.pair and results[0].score >= calibration.verify_from:
        candidates.append(results[0])
    for hit in candidates:
        if hit.score >= calibration.identical or (
            verifying and same_picture(SearchResult(item.id, 1.0, 0.0, {}, item.location), hit, calibration)
        ):
            yield hit.id, hit.score
