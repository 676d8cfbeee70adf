"""Retrieval quality: leave-one-out same-label precision and recall of approximate against exact search."""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_photo

from lookalike.errors import SourceError
from lookalike.evaluate import (
    TRANSFORMS,
    Snapshot,
    default_bias_field,
    default_ignore_labels,
    duplicate_recall,
    exact_neighbours,
    holdout_split_by_field,
    recall_against_exact,
    same_field_share,
    same_label_precision,
    transform_bytes,
)
from lookalike.index import EmbeddedIndex, IndexSettings, Item

KINDS = ["exact", "hnsw"]
METRICS = ["l2", "cosine"]


def build(path: Path, vectors: np.ndarray, metadata: list[dict[str, Any]], kind: str, metric: str) -> EmbeddedIndex:
    index = EmbeddedIndex.create(path, IndexSettings(dim=vectors.shape[1], metric=metric, kind=kind))
    index.add([Item(f"i{n}", v, m) for n, (v, m) in enumerate(zip(vectors, metadata, strict=True))])
    return index


def separated_clusters(clusters: int, per_cluster: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters far apart (and in different directions, so cosine separates them too)."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.linalg.qr(rng.normal(size=(dim, dim)))[0][:clusters]  # orthogonal directions
    assignment = np.repeat(np.arange(clusters), per_cluster)
    vectors = centres[assignment] + 0.2 * rng.normal(size=(len(assignment), dim))
    return vectors.astype(np.float32), assignment


@pytest.fixture
def clustered_index(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmbeddedIndex]:
    kind, metric = request.param
    vectors, assignment = separated_clusters(8, 30, 16, seed=0)
    index = build(tmp_path / "i", vectors, [{"label": f"c{c}"} for c in assignment], kind, metric)
    yield index
    index.close()


@pytest.mark.parametrize(
    "clustered_index", [(k, m) for k in KINDS for m in METRICS], indirect=True, ids=lambda p: "-".join(p)
)
@pytest.mark.parametrize("exact", [True, False])
def test_precision_is_perfect_on_separated_labelled_clusters(clustered_index: EmbeddedIndex, exact: bool) -> None:
    report = same_label_precision(clustered_index, k_values=(1, 10), exact=exact)
    assert report.precision == {1: 1.0, 10: 1.0}
    assert report.queries == 240
    assert report.k_values == (1, 10)
    assert report.exact is exact


@pytest.mark.parametrize("kind", KINDS)
def test_precision_with_random_labels_is_chance(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    labels = rng.integers(0, 4, size=600)
    index = build(tmp_path / "i", vectors, [{"label": f"l{x}"} for x in labels], kind, "l2")
    report = same_label_precision(index, k_values=(1, 10), exact=False)
    assert report.queries == 600
    assert report.precision[10] == pytest.approx(0.25, abs=0.04)
    assert report.precision[1] == pytest.approx(0.25, abs=0.07)
    index.close()


def test_the_query_item_itself_never_counts(tmp_path: Path) -> None:
    vectors, _ = separated_clusters(12, 1, 16, seed=2)
    index = build(tmp_path / "i", vectors, [{"label": f"only-{n}"} for n in range(12)], "exact", "l2")
    report = same_label_precision(index, k_values=(1, 5, 10))
    assert report.precision == {1: 0.0, 5: 0.0, 10: 0.0}
    assert report.queries == 12
    index.close()


@pytest.mark.parametrize("kind", KINDS)
def test_leave_one_out_counts_only_the_twin(tmp_path: Path, kind: str) -> None:
    """Pairs of near-identical items sharing a label: the twin is the one same-label neighbour, never itself."""
    base, _ = separated_clusters(15, 1, 16, seed=3)
    vectors = np.repeat(base, 2, axis=0) + 0.01 * np.random.default_rng(4).normal(size=(30, 16)).astype(np.float32)
    metadata = [{"label": f"pair-{n // 2}"} for n in range(30)]
    index = build(tmp_path / "i", vectors.astype(np.float32), metadata, kind, "cosine")
    report = same_label_precision(index, k_values=(1, 2, 10))
    assert report.precision[1] == pytest.approx(1.0)
    assert report.precision[2] == pytest.approx(0.5)
    assert report.precision[10] == pytest.approx(0.1)
    index.close()


def test_duplicate_vectors_do_not_hide_the_neighbour(tmp_path: Path) -> None:
    """Exact duplicates tie with the query item itself: whichever comes first, the other still counts."""
    base, _ = separated_clusters(10, 1, 16, seed=5)
    vectors = np.repeat(base, 2, axis=0)
    index = build(tmp_path / "i", vectors, [{"label": f"pair-{n // 2}"} for n in range(20)], "exact", "l2")
    assert same_label_precision(index, k_values=(1,)).precision == {1: pytest.approx(1.0)}
    index.close()


def test_ignore_labels_and_unlabelled_items(tmp_path: Path) -> None:
    vectors, assignment = separated_clusters(4, 20, 16, seed=6)
    metadata: list[dict[str, Any]] = []
    for n, cluster in enumerate(assignment):
        if n % 10 == 0:
            metadata.append({})  # no label at all
        elif n % 10 == 1:
            metadata.append({"label": None})
        elif cluster == 3:
            metadata.append({"label": "unknown"})
        elif cluster == 2:
            metadata.append({"label": 7})  # a number: ignore_labels compares its text
        else:
            metadata.append({"label": f"c{cluster}"})
    index = build(tmp_path / "i", vectors, metadata, "exact", "l2")
    labelled = sum(1 for m in metadata if m.get("label") is not None)
    assert same_label_precision(index).queries == labelled == 64
    report = same_label_precision(index, ignore_labels=["unknown"])
    assert report.queries == 48
    report = same_label_precision(index, ignore_labels=["unknown", "7"])
    assert report.queries == 32
    report = same_label_precision(index, ignore_labels={"c0", "c1", "7", "unknown"})
    assert report.queries == 0
    assert report.precision == {1: 0.0, 10: 0.0}
    # Another label field altogether.
    assert same_label_precision(index, label_field="colour").queries == 0
    index.close()


def test_sample_limits_the_queries(tmp_path: Path) -> None:
    vectors, assignment = separated_clusters(6, 25, 16, seed=7)
    rng = np.random.default_rng(8)
    metadata = [{"label": f"c{c}" if rng.random() < 0.8 else f"x{rng.integers(3)}"} for c in assignment]
    index = build(tmp_path / "i", vectors, metadata, "hnsw", "l2")
    calls: list[bool] = []
    search = index.search
    index.search = lambda *a, **kw: (calls.append(kw.get("exact", False)), search(*a, **kw))[1]  # type: ignore[method-assign]

    report = same_label_precision(index, k_values=(1, 5), sample=25, seed=3, exact=False)
    assert report.queries == 25
    assert calls == [False] * 25  # the approximate measure runs the index's own search, once a query
    calls.clear()
    exact = same_label_precision(index, k_values=(1, 5), sample=25, seed=3)
    assert exact.queries == 25 and calls == []  # the exact one is a batched brute force over the matrix
    assert same_label_precision(index, k_values=(1, 5), sample=25, seed=3) == exact  # the seed fixes the sample
    assert same_label_precision(index, k_values=(1, 5), sample=25, seed=4) != exact
    assert same_label_precision(index, sample=10_000).queries == 150  # more than there are: all of them
    full = same_label_precision(index, k_values=(1, 5))
    assert full.queries == 150
    assert 0.0 < full.precision[5] < 1.0
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_recall_against_exact_is_one_on_an_exact_index(tmp_path: Path, metric: str) -> None:
    vectors = np.random.default_rng(9).normal(size=(500, 24)).astype(np.float32)
    index = build(tmp_path / "i", vectors, [{}] * 500, "exact", metric)
    assert recall_against_exact(index, k=10, queries=100) == 1.0
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_recall_against_exact_is_high_on_hnsw(tmp_path: Path, metric: str) -> None:
    rng = np.random.default_rng(10)
    centres = rng.normal(size=(20, 32))
    vectors = (centres[rng.integers(0, 20, size=2000)] + 0.4 * rng.normal(size=(2000, 32))).astype(np.float32)
    index = build(tmp_path / "i", vectors, [{}] * 2000, "hnsw", metric)
    value = recall_against_exact(index, k=10, queries=200)
    assert 0.95 <= value <= 1.0
    index.close()


def test_recall_against_exact_can_see_a_poor_graph(tmp_path: Path) -> None:
    """The measure is not a constant: a deliberately starved HNSW scores clearly below 1."""
    vectors = np.random.default_rng(11).normal(size=(2000, 32)).astype(np.float32)
    index = EmbeddedIndex.create(
        tmp_path / "i", IndexSettings(dim=32, metric="l2", kind="hnsw", hnsw_m=4, ef_construction=8, ef_search=1)
    )
    index.add([Item(f"i{n}", v) for n, v in enumerate(vectors)])
    index.save()  # into the graph: until then, fewer than GRAPH_BATCH new vectors are searched exactly
    assert index.stats()["vectors_in_graph"] == 2000
    assert recall_against_exact(index, k=10, queries=100) < 0.9
    index.close()


def test_recall_on_an_empty_index_is_nan_and_queries_are_capped(tmp_path: Path) -> None:
    index = EmbeddedIndex.create(tmp_path / "i", IndexSettings(dim=8, metric="l2", kind="hnsw"))
    assert math.isnan(recall_against_exact(index))
    index.add([Item(f"i{n}", v) for n, v in enumerate(np.random.default_rng(12).normal(size=(5, 8)))])
    assert recall_against_exact(index, k=10, queries=500) == 1.0  # 5 items, k > count, fewer than 500 queries
    index.close()


# ------------------------------------------------------------------ batched exact k-NN = the index's exact search


def index_neighbours(index: EmbeddedIndex, vector: np.ndarray, own_id: str, k: int) -> list[str]:
    """What "more like this" shows: the index's exact search, the item itself left out."""
    return [r.id for r in index.search(vector, k + 1, exact=True) if r.id != own_id][:k]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", METRICS)
def test_batched_exact_neighbours_equal_the_index_exact_search(tmp_path: Path, kind: str, metric: str) -> None:
    rng = np.random.default_rng(20)
    vectors = (rng.normal(size=(300, 24)) + 0.5).astype(np.float32)  # offset: cosine and L2 rank differently
    index = build(tmp_path / "i", vectors, [{}] * 300, kind, metric)
    snapshot = Snapshot.load(index)
    found = exact_neighbours(snapshot, 10, batch=64)  # several batches
    assert found.shape == (300, 10)
    for position in range(300):
        expected = index_neighbours(index, vectors[position], f"i{position}", 10)
        assert [snapshot.ids[p] for p in found[position]] == expected
    subset = exact_neighbours(snapshot, 4, queries=[7, 3])
    assert (subset == found[[7, 3], :4]).all()
    index.close()


def test_batched_neighbours_pad_a_small_catalogue(tmp_path: Path) -> None:
    vectors = np.random.default_rng(21).normal(size=(3, 8)).astype(np.float32)
    index = build(tmp_path / "i", vectors, [{}] * 3, "exact", "l2")
    found = exact_neighbours(Snapshot.load(index), 5)
    assert (found[:, 2:] == -1).all() and (found[:, :2] >= 0).all()
    assert all(position not in row for position, row in enumerate(found))
    index.close()


# ------------------------------------------------------------------ a synthetic catalogue of real embeddings

LABELS = ["Dress", "Shoes", "Hat", "Not sure", "Other"]


def photo_catalogue(root: Path, lite0: Any, count: int = 30, kind: str = "exact") -> EmbeddedIndex:
    """Photos from make_photo, embedded with the real model, with a label and a sender each."""
    from lookalike.images import load_image

    root.mkdir(parents=True, exist_ok=True)
    items = []
    for seed in range(count):
        path = root / f"p{seed:02d}.jpg"
        path.write_bytes(make_photo(seed))
        pixels = lite0.prepare(load_image(path.read_bytes(), min_side=lite0.preprocessing.resize))
        vector = lite0.embed_prepared(pixels[None])[0]
        metadata = {"label": LABELS[seed % 5], "sender_id": seed % 4}
        items.append(Item(f"p{seed:02d}", vector, metadata, str(path)))
    settings = IndexSettings(dim=lite0.dim, metric="cosine", kind=kind, embedding=lite0.descriptor())
    index = EmbeddedIndex.create(root / "index", settings)
    index.add(items)
    index.save()
    return index


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, lite0: Any) -> Iterator[EmbeddedIndex]:
    index = photo_catalogue(tmp_path_factory.mktemp("photos"), lite0)
    yield index
    index.close()


def brute_force_share(index: EmbeddedIndex, field: str, k: int, queries_only: set[Any] | None = None) -> float:
    """Reference: cosine similarity to every other item in float64, sorted, first k, share with the same value."""
    items = [item for batch in index.iter_items() for item in batch]
    matrix = np.stack([item.vector for item in items]).astype(np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    shares = []
    for q, query in enumerate(items):
        value = query.metadata.get(field)
        if value is None or (queries_only is not None and value not in queries_only):
            continue
        similarity = matrix @ matrix[q]
        similarity[q] = -np.inf
        order = np.argsort(-similarity, kind="stable")[:k]
        shares.append(sum(items[j].metadata.get(field) == value for j in order) / k)
    return float(np.mean(shares))


def test_precision_over_real_classes_matches_a_brute_force_reference(photos: EmbeddedIndex) -> None:
    snapshot = Snapshot.load(photos)
    ignore = default_ignore_labels(snapshot)
    assert ignore == ("Not sure", "Other")  # "Skip" does not occur, so it is not listed
    report = same_label_precision(photos, (1, 3, 10), ignore_labels=ignore)
    assert report.queries == 18  # 30 items, 12 of them "Not sure" or "Other": distractors, not queries
    real = {"Dress", "Shoes", "Hat"}
    for k in (1, 3, 10):
        assert report.precision[k] == pytest.approx(brute_force_share(photos, "label", k, real), abs=1e-12)
    # The old per-query way: the index's exact search, the item left out, ignored labels still in the pool.
    queries = [item for batch in photos.iter_items() for item in batch if item.metadata["label"] in real]
    old = np.mean(
        [
            sum(
                photos.get(i).metadata["label"] == item.metadata["label"]
                for i in index_neighbours(photos, item.vector, item.id, 10)
            )
            / 10
            for item in queries
        ]
    )
    assert report.precision[10] == pytest.approx(old, abs=1e-12)
    assert report.chance == pytest.approx(5 / 29)  # 6 of each real label: 5 of the 29 others share it
    assert same_label_precision(photos, (1, 10)).queries == 30  # without the ignore list: every item


def test_same_sender_share_and_random_pairs_match_a_brute_force_reference(photos: EmbeddedIndex) -> None:
    snapshot = Snapshot.load(photos)
    assert default_bias_field(snapshot) == "sender_id"
    report = same_field_share(snapshot, "sender_id", k=10)
    assert report.queries == 30
    assert report.share == pytest.approx(brute_force_share(photos, "sender_id", 10), abs=1e-12)
    # Random pairs: senders 0 and 1 have 8 items, 2 and 3 have 7; a query shares its sender with n - 1 of 29.
    assert report.random_pairs == pytest.approx((16 * 7 / 29 + 14 * 6 / 29) / 30)
    neighbours = exact_neighbours(snapshot, 10)
    assert same_field_share(snapshot, "sender_id", 10, neighbours) == report
    assert same_field_share(snapshot, "absent", 10).queries == 0


def test_random_pair_baseline_counts_items_without_the_field_as_different(tmp_path: Path) -> None:
    vectors = np.random.default_rng(22).normal(size=(6, 8)).astype(np.float32)
    metadata = [{"s": 1}, {"s": 1}, {"s": 1}, {"s": 2}, {}, {"s": 2}]
    index = build(tmp_path / "i", vectors, metadata, "exact", "l2")
    report = same_field_share(Snapshot.load(index), "s", k=5)
    assert report.queries == 5
    assert report.random_pairs == pytest.approx((3 * 2 / 5 + 2 * 1 / 5) / 5)
    assert default_bias_field(Snapshot.load(index)) is None
    index.close()


# ------------------------------------------------------------------ near-duplicates


def test_transforms_are_deterministic_and_do_what_they_say() -> None:
    from PIL import Image

    data = make_photo(3, size=(320, 400))
    outputs = {name: transform_bytes(data, name) for name in TRANSFORMS}
    assert list(outputs) == ["crop80", "mirror", "rotate10", "jpeg30", "half", "colour", "text"]
    assert outputs == {name: transform_bytes(data, name) for name in TRANSFORMS}  # the same bytes twice
    assert len(set(outputs.values())) == len(TRANSFORMS)  # and all different
    sizes = {name: Image.open(io.BytesIO(out)).size for name, out in outputs.items()}
    assert sizes["crop80"] == (256, 320)
    assert sizes["half"] == (160, 200)
    turned = np.radians(10)  # expanded to hold the rotated 320 x 400 (Pillow rounds the canvas up)
    expected = (320 * np.cos(turned) + 400 * np.sin(turned), 320 * np.sin(turned) + 400 * np.cos(turned))
    assert all(0 <= got - want <= 2 for got, want in zip(sizes["rotate10"], expected, strict=True))
    assert sizes["mirror"] == sizes["colour"] == sizes["text"] == sizes["jpeg30"] == (320, 400)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    mirrored = np.asarray(Image.open(io.BytesIO(outputs["mirror"])), dtype=np.int16)
    assert np.abs(mirrored[:, ::-1] - original).mean() < 3  # only JPEG noise left
    rotated = np.asarray(Image.open(io.BytesIO(outputs["rotate10"])), dtype=np.int16)
    assert (rotated[:3, :3] > 245).all()  # a corner the photo does not reach: white fill
    texted = np.asarray(Image.open(io.BytesIO(outputs["text"])), dtype=np.int16)
    changed = np.abs(texted - np.asarray(Image.open(io.BytesIO(_reencoded(data))), dtype=np.int16)).max(axis=2) > 60
    rows, cols = np.nonzero(changed)
    assert rows.min() > 400 // 2 and cols.max() < 320 // 2  # the text sits in the bottom-left corner
    assert len(Image.open(io.BytesIO(outputs["jpeg30"])).tobytes()) and len(outputs["jpeg30"]) < len(_reencoded(data))


def _reencoded(data: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_duplicate_recall_matches_a_reference_through_the_query_path(photos: EmbeddedIndex, lite0: Any) -> None:
    from lookalike.catalog import Catalog
    from lookalike.search import search_image

    report = duplicate_recall(photos, lite0, sample=10, seed=1, k=5)
    assert (report.sampled, report.unreadable, report.queries) == (10, 0, 10)
    assert report.transforms == tuple(TRANSFORMS)
    catalog = Catalog(photos, lite0)
    snapshot = Snapshot.load(photos)
    chosen = random.Random(1).sample(range(len(snapshot)), 10)
    for name in TRANSFORMS:
        firsts, tops = 0, 0
        for position in chosen:
            altered = transform_bytes(Path(snapshot.locations[position]).read_bytes(), name)
            found = [r.id for r in search_image(catalog, altered, k=5).results]
            firsts += found[0] == snapshot.ids[position]
            tops += snapshot.ids[position] in found
        assert report.recall_at_1[name] == firsts / 10, name
        assert report.recall_at_k[name] == tops / 10, name
    # Plain shapes on a light background are not easy: what the reference says for these photos.
    assert 0.5 <= report.recall_at_1["mirror"] < 1.0 and 0.5 <= report.recall_at_1["crop80"] < 1.0
    assert report.overall_at_1 == pytest.approx(np.mean(list(report.recall_at_1.values())))


def reencode(image: Any) -> bytes:
    """An unaltered copy (re-saved at high quality): must find its original."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def blank(image: Any) -> bytes:
    """A copy with nothing of the original left: must not find it (but for chance)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", image.size, (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def test_duplicate_recall_can_be_perfect_and_can_fail(photos: EmbeddedIndex, lite0: Any) -> None:
    report = duplicate_recall(photos, lite0, sample=30, k=5, transforms={"same": reencode, "blank": blank})
    assert report.recall_at_1["same"] == 1.0 and report.recall_at_k["same"] == 1.0
    assert report.recall_at_1["blank"] <= 1 / 30 and report.recall_at_k["blank"] <= 5 / 30


def test_unreadable_images_are_counted_and_left_out(photos: EmbeddedIndex, lite0: Any) -> None:
    snapshot = Snapshot.load(photos)
    broken = set(snapshot.locations[:10])

    def read(location: str | None) -> bytes:
        if location in broken:
            raise SourceError(f"cannot read {location}")
        return Path(str(location)).read_bytes()

    report = duplicate_recall(photos, lite0, sample=30, read=read, transforms={"same": reencode})
    assert (report.sampled, report.unreadable, report.queries) == (30, 10, 20)
    assert report.recall_at_1 == {"same": 1.0}
    nothing = duplicate_recall(photos, lite0, sample=3, read=lambda _: b"not an image")
    assert (nothing.unreadable, nothing.recall_at_1, nothing.overall_at_1) == (3, {}, None)


# ------------------------------------------------------------------ the whole evaluation, and the command


def test_holdout_split_keeps_each_value_on_one_side(photos: EmbeddedIndex) -> None:
    snapshot = Snapshot.load(photos)
    train, test = holdout_split_by_field(snapshot, "sender_id", seed=5)
    assert sorted(train + test) == sorted(snapshot.ids)
    sender = {item_id: entry["sender_id"] for item_id, entry in zip(snapshot.ids, snapshot.metadata, strict=True)}
    assert not {sender[i] for i in train} & {sender[i] for i in test}
    assert len({sender[i] for i in test}) == 2  # half of the four senders
    assert holdout_split_by_field(snapshot, "sender_id", seed=5) == (train, test)


def test_cli_eval_json_and_table(tmp_path: Path, lite0: Any) -> None:
    from typer.testing import CliRunner

    from lookalike.cli import app

    index = photo_catalogue(tmp_path / "c", lite0, count=20, kind="hnsw")
    index.close()
    runner = CliRunner()
    where = str(tmp_path / "c" / "index")
    result = runner.invoke(app, ["eval", "--index", where, "--json", "--duplicates", "4", "--queries", "10"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ignored_labels"] == ["Not sure", "Other"] and report["ignored_labels_from"] == "default"
    assert report["queries"] == 12 and report["items"] == 20
    for key in ("precision@1_exact", "precision@10_exact", "precision@1_hnsw", "recall@10_hnsw_vs_exact"):
        assert 0.0 <= report[key] <= 1.0
    assert report["same_field"]["field"] == "sender_id" and report["same_field"]["queries"] == 20
    assert 0.0 < report["same_field"]["random_pairs"] < 1.0 and 0.0 <= report["same_field"]["share"] <= 1.0
    duplicates = report["duplicates"]
    assert duplicates["sampled"] == 4 and set(duplicates["recall@1"]) == set(TRANSFORMS)
    assert "overall_recall@1" in duplicates and "recall@10" in duplicates
    assert report["settings"]["embedding"]["model"] == lite0.name
    assert report["settings"]["metric"] == "cosine" and report["settings"]["kind"] == "hnsw"
    assert set(report["machine"]) >= {"cpu", "cores", "avx512", "avx512_vnni"}
    assert report["exact_check"]["agree"] == 1.0
    assert report["seconds"]["total"] > 0 and report["index"] == where

    result = runner.invoke(
        app, ["eval", "--index", where, "--ignore-label", "Hat", "--bias-field", "", "--duplicates", "0", "-k", "3"]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "'Hat'; option" in text and "over 16 queries" in text  # "Not sure" and "Other" are queries now
    assert "avx512_vnni" in text and "model efficientnet-lite0" in text and "metric cosine" in text
    assert "P@3" in text and "same-field share: skipped" in text and "near-duplicate recall: skipped" in text
