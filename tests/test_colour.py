"""The colour descriptor: named colours of synthetic pictures, the background rule, similarity, re-ranking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lookalike import colour
from lookalike.index import validate

RGB = {
    "black": (10, 10, 12),
    "grey": (128, 128, 128),
    "white": (250, 250, 250),
    "red": (200, 20, 30),
    "orange": (240, 130, 20),
    "yellow": (240, 220, 30),
    "green": (30, 160, 50),
    "teal": (20, 170, 170),
    "blue": (30, 60, 200),
    "purple": (120, 40, 160),
    "pink": (250, 150, 180),
    "brown": (110, 70, 30),
}


def square_on(background: tuple[int, int, int], square: tuple[int, int, int], size: int = 200) -> Image.Image:
    """A product-like square in the middle half of a plain picture."""
    image = Image.new("RGB", (size, size), background)
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=square)
    return image


def test_the_index_stores_descriptors_of_the_length_made_here() -> None:
    assert len(colour.COLOUR_NAMES) == colour.SIZE == validate.COLOUR_SIZE
    assert set(RGB) == set(colour.COLOUR_NAMES)


@pytest.mark.parametrize("name", list(RGB))
def test_each_plain_colour_has_its_name(name: str) -> None:
    descriptor = colour.describe(Image.new("RGB", (80, 60), RGB[name]))
    assert colour.dominant(descriptor) == name
    assert descriptor[colour.COLOUR_NAMES.index(name)] == pytest.approx(1.0)


def test_a_red_square_on_white_is_red() -> None:
    descriptor = colour.describe(square_on(RGB["white"], RGB["red"]))
    assert descriptor.dtype == np.float32 and descriptor.shape == (colour.SIZE,)
    assert descriptor.sum() == pytest.approx(1.0, abs=1e-6) and (descriptor >= 0).all()
    assert colour.dominant(descriptor) == "red"
    assert descriptor[colour.COLOUR_NAMES.index("red")] > 0.85  # the plain white around it hardly counts


def test_a_plain_background_counts_less_than_the_product_whatever_its_colour() -> None:
    """The square is a quarter of the picture; a background rule that did nothing would name the background."""
    for background, product in (("blue", "yellow"), ("grey", "green"), ("black", "pink")):
        descriptor = colour.describe(square_on(RGB[background], RGB[product]))
        assert colour.dominant(descriptor) == product


def test_a_busy_background_is_only_down_weighted_by_the_centre() -> None:
    """Stripes on the border: not plain, so every pixel counts, the centre's more."""
    image = square_on(RGB["white"], RGB["red"])
    draw = ImageDraw.Draw(image)
    for x in range(0, 200, 8):
        draw.rectangle((x, 0, x + 3, 199), fill=RGB["blue"])
    draw.rectangle((50, 50, 150, 150), fill=RGB["red"])
    descriptor = colour.describe(image)
    assert colour.dominant(descriptor) == "red"
    assert descriptor[colour.COLOUR_NAMES.index("blue")] > 0.05  # the stripes are not taken for background


def test_arrays_and_images_of_any_mode_and_size_agree() -> None:
    image = square_on(RGB["white"], RGB["green"], size=224)
    from_image = colour.describe(image)
    np.testing.assert_allclose(colour.describe(np.asarray(image)), from_image, atol=1e-6)
    np.testing.assert_allclose(colour.describe(image.convert("RGBA")), from_image, atol=1e-6)
    assert colour.dominant(colour.describe(image.resize((1600, 1200)))) == "green"
    assert colour.dominant(colour.describe(Image.new("RGB", (3, 2), RGB["blue"]))) == "blue"  # tiny: no border
    assert colour.dominant(colour.describe(Image.new("L", (50, 50), 255))) == "white"


def test_similarity_is_one_for_the_same_mix_and_zero_for_disjoint_ones() -> None:
    red = colour.describe(square_on(RGB["white"], RGB["red"]))
    assert colour.similarity(red, red) == pytest.approx(1.0)
    one_hot = np.eye(colour.SIZE, dtype=np.float32)
    assert colour.similarity(one_hot[3], one_hot[8]) == 0.0
    half = (one_hot[3] + one_hot[8]) / 2
    assert colour.similarity(half, one_hot[3]) == pytest.approx(np.sqrt(0.5))
    assert 0.0 <= colour.similarity(red, colour.describe(square_on(RGB["white"], RGB["blue"]))) < 0.2


@dataclass
class Hit:
    id: str
    score: float


def test_rerank_keeps_the_order_at_weight_0_and_orders_by_colour_at_1() -> None:
    one_hot = np.eye(colour.SIZE, dtype=np.float32)
    red, blue = one_hot[colour.COLOUR_NAMES.index("red")], one_hot[colour.COLOUR_NAMES.index("blue")]
    results = [Hit("blue-a", 0.9), Hit("red-a", 0.8), Hit("blue-b", 0.7), Hit("red-b", 0.6)]
    colours = {"blue-a": blue, "red-a": red, "blue-b": blue, "red-b": red}
    assert colour.rerank(results, red, colours, 0.0) == results
    by_colour = colour.rerank(results, red, colours, 1.0)
    assert [hit.id for hit in by_colour] == ["red-a", "red-b", "blue-a", "blue-b"]  # ties keep their order
    assert [hit.score for hit in by_colour] == [0.8, 0.6, 0.9, 0.7]  # scores are reported as they were
    # half and half, on the scaled terms (shape 1, 2/3, 1/3, 0; colour 0 or 1): red-a 1/3 + 1/2 beats blue-a's
    # 1/2, which ties red-b's 0 + 1/2 and keeps its place before it
    assert [hit.id for hit in colour.rerank(results, red, colours, 0.5)] == ["red-a", "blue-a", "red-b", "blue-b"]
    # a little colour only breaks near ties: red-a 0.63 + 0.05 stays below blue-a 0.95
    assert [hit.id for hit in colour.rerank(results, red, colours, 0.05)] == ["blue-a", "red-a", "blue-b", "red-b"]


def test_results_without_a_colour_are_ranked_by_their_score_alone() -> None:
    one_hot = np.eye(colour.SIZE, dtype=np.float32)
    red = one_hot[colour.COLOUR_NAMES.index("red")]
    results = [Hit("blue", 0.95), Hit("old", 0.9), Hit("red", 0.5)]
    colours = {"old": None, "red": red, "blue": one_hot[colour.COLOUR_NAMES.index("blue")]}
    assert [hit.id for hit in colour.rerank(results, red, colours, 1.0)] == ["red", "old", "blue"]
    assert colour.rerank(results, red, {}, 1.0) == results  # none stored: the order stays


def shape_photo(shape: str, fill: tuple[int, int, int], seed: int) -> bytes:
    """A product-like picture: one shape in one colour on white, a little different per seed."""
    import io

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (240, 300), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    x, y = int(rng.integers(30, 50)), int(rng.integers(40, 60))
    box = (x, y, x + 160, y + 200)
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "rectangle":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x + 80, y), (x, y + 200), (x + 160, y + 200)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_a_search_weighs_colour_as_asked_on_every_face(tmp_path, lite0) -> None:
    """colour=1 brings the query's colour to the top; 0 leaves the model's order; the API and the item
    route agree, and a bad weight is refused by name."""
    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.catalog import Catalog
    from lookalike.config import Settings
    from lookalike.errors import LookalikeError
    from lookalike.index import IndexSettings, Item
    from lookalike.index.embedded import EmbeddedIndex
    from lookalike.search import Shaping, embed_query, search_image

    settings = IndexSettings(dim=lite0.dim, kind="exact", embedding=lite0.descriptor())
    catalog = Catalog(EmbeddedIndex.create(tmp_path / "index", settings), lite0)
    fills = {"red": RGB["red"], "blue": RGB["blue"]}
    items = []
    for shape in ("ellipse", "rectangle", "triangle"):
        for name, fill in fills.items():
            for seed in range(2):
                query = embed_query(catalog, shape_photo(shape, fill, seed))
                metadata = {"colour": name, "shape": shape}
                items.append(Item(f"{shape}-{name}-{seed}", query.vector, metadata, None, None, query.colour))
    catalog.index.add(items)
    photo = shape_photo("ellipse", fills["red"], 9)
    by_colour = search_image(catalog, photo, k=6, shaping=Shaping(colour=1.0))
    assert {hit.metadata["colour"] for hit in by_colour.results} == {"red"}  # the six red ones, every shape
    by_shape = search_image(catalog, photo, k=6, shaping=Shaping(colour=0.0))
    order = [hit.id for hit in catalog.index.search(embed_query(catalog, photo).vector, 6, exact=True)]
    assert [hit.id for hit in by_shape.results] == order
    with pytest.raises(LookalikeError, match="colour must be a number from 0 to 1"):
        Shaping(colour=1.5)
    from lookalike.evaluate.colour_weight import TOLERANCE, WEIGHTS, tune_colour_weight

    tuned = tune_colour_weight(catalog, "shape")  # the most colour that keeps same-shape precision
    precision = {float(weight): tuned["measured"][str(weight)]["precision@10"] for weight in WEIGHTS}
    assert tuned["weight"] in WEIGHTS and precision[tuned["weight"]] >= precision[0.0] - TOLERANCE
    assert all(precision[weight] < precision[0.0] - TOLERANCE for weight in WEIGHTS if weight > tuned["weight"])
    with pytest.raises(LookalikeError, match="labelled items"):
        tune_colour_weight(catalog, "no_such_field")
    catalog.index.write_note("colour", {"weight": 1.0})  # the catalogue's default
    catalog.forget_calibration()
    assert [hit.id for hit in search_image(catalog, photo, k=6).results] == [hit.id for hit in by_colour.results]
    with TestClient(create_app(catalog, Settings(cache=tmp_path / "c", api_key=None))) as client:
        upload = client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "6"}).json()
        assert [hit["id"] for hit in upload["results"]] == [hit.id for hit in by_colour.results]
        shape_only = {"ref": upload["query"]["ref"], "k": 6, "colour": 0}
        assert [hit["id"] for hit in client.post("/api/search", json=shape_only).json()["results"]] == order
        refused = client.post("/api/search", json={"ref": upload["query"]["ref"], "colour": 2})
        assert refused.status_code == 422 and "colour" in refused.text
        liked = client.post("/api/search", json={"id": "rectangle-blue-0", "k": 4, "colour": 1}).json()["results"]
        assert {hit["metadata"]["colour"] for hit in liked} == {"blue"}
    catalog.close()
