"""Images from outside any product catalogue's domain, made here: what a "no close match" looks like.

A shop's catalogue holds product photos; a shopper may show anything. Calibration needs examples of
"anything" without a download, so they are drawn: uniform noise, colour gradients, rendered text on paper,
flat shapes, stripes and checks. A seed makes them repeatable, and a different seed gives the evaluation a
different set from the one calibration learned from.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFont

KINDS = ("noise", "gradient", "text", "shapes", "stripes")
WORDS = ("SALE", "order", "invoice", "hello", "42", "receipt", "total", "menu", "ticket", "page")


def out_of_domain(count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEG images, the kinds in turn."""
    rng = np.random.default_rng(seed)
    return [_draw(KINDS[i % len(KINDS)], rng, random.Random(seed * 100_003 + i)) for i in range(count)]


def _draw(kind: str, rng: np.random.Generator, words: random.Random) -> bytes:
    size = (int(rng.integers(300, 600)), int(rng.integers(300, 600)))
    if kind == "noise":
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    elif kind == "gradient":
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, size[0])[None, :, None]
        row = (a * (1 - t) + b * t).astype(np.uint8)
        image = Image.fromarray(np.repeat(row, size[1], axis=0))
    elif kind == "text":
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=int(rng.integers(24, 48)))
        for line in range(int(rng.integers(2, 7))):
            draw.text((20, 20 + 60 * line), " ".join(words.choice(WORDS) for _ in range(3)), fill=(0, 0, 0), font=font)
    elif kind == "shapes":
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
            box = (x0, y0, x0 + int(rng.integers(40, size[0] // 2)), y0 + int(rng.integers(40, size[1] // 2)))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    else:
        period = int(rng.integers(8, 60))
        x, y = np.meshgrid(np.arange(size[0]), np.arange(size[1]))
        pattern = ((x // period) % 2) if rng.random() < 0.5 else ((x // period + y // period) % 2)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        image = Image.fromarray(np.where(pattern[..., None] == 1, a, b).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
