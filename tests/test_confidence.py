"""Match confidence: the tier rule, folding, geometric verification, calibration and the answers' fields."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo
from PIL import Image, ImageDraw

from lookalike.confidence import verify
from lookalike.confidence.alterations import KINDS, altered
from lookalike.confidence.fold import fold, pairwise_scores
from lookalike.confidence.outside import out_of_domain
from lookalike.confidence.tiers import NOTE, Calibration, read_calibration, tier_rank
from lookalike.index.base import SearchResult

RULE = Calibration(same_item=1.0, pair=0.95, none=0.4, verify_from=0.75, inliers=30, settings="s")


def hit(item_id: str, score: float) -> SearchResult:
    return SearchResult(item_id, score, 1 - score, {}, None)


def test_the_best_result_is_the_same_item_when_it_stands_out_from_the_rest() -> None:
    assert RULE.tiers([0.85, 0.70, 0.69]) == ["same_item", "similar", "similar"]  # 0.85 + 2 * 0.15 >= 1
    assert RULE.tiers([0.85, 0.84, 0.70]) == ["similar", "similar", "similar"]  # one among its peers
    assert RULE.tiers([0.995, 0.991]) == ["same_item", "same_item"]  # both identical by score alone
    assert RULE.tiers([0.96, 0.955]) == ["similar", "similar"]  # high, but a photographer's wall scores so too
    assert RULE.tiers([0.30, 0.29]) == ["none", "none"]
    assert RULE.tiers([0.80, 0.79], verified=(1,)) == ["similar", "same_item"]
    assert RULE.tiers([]) == []
    assert RULE.best_tier(0.85, None) == "similar"  # a lone result has no lead to judge


def test_a_calibration_round_trips_through_its_note_and_applies_only_to_its_settings() -> None:
    note = RULE.to_note()
    assert Calibration.from_note(note) == RULE
    assert read_calibration({NOTE: note}, "s") == RULE
    assert read_calibration({NOTE: note}, "other settings") is None
    assert read_calibration({NOTE: {**note, "version": 99}}, "s") is None
    assert read_calibration({NOTE: {"version": 1, "nonsense": True}}, "s") is None
    assert read_calibration({}, "s") is None
    assert [tier_rank(t) for t in ("none", "similar", "same_item")] == [0, 1, 2]
    with pytest.raises(ValueError, match="a tier is one of"):
        tier_rank("best")


def test_fold_keeps_the_order_and_puts_copies_under_their_best_copy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    vectors = {"a": a, "a-copy": a + 0.01 * rng.normal(size=16), "b": b, "a-copy2": a * 3, "lost": None}
    results = [hit("a", 0.9), hit("b", 0.8), hit("a-copy", 0.79), hit("a-copy2", 0.7), hit("lost", 0.6)]
    known = {key: value for key, value in vectors.items() if value is not None}
    folded = fold(results, known, "cosine", 0.95)
    assert [r.id for r in folded] == ["a", "b", "lost"]
    assert folded[0].duplicates == ["a-copy", "a-copy2"] and folded[1].duplicates == []
    # under l2 a scaled copy is far away: it stays a hit of its own
    assert [r.id for r in fold(results, known, "l2", 0.95)] == ["a", "b", "a-copy2", "lost"]
    # from ``candidate`` up, only a confirmed pair folds
    asked = []
    confirm = lambda head, other: asked.append((head.id, other.id)) or other.id == "a-copy2"  # noqa: E731
    folded = fold(results, known, "cosine", 1.01, candidate=0.9, confirm=confirm)
    assert [r.id for r in folded] == ["a", "b", "a-copy", "lost"] and folded[0].duplicates == ["a-copy2"]
    assert asked == [("a", "a-copy"), ("a", "a-copy2")]
    scores = pairwise_scores(np.stack([a, b]), "l2")
    assert scores[0, 0] == pytest.approx(1.0) and 0 < scores[0, 1] < 1


def textured(seed: int, size: tuple[int, int] = (480, 480)) -> Image.Image:
    """A picture with many corners (ORB needs texture): random rectangles, ellipses and lines."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for _ in range(80):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, x + rng.randrange(10, 80), y + rng.randrange(10, 80))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=colour, outline=(0, 0, 0))
    return image


def test_verification_counts_many_inliers_for_a_crop_and_few_for_another_picture() -> None:
    original = textured(1)
    crop = original.crop((60, 40, 440, 420)).resize((300, 300))
    other = textured(2)
    base = verify.features(original)
    assert verify.inliers(base, verify.features(crop)) >= 60
    assert verify.inliers(base, verify.features(other)) < 20
    assert verify.inliers(base, verify.features(Image.new("RGB", (200, 200), "white"))) == 0
    flipped = verify.features(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert verify.inliers(base, flipped) < 20  # ORB alone is not mirror-invariant...
    assert verify.inliers(verify.features(original, mirrored=True), flipped) >= 60  # ...its mirror side is


def test_verification_decodes_through_the_guarded_decode() -> None:
    from lookalike.errors import ImageError

    with pytest.raises(ImageError):
        verify.features_of_bytes(b"GIF89a not really")
    assert verify.features_of_location("/nonexistent/file.jpg") is None
    assert verify.features_of_location("https://example.com/a.jpg") is None  # never fetched at search time


def test_alterations_and_outside_images_are_repeatable_jpegs() -> None:
    photo = textured(3)
    for kind in KINDS:
        first, again = altered(photo, kind, random.Random(5)), altered(photo, kind, random.Random(5))
        assert first == again and first[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match="unknown alteration"):
        altered(photo, "smudge", random.Random(0))
    drawn = out_of_domain(10, seed=3)
    assert drawn == out_of_domain(10, seed=3) and drawn != out_of_domain(10, seed=4)
    assert all(Image.open(io.BytesIO(data)).format == "JPEG" for data in drawn)


@pytest.fixture
def calibrated(tmp_path: Path, lite0):
    """A catalogue of 40 synthetic photos on disk, indexed with the suite's model and calibrated."""
    from lookalike.catalog import Catalog
    from lookalike.confidence.calibrate import calibrate
    from lookalike.index import IndexSettings, Item
    from lookalike.index.embedded import EmbeddedIndex

    folder = tmp_path / "photos"
    folder.mkdir()
    items = []
    for seed in range(40):
        path = folder / f"p{seed}.jpg"
        path.write_bytes(make_photo(seed))
        vector = lite0.embed([Image.open(path).convert("RGB")])[0]
        items.append(Item(f"p{seed}", vector, {"n": seed}, str(path), str(seed)))
    settings = IndexSettings(dim=lite0.dim, kind="exact", embedding=lite0.descriptor())
    catalog = Catalog(EmbeddedIndex.create(tmp_path / "index", settings), lite0)
    catalog.index.add(items)
    calibration = calibrate(catalog, samples=10)
    yield catalog, calibration, folder
    catalog.close()


def test_calibration_is_kept_with_the_index_and_shapes_every_answer(calibrated) -> None:
    from lookalike.search import Shaping, search_image, search_item

    catalog, calibration, folder = calibrated
    assert 0 < calibration.none <= calibration.verify_from and calibration.pair >= 0.9
    assert calibration.measured["copies"] == 30 and calibration.measured["similar"] == 20
    assert catalog.index.notes()[NOTE] == calibration.to_note()
    exact = search_image(catalog, (folder / "p7.jpg").read_bytes(), k=5)
    assert exact.results[0].id == "p7" and exact.match == "same_item" == exact.results[0].tier
    assert all(result.tier in ("none", "similar", "same_item") for result in exact.results)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    answer = search_image(catalog, buffer.getvalue(), k=5)
    assert answer.match == "none"
    assert search_image(catalog, buffer.getvalue(), k=5, shaping=Shaping(min_tier="similar")).results == []
    assert search_image(catalog, buffer.getvalue(), k=5, shaping=Shaping(min_tier="similar")).match == "none"
    assert search_item(catalog, "p3", k=3).match is not None


def test_min_tier_needs_a_calibration_and_a_known_tier(tmp_path: Path, lite0) -> None:
    from lookalike.catalog import Catalog
    from lookalike.errors import LookalikeError
    from lookalike.index import IndexSettings, Item
    from lookalike.index.embedded import EmbeddedIndex
    from lookalike.search import Shaping, search_vector

    settings = IndexSettings(dim=4, kind="exact", embedding={"model": "x"})
    catalog = Catalog(EmbeddedIndex.create(tmp_path / "index", settings), lite0)
    catalog.index.add([Item("a", np.ones(4, np.float32)), Item("b", np.arange(4, dtype=np.float32))])
    plain = search_vector(catalog, np.ones(4, np.float32), 2)
    assert plain.match is None and [r.tier for r in plain.results] == [None, None]
    with pytest.raises(LookalikeError, match="needs a calibrated index"):
        search_vector(catalog, np.ones(4, np.float32), 2, shaping=Shaping(min_tier="similar"))
    with pytest.raises(LookalikeError, match="min_tier must be one of"):
        Shaping(min_tier="great")
    from lookalike.confidence.calibrate import calibrate

    with pytest.raises(LookalikeError, match="at least 10 items"):
        calibrate(catalog)
    catalog.close()


def test_the_api_answers_with_tiers_folds_copies_and_lists_duplicates(calibrated, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.config import Settings
    from lookalike.index import Item

    catalog, _, folder = calibrated
    original = catalog.index.get("p7", with_vector=True)
    (folder / "p7-copy.jpg").write_bytes((folder / "p7.jpg").read_bytes())
    catalog.index.add([Item("p7-copy", original.vector, {"n": 7}, str(folder / "p7-copy.jpg"), "7c")])
    app = create_app(catalog, Settings(cache=tmp_path / "cache", api_key=None))
    photo = (folder / "p7.jpg").read_bytes()
    with TestClient(app) as client:
        body = client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "4"}).json()
        assert body["match"] == "same_item"
        first = body["results"][0]
        assert {first["id"], *first["duplicates"]} == {"p7", "p7-copy"} and first["tier"] == "same_item"
        assert all(result["id"] not in ("p7", "p7-copy") for result in body["results"][1:])
        listed = client.post("/api/search", json={"id": "p3", "k": 40, "dedupe": False}).json()["results"]
        assert {"p7", "p7-copy"} <= {result["id"] for result in listed}
        strict = client.post("/api/search", json={"id": "p7", "min_tier": "same_item"}).json()
        assert [result["id"] for result in strict["results"]] == ["p7-copy"]
        form = {"k": "4", "min_tier": "same_item", "dedupe": "false"}
        copies = client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data=form).json()
        assert {result["id"] for result in copies["results"]} == {"p7", "p7-copy"}
        refused = client.post("/api/search", json={"id": "p7", "min_tier": "best"})
        assert refused.status_code == 422 and "min_tier" in refused.text
        bad_form = client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"dedupe": "y"})
        assert bad_form.status_code == 400 and "dedupe must be true or false" in bad_form.text
        groups = client.get("/api/duplicates").json()
        assert groups["total"] >= 1 and groups["offset"] == 0
        mine = [group for group in groups["groups"] if "p7" in group["ids"]]
        assert [group["ids"] for group in mine] == [["p7", "p7-copy"]]
        assert mine[0]["thumbnail_urls"][0] == "/api/images/p7?size=320" and mine[0]["pairs"][0]["score"] > 0.99
        assert client.get("/api/duplicates", params={"offset": 50}).json()["groups"] == []


def test_duplicates_need_a_calibration(tmp_path: Path, lite0) -> None:
    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.catalog import Catalog
    from lookalike.config import Settings
    from lookalike.index import IndexSettings, Item
    from lookalike.index.embedded import EmbeddedIndex

    settings = IndexSettings(dim=4, kind="exact", embedding={"model": "x"})
    catalog = Catalog(EmbeddedIndex.create(tmp_path / "index", settings), lite0)
    catalog.index.add([Item("a", np.ones(4, np.float32))])
    with TestClient(create_app(catalog, Settings(cache=tmp_path / "c", api_key=None))) as client:
        answer = client.get("/api/duplicates")
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_calibrated"
        answer = client.post("/api/search", json={"id": "a", "min_tier": "similar"})
        assert answer.status_code == 409 and "lookalike calibrate" in answer.text
    catalog.close()
