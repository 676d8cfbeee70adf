"""Congruence: the same calls on every backend give the same answers.

Runs on the embedded backend always, on Milvus when a server answers (``make test`` starts one in a private
network namespace), and on OpenSearch when ``OPENSEARCH_URL`` is set. The reference is NumPy brute force
over real embeddings (clothing photos when the data set is present, synthetic photos otherwise).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from lookalike.index import Item, VectorIndex
from lookalike.index.backends import IndexTarget, create_index
from lookalike.index.base import IndexSettings
from lookalike.index.filters import matches, normalize

MILVUS_URI = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL")
CATALOGUE_SIZE = 600


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


def _backend_params() -> list:
    return [
        pytest.param("embedded", id="embedded"),
        pytest.param(
            "milvus",
            id="milvus",
            marks=pytest.mark.skipif(not _answers(MILVUS_URI), reason=f"no Milvus server at {MILVUS_URI}"),
        ),
        pytest.param(
            "opensearch",
            id="opensearch",
            marks=pytest.mark.skipif(not OPENSEARCH_URL, reason="OPENSEARCH_URL is not set (no cluster here)"),
        ),
    ]


@pytest.fixture(scope="session")
def real_items(lite0) -> list[Item]:
    """Real embeddings with real metadata: clothing photos if present, else synthetic product photos."""
    from conftest import make_photo

    from lookalike.images import load_image
    from lookalike.sources import clothing_dataset
    from lookalike.sources.datasets import find_clothing_dataset

    if find_clothing_dataset() is not None:
        sources = list(clothing_dataset())[:CATALOGUE_SIZE]
        entries = [(s.id, s.read(), s.metadata) for s in sources]
    else:
        rng = np.random.default_rng(0)
        labels = ["Dress", "Shirt", "Pants", "Shoes"]
        entries = [
            (
                f"synthetic/{i:04d}",
                make_photo(i, size=(200, 260)),
                {"label": labels[i % 4], "kids": bool(i % 3 == 0), "sender_id": int(rng.integers(0, 300))},
            )
            for i in range(300)
        ]
    vectors = []
    for start in range(0, len(entries), 64):
        images = [load_image(data, min_side=256) for _, data, _ in entries[start : start + 64]]
        vectors.append(lite0.embed(images))
    matrix = np.concatenate(vectors)
    return [
        Item(item_id, matrix[i], metadata, f"/photos/{i}.jpg", f"h{i}")
        for i, (item_id, _, metadata) in enumerate(entries)
    ]


@pytest.fixture
def make_index(request, tmp_path: Path) -> Iterator[Callable[[str, str], VectorIndex]]:
    backend = request.param
    created: list[VectorIndex] = []

    def make(metric: str = "cosine", kind: str = "hnsw") -> VectorIndex:
        name = f"congruence_{uuid.uuid4().hex[:12]}"
        url = {"milvus": MILVUS_URI, "opensearch": OPENSEARCH_URL}.get(backend)
        target = IndexTarget(backend, tmp_path / name, url, name)  # type: ignore[arg-type]
        index = create_index(target, IndexSettings(dim=1280, metric=metric, kind=kind))  # type: ignore[arg-type]
        index.target = target  # type: ignore[attr-defined]  # so a test can open it again
        created.append(index)
        return index

    yield make
    for index in created:
        drop = getattr(index, "drop", None)
        if drop is not None:
            drop()
        else:
            index.close()


def brute_force(items: list[Item], query: np.ndarray, k: int, metric: str, filter=None) -> list[tuple[str, float]]:
    """The reference answer: (id, distance) best first."""
    conditions = normalize(filter)
    kept = [item for item in items if matches(item.metadata, conditions)]
    matrix = np.stack([item.vector for item in kept]).astype(np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        distances = 1 - (matrix @ q) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
    else:
        distances = np.linalg.norm(matrix - q, axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return [(kept[i].id, float(distances[i])) for i in order]


def filled(make_index, items: list[Item], metric: str = "cosine", kind: str = "hnsw") -> VectorIndex:
    index = make_index(metric, kind)
    for start in range(0, len(items), 200):
        index.add(items[start : start + 200])
    index.save()
    return index


def queries(items: list[Item], count: int = 15) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    picks = rng.choice(len(items), size=count, replace=False)
    # Perturbed copies: real-looking queries that are not exactly an indexed vector.
    return [items[i].vector + rng.normal(0, 0.05, items[i].vector.shape).astype(np.float32) for i in picks]


def assert_same(results, expected, tolerance: float = 1e-4) -> None:
    assert [r.id for r in results] == [item_id for item_id, _ in expected]
    for result, (_, distance) in zip(results, expected, strict=True):
        assert result.distance == pytest.approx(distance, abs=tolerance)


BACKENDS = _backend_params()


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_gives_the_same_ordered_top_k(make_index, real_items, metric) -> None:
    index = filled(make_index, real_items, metric)
    for query in queries(real_items):
        expected = brute_force(real_items, query, 10, metric)
        assert_same(index.search(query, 10, exact=True), expected, tolerance=1e-4 if metric == "cosine" else 1e-3)


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_filtered_exact_search_agrees(make_index, real_items) -> None:
    index = filled(make_index, real_items)
    labels = sorted({item.metadata["label"] for item in real_items})
    for filter in (
        {"label": labels[0]},
        {"label": labels[1:3]},
        {"sender_id": {"gte": 100, "lt": 200}},
        {"kids": True, "label": labels[:4]},
    ):
        for query in queries(real_items, 5):
            expected = brute_force(real_items, query, 10, "cosine", filter)
            assert_same(index.search(query, 10, filter=filter, exact=True), expected)


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_approximate_search_recall_at_10(make_index, real_items) -> None:
    index = filled(make_index, real_items)
    recalls = []
    for query in queries(real_items, 50):
        exact = {item_id for item_id, _ in brute_force(real_items, query, 10, "cosine")}
        recalls.append(len(exact & {r.id for r in index.search(query, 10)}) / 10)
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_filtered_approximate_search_returns_k_when_k_match(make_index, real_items) -> None:
    index = filled(make_index, real_items)
    rare = min(
        {item.metadata["label"] for item in real_items},
        key=lambda label: sum(item.metadata["label"] == label for item in real_items),
    )
    matching = sum(item.metadata["label"] == rare for item in real_items)
    results = index.search(real_items[0].vector, 10, filter={"label": rare})
    assert len(results) == min(10, matching)
    assert all(r.metadata["label"] == rare for r in results)


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_upsert_delete_get_count_and_facets_behave_alike(make_index, real_items) -> None:
    items = real_items[:200]
    index = filled(make_index, items)
    assert index.count() == 200
    moved = Item(items[0].id, items[150].vector.copy(), {"label": "Moved"}, items[0].location, "changed")
    index.add([moved])
    assert index.count() == 200
    top = index.search(items[150].vector, 2, exact=True)
    assert {r.id for r in top} == {items[0].id, items[150].id}
    got = index.get(items[0].id, with_vector=True)
    assert got.metadata == {"label": "Moved"} and np.allclose(got.vector, items[150].vector, atol=1e-5)
    assert index.delete([items[0].id, items[1].id, "no-such-id"]) == 2
    assert index.count() == 198 and index.get(items[1].id) is None
    assert all(r.id not in (items[0].id, items[1].id) for r in index.search(items[1].vector, 20, exact=True))
    counts: dict[str, int] = {}
    for item in items[2:]:
        counts[str(item.metadata["label"])] = counts.get(str(item.metadata["label"]), 0) + 1
    assert index.facets()["label"] == counts
    hashes = index.content_hashes()
    assert len(hashes) == 198 and hashes[items[5].id] == items[5].content_hash


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_paging_exclusion_and_feedback_agree_with_brute_force(make_index, real_items, lite0) -> None:
    from lookalike.catalog import Catalog
    from lookalike.feedback import steer
    from lookalike.search import search_steered, search_vector

    catalog = Catalog(filled(make_index, real_items), lite0)
    for query in queries(real_items, 5):
        expected = [item_id for item_id, _ in brute_force(real_items, query, 25, "cosine")]
        page = search_vector(catalog, query, 10, exact=True, offset=10)
        assert [r.id for r in page.results] == expected[10:20]
        excluded = {expected[0], expected[3]}
        kept = search_vector(catalog, query, 10, exact=True, exclude=excluded)
        assert [r.id for r in kept.results] == [i for i in expected if i not in excluded][:10]
    query = queries(real_items, 1)[0]
    liked, disliked = real_items[1], real_items[2]
    steered = search_steered(catalog, query, 10, exact=True, positive=[liked.id], negative=[disliked.id])
    moved = steer(query, [liked.vector], [disliked.vector])
    expected = [i for i, _ in brute_force(real_items, moved, 12, "cosine") if i not in (liked.id, disliked.id)]
    assert [r.id for r in steered.results] == expected[:10]


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_notes_are_kept_replaced_and_removed_alike(make_index, real_items) -> None:
    from lookalike.errors import IndexError_
    from lookalike.index.backends import open_index

    index = filled(make_index, real_items[:20])
    assert index.notes() == {}
    calibration = {"model": "efficientnet-lite0", "thresholds": {"same_item": 0.91, "none": 0.42}, "n": [1, 2]}
    index.write_note("calibration", calibration)
    index.write_note("colour", {"weight": 0.25})
    index.write_note("colour", {"weight": 0.5})  # replaces
    assert index.notes() == {"calibration": calibration, "colour": {"weight": 0.5}}
    index.write_note("colour", None)
    with pytest.raises(IndexError_, match="note name"):
        index.write_note("Bad Name!", {"x": 1})
    with pytest.raises(IndexError_, match="JSON object"):
        index.write_note("calibration", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(IndexError_, match="NaN"):
        index.write_note("calibration", {"x": float("nan")})
    with pytest.raises(IndexError_, match="over 65536 bytes"):
        index.write_note("calibration", {"x": "y" * 70_000})
    index.save()
    reopened = open_index(index.target)  # type: ignore[attr-defined]
    try:
        assert reopened.notes() == {"calibration": calibration}  # refused writes changed nothing
        assert reopened.count() == 20 and reopened.settings == index.settings  # nor items and settings
    finally:
        if reopened is not index:
            reopened.close()


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_tiers_folding_and_min_tier_agree_with_the_rule_on_brute_force(make_index, real_items, lite0) -> None:
    from lookalike.catalog import Catalog
    from lookalike.confidence.calibrate import calibration_digest
    from lookalike.confidence.tiers import NOTE, Calibration
    from lookalike.search import Shaping, search_vector

    items = real_items[:150]
    original = items[3]
    noise = np.random.default_rng(3).normal(0, 0.002, original.vector.shape).astype(np.float32)
    copy = Item("copy-of-3", original.vector + noise, dict(original.metadata), "/photos/copy.jpg", "hc")
    catalogue = [*items, copy]
    catalog = Catalog(filled(make_index, catalogue), lite0)
    rule = Calibration(same_item=1.02, pair=0.985, none=0.45, verify_from=0.8, inliers=0, settings="")
    rule = Calibration(**{**vars(rule), "settings": calibration_digest(catalog)})
    catalog.index.write_note(NOTE, rule.to_note())
    catalog.forget_calibration()

    query = original.vector + np.random.default_rng(4).normal(0, 0.02, original.vector.shape).astype(np.float32)
    expected = brute_force(catalogue, query, 40, "cosine")
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


@pytest.mark.parametrize("make_index", BACKENDS, indirect=True)
def test_colours_written_by_add_come_back_from_colours_get_and_iteration(make_index, real_items) -> None:
    from lookalike.errors import IndexError_

    rng = np.random.default_rng(11)
    descriptors = rng.dirichlet(np.ones(12), size=20).astype(np.float32)
    items = [
        Item(item.id, item.vector, item.metadata, item.location, item.content_hash, descriptors[i] if i % 4 else None)
        for i, item in enumerate(real_items[:20])
    ]
    index = filled(make_index, items)
    wanted = [item.id for item in items] + ["no-such-id"]
    found = index.colours(wanted)
    assert list(found) == wanted and found["no-such-id"] is None
    for item in items:
        got = index.get(item.id)
        if item.colour is None:
            assert found[item.id] is None and got.colour is None
        else:
            assert found[item.id].dtype == np.float32 and np.array_equal(found[item.id], item.colour)
            assert np.array_equal(got.colour, item.colour)
    iterated = {item.id: item.colour for batch in index.iter_items(batch_size=7) for item in batch}
    assert all((iterated[item.id] is None) == (item.colour is None) for item in items)
    # an upsert without a colour drops the old one; a bad colour is refused and changes nothing
    index.add([Item(items[1].id, items[1].vector, items[1].metadata, items[1].location, "changed")])
    assert index.colours([items[1].id]) == {items[1].id: None}
    with pytest.raises(IndexError_, match="colour"):
        index.add([Item("bad", items[2].vector, colour=np.full(5, 0.2, dtype=np.float32))])
    with pytest.raises(IndexError_, match="colour"):
        index.add([Item("bad", items[2].vector, colour=np.full(12, np.inf, dtype=np.float32))])
    assert index.get("bad") is None and index.count() == 20
