"""A region of the query photo the shopper chose (one shoe of an outfit): a box in fractions of the picture.

Fractions, not pixels, so the same box means the same region whichever size the browser sent, the server
decoded (JPEGs are decoded scaled down) or a shared link is opened with; they are of the picture as it is
shown, after its EXIF orientation. A box smaller than :data:`MIN_SIDE` of either side is refused: it would
be a few pixels of the decoded picture, and nothing the model could recognise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from lookalike.errors import LookalikeError

MIN_SIDE = 0.05


@dataclass(frozen=True)
class Crop:
    """``left, top, right, bottom`` as fractions of the picture's width and height (0 to 1)."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def zoom(self) -> float:
        """How much larger the picture must be decoded for the region to keep the detail the model needs."""
        return 1 / min(self.right - self.left, self.bottom - self.top)

    def apply(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        box = (
            math.floor(self.left * width),
            math.floor(self.top * height),
            max(math.floor(self.left * width) + 1, math.ceil(self.right * width)),
            max(math.floor(self.top * height) + 1, math.ceil(self.bottom * height)),
        )
        return image.crop(box)

    def as_list(self) -> list[float]:
        return [round(value, 4) for value in (self.left, self.top, self.right, self.bottom)]


def parse_crop(raw: Any) -> Crop | None:
    """A crop from the API's ``crop`` (four numbers, or their text ``"0.1,0.2,0.6,0.9"``); None for none."""
    if raw is None or raw == "" or raw == []:
        return None
    values: Sequence[Any] = raw.split(",") if isinstance(raw, str) else raw
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != 4:
        raise LookalikeError(f"crop must be four numbers left,top,right,bottom (fractions 0 to 1), got {raw!r}")
    try:
        left, top, right, bottom = (_fraction(value) for value in values)
    except (TypeError, ValueError):
        raise LookalikeError(f"crop must be four numbers from 0 to 1, got {raw!r}") from None
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        raise LookalikeError(
            f"crop must have left < right and top < bottom, each side at least {MIN_SIDE} of the picture; got {raw!r}"
        )
    return Crop(left, top, right, bottom)


def crop_of_box(box: Sequence[float], size: tuple[int, int]) -> Crop:
    """A pixel box (the focus stage's object) as fractions of a ``size`` picture."""
    width, height = size
    left, top, right, bottom = box
    return Crop(left / width, top / height, right / width, bottom / height)


def _fraction(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a fraction")
    number = float(value.strip() if isinstance(value, str) else value)
    if not 0 <= number <= 1:  # NaN fails this too
        raise ValueError(number)
    return number
