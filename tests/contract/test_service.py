"""The search service over every backend: paging, exclusion, feedback, tiers and folding agree with the rule
applied to brute force (lookalike.search on a Catalog of each backend's index)."""

from __future__ import annotations

import numpy as np

from lookalike.index import Item

from .helpers import brute_force_items, queries_near


def test_paging_exclusion_and_feedback_agree_with_brute_force(filled, real_items, lite0) -> None:
    from lookalike.catalog import Catalog
    from lookalike.feedback import steer
    from lookalike.search import search_steered, search_vector

    catalog = Catalog(filled(real_items), lite0)
    for query in queries_near(real_items, 5):
        expected = [item_id for item_id, _ in brute_force_items(real_items, query, 25, "cosine")]
        page = search_vector(catalog, query, 10, exact=True, offset=10)
        assert [r.id for r in page.results] == expected[10:20]
        excluded = {expected[0], expected[3]}
        kept = search_vector(catalog, query, 10, exact=True, exclude=excluded)
        assert [r.id for r in kept.results] == [i for i in expected if i not in excluded][:10]
    query = queries_near(real_items, 1)[0]
    liked, disliked = real_items[1], real_items[2]
    steered = search_steered(catalog, query, 10, exact=True, positive=[liked.id], negative=[disliked.id])
    moved = steer(query, [liked.vector], [disliked.vector])
    expected = [i for i, _ in brute_force_items(real_items, moved, 12, "cosine") if i not in (liked.id, disliked.id)]
    assert [r.id for r in steered.results] == expected[:10]


def test_tiers_folding_and_min_tier_agree_with_the_rule_on_brute_force(filled, real_items, lite0) -> None:
    from lookalike.catalog import Catalog
    from lookalike.confidence.calibrate import calibration_digest
    from lookalike.confidence.tiers import NOTE, Calibration
    from lookalike.search import Shaping, search_vector

    items = real_items[:150]
    original = items[3]
    noise = np.random.default_rng(3).normal(0, 0.002, original.vector.shape).astype(np.float32)
    copy = Item("copy-of-3", original.vector + noise, dict(original.metadata), "/photos/copy.jpg", "hc")
    catalogue = [*items, copy]
    catalog = Catalog(filled(catalogue), lite0)
    rule = Calibration(same_item=1.02, pair=0.985, none=0.45, verify_from=0.8, inliers=0, settings="")
    rule = Calibration(**{**vars(rule), "settings": calibration_digest(catalog)})
    catalog.index.write_note(NOTE, rule.to_note())
    catalog.forget_calibration()

    query = original.vector + np.random.default_rng(4).normal(0, 0.02, original.vector.shape).astype(np.float32)
    expected = brute_force_items(catalogue, query, 40, "cosine")
    raw = search_vector(catalog, query, 10, exact=True, shaping=Shaping(dedupe=False))
    assert [r.id for r in raw.results] == [i for i, _ in expected[:10]]  # dedupe=false: every copy listed
    answer = search_vector(catalog, query, 10, exact=True)
    vectors = {item.id: item.vector / np.linalg.norm(item.vector) for item in catalogue}
    heads: list[str] = []
    folded: dict[str, list[str]] = {}
    for item_id, _ in expected:  # the reference fold: each result joins the first earlier hit it copies
        owner = next((h for h in heads if float(vectors[h] @ vectors[item_id]) >= rule.pair), None)
        if owner is None:
            heads.append(item_id)
            folded[item_id] = []
        else:
            folded[owner].append(item_id)
    assert [r.id for r in answer.results] == heads[:10]
    assert [r.duplicates for r in answer.results] == [folded[h] for h in heads[:10]]
    assert {original.id, copy.id} == {answer.results[0].id, *answer.results[0].duplicates}
    distance = dict(expected)
    assert [r.tier for r in answer.results] == rule.tiers([1 - distance[h] for h in heads[:10]])
    assert answer.match == "same_item"
    copies_only = search_vector(catalog, query, 10, exact=True, shaping=Shaping(min_tier="same_item"))
    assert [r.id for r in copies_only.results] == [r.id for r in answer.results if r.tier == "same_item"]
    assert copies_only.results[0].id == answer.results[0].id
    paged = search_vector(catalog, query, 5, exact=True, offset=5)
    assert [r.id for r in paged.results] == [r.id for r in answer.results[5:10]] and paged.match == "same_item"
    unrelated = -np.abs(query)  # points away from every (non-negative) embedding
    far = search_vector(catalog, unrelated, 5, exact=True)
    assert far.match == "none" and {r.tier for r in far.results} == {"none"}
    assert search_vector(catalog, unrelated, 5, exact=True, shaping=Shaping(min_tier="similar")).results == []
