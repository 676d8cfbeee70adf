"""A small colour descriptor of an item, and how two of them compare: the colour half of a query.

The model's features say what a thing is and only weakly what colour it is (ImageNet classes do not depend on
colour), so a shopper who wants *this dress in red* needs a second, explicit signal. It is kept deliberately
small and cheap: a histogram over :data:`COLOUR_NAMES` (12 floats an item, stored beside the vector in every
backend), computed in well under a millisecond from pixels that are decoded anyway, and compared with the
Bhattacharyya coefficient, which is 1 for the same mix of colours and 0 for disjoint ones.

Named colours rather than a fine HSV grid: two photos of one red shirt under different light land in the same
bins (a fine grid splits them), the dominant colour has a name a page can show, and "red with a white
collar" is a mix that the coefficient compares sensibly.

Background. A product is photographed on a floor, a bed or a white sheet; its colour is the product's, not
the floor's. Two weights make the background matter less: pixels near the centre count more (the product is
framed there), and when the border of the picture is one plain colour (a studio sheet, or the white that the
focus stage paints around the product) pixels of that colour count very little. Measured on 298 clothing
photos against the colour of the object alone (the focus stage's mask): see :data:`CENTRE_SIGMA`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image

COLOUR_NAMES: tuple[str, ...] = (
    "black",
    "grey",
    "white",
    "red",
    "orange",
    "yellow",
    "green",
    "teal",
    "blue",
    "purple",
    "pink",
    "brown",
)
"""The bins of a descriptor, in order ("brown" includes beige, tan and khaki; "teal" is cyan to turquoise).
Changing them changes every stored descriptor's meaning: a new name (or order) needs the catalogue
re-ingested."""
SIZE = len(COLOUR_NAMES)
BLACK, GREY, WHITE, RED, ORANGE, YELLOW, GREEN, TEAL, BLUE, PURPLE, PINK, BROWN = range(SIZE)

SIDE = 64
"""Pixels on the longer side the picture is reduced to first: colour needs no detail, and 4,096 pixels keep
the whole descriptor well under a millisecond."""
HUE_BINS: tuple[tuple[float, int], ...] = (
    (15, RED),
    (40, ORANGE),
    (70, YELLOW),
    (165, GREEN),
    (195, TEAL),
    (255, BLUE),
    (290, PURPLE),
    (340, PINK),
    (360, RED),
)
"""Upper hue bound (degrees, exclusive) of each chromatic colour: the usual names' ranges on the HSV wheel."""
BLACK_VALUE = 0.2
"""Below this brightness (0..1) any hue is black: dark fabric shows its hue only as noise."""
GREY_SATURATION = 0.18
"""Below this saturation a pixel has no hue worth naming: white, grey or black by brightness."""
WHITE_VALUE = 0.65
"""An achromatic pixel at least this bright is white, else grey (or black below ``BLACK_VALUE``). Catalogue
photos are taken indoors: white fabric shows at a brightness of 0.62 to 0.85, grey at about 0.5."""
BROWN_VALUE = 0.6
"""Red, orange and yellow hues darker than this are brown (brown is dark orange; tan leather, chocolate)."""
BEIGE_SATURATION = 0.4
"""Orange and yellow hues weaker than this are brown too: beige, tan, khaki and camel are a family of their
own in clothing, and calling a cream sweater orange would send a shopper to orange ones."""
PINK_SATURATION = 0.5
"""Light, weakly saturated reds are pink (a pale rose is not red)."""
CENTRE_SIGMA = 0.3
"""Width of the centre weighting, as a share of the picture's side (a Gaussian around the centre).

Measured with ``PLAIN_DISTANCE`` and ``PLAIN_SHARE`` on 298 clothing photos (the model's 224-px crops), as the
mean Bhattacharyya coefficient between a photo's descriptor and the histogram of the object's pixels alone
(the focus stage's mask), and how often the two name the same dominant colour: unweighted 0.916 and 80 %;
centre weighting (0.35) alone 0.944 and 84 %; the plain-border rule alone 0.940 and 88 %; both 0.961 and 88 %
(sigma 0.25 to 0.35, distance 24 to 40 and share 0.4 to 0.6 all give 0.950 to 0.965). On the focus stage's
crops (the product on white) the border rule is what matters: unweighted 0.904 and 59 %, both 0.993 and 92 %.
``bench/bench_colour.py`` repeats the measurement."""
BORDER = 2
"""Pixels of the border ring that decide whether the background is plain."""
PLAIN_SHARE = 0.5
"""The background counts as plain when at least this share of the border is within ``PLAIN_DISTANCE`` of its
median colour."""
PLAIN_DISTANCE = 32.0
"""RGB distance (0..441) within which a pixel is the plain background's colour: lighting gradients on a sheet
stay within it, a product's own shading mostly does not."""
BACKGROUND_WEIGHT = 0.02
"""What a background-coloured pixel counts for: little, but not nothing, so that a white shirt on white
still comes out white rather than as whatever little else is in the picture."""


def describe(image: Image.Image | np.ndarray) -> np.ndarray:
    """The picture's colour histogram over :data:`COLOUR_NAMES`: float32, non-negative, summing to 1.

    ``image`` is a PIL image (any mode) or an (h, w, 3) uint8 array, such as the crop an embedder prepares
    (ingest and search pass that one, so catalogue and query go through the same pixels, focus or not)."""
    rgb = _small_rgb(image)
    names = _lookup()[rgb[..., 0] >> LUT_SHIFT, rgb[..., 1] >> LUT_SHIFT, rgb[..., 2] >> LUT_SHIFT]
    weights = _centre_weights(rgb.shape[0], rgb.shape[1]) * _background_weights(rgb)
    histogram = np.bincount(names.ravel(), weights=weights.ravel(), minlength=SIZE).astype(np.float32)
    total = float(histogram.sum())
    if total <= 0:  # cannot happen with positive weights; an even mix is the honest "no idea"
        return np.full(SIZE, 1.0 / SIZE, dtype=np.float32)
    return histogram / np.float32(total)


def dominant(descriptor: np.ndarray | Sequence[float]) -> str:
    """The name of the descriptor's largest bin (the first of equals)."""
    return COLOUR_NAMES[int(np.argmax(np.asarray(descriptor)))]


def similarity(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """How alike two colour mixes are, 0..1: the Bhattacharyya coefficient ``sum(sqrt(a * b))``.

    1 for the same histogram, 0 when no colour is shared; unlike an L2 distance it rewards overlap in
    proportion to both shares, so a small shared accent counts little and a shared main colour much."""
    product = np.clip(np.asarray(a, dtype=np.float64), 0, None) * np.clip(np.asarray(b, dtype=np.float64), 0, None)
    return float(min(1.0, np.sqrt(product).sum()))


class Scored(Protocol):
    """What :func:`rerank` needs of a result (``SearchResult`` has it)."""

    id: str
    score: float


R = TypeVar("R", bound=Scored)


def rerank(results: Sequence[R], query: np.ndarray, colours: Mapping[str, np.ndarray | None], weight: float) -> list[R]:
    """``results`` re-ordered by ``(1 - weight) * shape + weight * colour``, best first, where ``shape`` is
    the score and ``colour`` the similarity to ``query``, each scaled to 0..1 over these results.

    The scaling makes the weight a dial rather than a switch: within a page of neighbours scores span a few
    hundredths while colour similarities span 0 to 1, so unscaled even 0.25 would hand the order to colour.
    ``weight`` 0 keeps the order (shape only), 1 orders by colour alone. A result without a stored colour
    (indexed before colours were, or added without one) is ranked by its shape term alone. Scores are left
    as they are: the answer reports the model's similarity, and only the order says how colour weighed in.
    Ties keep their original order (a stable sort)."""
    weight = float(weight)
    if weight <= 0 or not results:
        return list(results)
    shape = _unit_range([float(result.score) for result in results])
    shades = [colours.get(result.id) for result in results]
    known = [n for n, shade in enumerate(shades) if shade is not None]
    likeness = _unit_range([similarity(query, shades[n]) for n in known])  # type: ignore[arg-type]
    blended = list(shape)
    for n, value in zip(known, likeness, strict=True):
        blended[n] = (1.0 - weight) * shape[n] + weight * value
    order = sorted(range(len(results)), key=lambda n: blended[n], reverse=True)
    return [results[n] for n in order]


def _unit_range(values: list[float]) -> list[float]:
    """``values`` scaled to 0..1 (all 1 when they are equal)."""
    if not values:
        return []
    low, high = min(values), max(values)
    return [1.0] * len(values) if high <= low else [(value - low) / (high - low) for value in values]


def _small_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """The picture as an RGB array with its longer side at most :data:`SIDE` (box-filtered: the mean colour
    of each block, so a patterned fabric's mix survives)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    factor = -(-max(image.size) // SIDE)  # the smallest whole factor that brings the longer side to SIDE
    if factor > 1:
        image = image.reduce(factor)  # a box filter by a whole factor: 3x faster than resize to exactly SIDE
    return np.asarray(image)


LUT_BITS = 6
"""Bits per channel of the RGB -> colour table: 64 levels, 262,144 entries of one byte. A pixel's name then
costs one indexing instead of an HSV conversion and a cascade of rules (which took 0.2 ms a picture, two
thirds of the descriptor); cells are 4 levels wide, so only colours within 4 levels of a rule's boundary can
be named otherwise than the rules would name them."""
LUT_SHIFT = 8 - LUT_BITS


@functools.cache
def _lookup() -> np.ndarray:
    """The colour index of every quantized RGB colour (the centre of its cell), by :func:`_names`; built once
    (about 40 ms), on first use."""
    levels = (np.arange(2**LUT_BITS, dtype=np.uint16) << LUT_SHIFT) + (1 << LUT_SHIFT >> 1)
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    cube = np.stack([r, g, b], axis=-1).astype(np.uint8).reshape(2**LUT_BITS, -1, 3)
    hsv = np.asarray(Image.fromarray(cube).convert("HSV"), dtype=np.float32) / 255.0
    names = _names(hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]).astype(np.uint8)
    return names.reshape(2**LUT_BITS, 2**LUT_BITS, 2**LUT_BITS)


def _names(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Each pixel's colour index by the rules above (hue in degrees, saturation and value 0..1)."""
    bounds = np.array([bound for bound, _ in HUE_BINS], dtype=np.float32)
    chromatic = np.array([name for _, name in HUE_BINS], dtype=np.int64)
    names = chromatic[np.minimum(np.searchsorted(bounds, hue, side="right"), len(bounds) - 1)]
    warm = (names == RED) | (names == ORANGE) | (names == YELLOW)
    names = np.where(warm & (value < BROWN_VALUE), BROWN, names)
    names = np.where(((names == ORANGE) | (names == YELLOW)) & (saturation < BEIGE_SATURATION), BROWN, names)
    names = np.where((names == RED) & (saturation < PINK_SATURATION) & (value >= WHITE_VALUE), PINK, names)
    achromatic = np.where(value >= WHITE_VALUE, WHITE, GREY)
    names = np.where(saturation < GREY_SATURATION, achromatic, names)
    return np.where(value < BLACK_VALUE, BLACK, names)


_CENTRE_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _centre_weights(height: int, width: int) -> np.ndarray:
    """A Gaussian around the centre, ``CENTRE_SIGMA`` of each side wide (cached: a few sizes recur)."""
    weights = _CENTRE_CACHE.get((height, width))
    if weights is None:
        ys = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
        xs = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
        weights = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * CENTRE_SIGMA**2)).astype(np.float32)
        if len(_CENTRE_CACHE) < 64:
            _CENTRE_CACHE[(height, width)] = weights
    return weights


def _background_weights(rgb: np.ndarray) -> np.ndarray:
    """``BACKGROUND_WEIGHT`` for pixels of a plain background's colour, 1 for the rest (all 1 when the border
    is not one plain colour, or the picture is too small to have a border)."""
    height, width = rgb.shape[:2]
    if min(height, width) <= 4 * BORDER:
        return np.ones((height, width), dtype=np.float32)
    pixels = rgb.astype(np.int32)
    ring = np.concatenate(
        [
            pixels[:BORDER].reshape(-1, 3),
            pixels[-BORDER:].reshape(-1, 3),
            pixels[BORDER:-BORDER, :BORDER].reshape(-1, 3),
            pixels[BORDER:-BORDER, -BORDER:].reshape(-1, 3),
        ]
    )
    background = np.median(ring, axis=0)
    limit = PLAIN_DISTANCE**2
    if np.mean(((ring - background) ** 2).sum(axis=1) <= limit) < PLAIN_SHARE:
        return np.ones((height, width), dtype=np.float32)
    near = ((pixels - background) ** 2).sum(axis=2) <= limit
    return np.where(near, np.float32(BACKGROUND_WEIGHT), np.float32(1.0))
