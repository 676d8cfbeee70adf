"""Learn a catalogue's match tiers from the catalogue itself (``lookalike calibrate``, and the end of an ingest).

Three kinds of queries, all made here, none labelled by hand:

* **same item**: random altered copies (:mod:`.alterations`) of sampled catalogue photos, searched through
  the query path (decode, focus, model); the original should come first;
* **similar**: each sampled item searched with its own vector, itself left out (leave-one-out): its best
  match is another item, merely alike;
* **none**: drawn images from outside any catalogue (:mod:`.outside`).

From their best results the thresholds are chosen so that at most ``FALSE_SAME`` of the similar queries are
called the same item by the score rule, and at most as many again by geometric verification, and so that out
of domain images fall below ``none`` while at most ``FALSE_NONE`` of the similar ones do. The rates the
calibration reaches on these examples are kept with it (training figures; ``bench/tiers.py`` measures on
photos it did not learn from).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.catalog import Catalog
from lookalike.confidence import verify
from lookalike.confidence.alterations import KINDS, altered
from lookalike.confidence.fold import pairwise_scores, vectors_of
from lookalike.confidence.judge import VERIFIED
from lookalike.confidence.outside import out_of_domain
from lookalike.confidence.tiers import NOTE, Calibration, settings_digest
from lookalike.errors import LookalikeError
from lookalike.images import load_image

SAMPLES = 100
"""Catalogue photos altered (and twice as many searched leave-one-out)."""
COPIES_EACH = 3
OUT_OF_DOMAIN = 100
FALSE_SAME = 0.01
FALSE_NONE = 0.02
OOD_NONE = 0.95
CANDIDATES = 6
"""Results read per calibration query (enough to find the next distinct one)."""
MIN_INLIERS = 15
MIN_ITEMS = 10
MAX_PIXELS = 40_000_000
ALTERED_SIDE = 512
"""Copies are made from the photo decoded at about this shorter side: a shopper's photo reaches the model
downscaled anyway, and a 6,000 px catalogue photo would otherwise cost a full decode and encode per copy."""
"""Catalogue photos larger than this are left out of the sample (altering one decodes it whole)."""
IDENTICAL = 0.99
"""A score alone this high is one picture (re-encodes and resizes score 0.995 and more with every model here)."""


@dataclass
class _Row:
    """The best result of one calibration query."""

    score: float
    following: list[tuple[float, float]]
    """(score, score to the first result) of the results after the first."""
    first_is_original: bool
    inliers: list[tuple[float, int]]
    """(score, inliers) of the results checked geometrically."""

    def next_score(self, identical: float) -> float | None:
        """The next distinct result's score: the lead is judged after folding copies of the first."""
        return next((score for score, between in self.following if between < identical), None)


def calibration_digest(catalog: Catalog) -> str:
    settings = catalog.index.settings
    return settings_digest({"embedding": dict(settings.embedding), "metric": settings.metric})


def calibrate(
    catalog: Catalog, samples: int = SAMPLES, seed: int = 0, log: Callable[[str], None] | None = None
) -> Calibration:
    """Learn the tiers of ``catalog`` and keep them with its index (note ``calibration``)."""
    started = time.perf_counter()
    index = catalog.index
    count = index.count()
    if count < MIN_ITEMS:
        raise LookalikeError(f"calibration needs at least {MIN_ITEMS} items; the index holds {count}")
    rng = random.Random(seed)
    ids = _sample_ids(catalog, 2 * samples, rng)
    photos: list[tuple[str, bytes]] = []
    for item_id in ids:
        data = _read(catalog, item_id)
        if data is not None:
            photos.append((item_id, data))
    if not photos:
        raise LookalikeError("calibration needs the catalogue's photos, and none of the sampled items' could be read")
    verifying = verify.available()
    similar = [_leave_one_out(catalog, item_id, data, verifying) for item_id, data in photos]
    copies: list[_Row] = []
    for item_id, data in photos[:samples]:
        image = load_image(data, min_side=ALTERED_SIDE, max_pixels=MAX_PIXELS)
        image.thumbnail((2 * ALTERED_SIDE, 2 * ALTERED_SIDE))
        for kind in rng.sample(KINDS, COPIES_EACH):
            try:
                copies.append(_query(catalog, altered(image, kind, rng), item_id, verifying))
            except LookalikeError:  # a copy the query path refuses is no evidence either way
                continue
    outside = [_query(catalog, data, None, False) for data in out_of_domain(OUT_OF_DOMAIN, seed)]
    calibration = _choose(catalog, copies, similar, outside, count, verifying)
    index.write_note(NOTE, calibration.to_note())
    catalog.forget_calibration()
    if log:
        measured = calibration.measured
        log(
            f"calibrated on {measured['copies']} altered copies, {measured['similar']} catalogue items and "
            f"{measured['outside']} out-of-domain images in {time.perf_counter() - started:.1f} s: same item from "
            f"{calibration.same_item:.3f} (score + {calibration.gap_weight:g}·lead), pair {calibration.pair:.3f}, "
            f"none below {calibration.none:.3f}"
            + (f", verified from {calibration.verify_from:.3f} at {calibration.inliers} inliers" if verifying else "")
        )
    return calibration


def _sample_ids(catalog: Catalog, count: int, rng: random.Random) -> list[str]:
    """A reservoir sample of ids of items that record a location (one pass, without vectors)."""
    chosen: list[str] = []
    seen = 0
    for batch in catalog.index.iter_items(with_vectors=False):
        for item in batch:
            if not item.location:
                continue
            seen += 1
            if len(chosen) < count:
                chosen.append(item.id)
            elif (slot := rng.randrange(seen)) < count:
                chosen[slot] = item.id
    return chosen


def _read(catalog: Catalog, item_id: str) -> bytes | None:
    from lookalike.evaluate.duplicates import read_location

    item = catalog.index.get(item_id)
    try:
        data = read_location(item.location if item else None)
        load_image(data, max_pixels=MAX_PIXELS)
    except LookalikeError:
        return None
    return data


def _row(
    catalog: Catalog,
    vector: np.ndarray,
    image: bytes,
    original: str | None,
    exclude: str | None,
    verifying: bool,
) -> _Row:
    results = [hit for hit in catalog.index.search(vector, CANDIDATES + 1) if hit.id != exclude][:CANDIDATES]
    if not results:
        return _Row(0.0, [], False, [])
    vectors = vectors_of(catalog.index, [hit.id for hit in results])
    following: list[tuple[float, float]] = []
    if results[0].id in vectors:
        others = [hit for hit in results[1:] if hit.id in vectors]
        if others:
            matrix = np.stack([vectors[results[0].id], *[vectors[hit.id] for hit in others]])
            between = pairwise_scores(matrix, catalog.index.settings.metric)[0, 1:]
            following = [(hit.score, float(score)) for hit, score in zip(others, between, strict=True)]
    checked: list[tuple[float, int]] = []
    if verifying:
        try:
            query = verify.features_of_bytes(image, mirrored=True)
        except LookalikeError:  # a catalogue file that ingest took but this decode refuses: no check, no stop
            return _Row(results[0].score, following, results[0].id == original, checked)
        for hit in results[:VERIFIED]:
            candidate = verify.features_of_location(hit.location)
            if candidate is not None:
                checked.append((hit.score, verify.inliers(query, candidate)))
    return _Row(results[0].score, following, results[0].id == original, checked)


def _query(catalog: Catalog, image: bytes, original: str | None, verifying: bool) -> _Row:
    from lookalike.search import embed_query

    vector = embed_query(catalog, image).vector
    return _row(catalog, vector, image, original, None, verifying)


def _leave_one_out(catalog: Catalog, item_id: str, image: bytes, verifying: bool) -> _Row:
    item = catalog.index.get(item_id, with_vector=True)
    assert item is not None and item.vector is not None
    return _row(catalog, item.vector, image, None, item_id, verifying)


def _quantile(values: Sequence[float], q: float, default: float) -> float:
    return float(np.quantile(values, q)) if values else default


def _choose(
    catalog: Catalog, copies: list[_Row], similar: list[_Row], outside: list[_Row], count: int, verifying: bool
) -> Calibration:
    gap_weight = 2.0

    pair = min(1.0, max(0.9, _quantile([row.score for row in similar], 1 - FALSE_SAME, 0.95)))

    def combined(row: _Row) -> float:
        following = row.next_score(IDENTICAL)
        return row.score + gap_weight * (0.0 if following is None else max(0.0, row.score - following))

    same_item = _quantile([combined(row) for row in similar], 1 - FALSE_SAME, 1.0)
    none = min(
        _quantile([row.score for row in outside], OOD_NONE, 0.5),
        _quantile([row.score for row in similar], FALSE_NONE, 0.5),
    )
    verify_from = max(none, _quantile([row.score for row in copies], 0.01, none))
    inliers = 0
    if verifying:
        # pairs the score alone calls copies (the catalogue's own duplicates) do not count as distinct items
        distinct = [n for row in similar for score, n in row.inliers if verify_from <= score < IDENTICAL]
        inliers = max(MIN_INLIERS, int(_quantile(distinct, 1 - FALSE_SAME, 0)) + 1)
    calibration = Calibration(
        same_item=round(same_item, 4),
        pair=round(pair, 4),
        none=round(none, 4),
        verify_from=round(verify_from, 4),
        inliers=inliers,
        settings=calibration_digest(catalog),
        gap_weight=gap_weight,
        identical=IDENTICAL,
        made=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        items=count,
    )
    return _with_rates(calibration, copies, similar, outside)


def _tier(calibration: Calibration, row: _Row) -> str:
    tier = calibration.best_tier(row.score, row.next_score(calibration.identical))
    if tier != "same_item" and calibration.inliers:
        for score, n in row.inliers:
            if score >= calibration.verify_from and n >= calibration.inliers:
                return "same_item"
    return tier


def _with_rates(calibration: Calibration, copies: list[_Row], similar: list[_Row], outside: list[_Row]) -> Calibration:
    def share(rows: list[_Row], test: Callable[[_Row], bool]) -> float:
        return round(sum(map(test, rows)) / len(rows), 4) if rows else 0.0

    measured: dict[str, Any] = {
        "copies": len(copies),
        "similar": len(similar),
        "outside": len(outside),
        "copies_same_item": share(copies, lambda row: _tier(calibration, row) == "same_item"),
        "copies_original_first": share(copies, lambda row: row.first_is_original),
        "similar_same_item": share(similar, lambda row: _tier(calibration, row) == "same_item"),
        "similar_none": share(similar, lambda row: _tier(calibration, row) == "none"),
        "outside_none": share(outside, lambda row: _tier(calibration, row) == "none"),
    }
    return Calibration(**{**vars(calibration), "measured": measured})
