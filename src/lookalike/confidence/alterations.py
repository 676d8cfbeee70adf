"""Random altered copies of a catalogue photo: what "the same item" looks like when a shopper shows it.

A shopper's photo of an item the shop holds is rarely the shop's file: it is cropped, mirrored, re-encoded,
resized, shifted in colour, or a little rotated. Calibration makes such copies of catalogue photos with random
strengths (seeded), so it learns from the catalogue itself; ``lookalike eval``'s fixed transforms
(:mod:`lookalike.evaluate.duplicates`) stay a separate, fixed test.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageOps

KINDS = ("crop", "mirror", "jpeg", "resize", "colour", "rotate")


def altered(image: Image.Image, kind: str, rng: random.Random) -> bytes:
    """One altered copy of ``image`` (decoded, RGB) as JPEG bytes."""
    image = image.convert("RGB")
    quality = 92
    if kind == "crop":
        share = rng.uniform(0.75, 0.92)
        width, height = image.size
        w, h = round(share * width), round(share * height)
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        image = image.crop((left, top, left + w, top + h))
    elif kind == "mirror":
        image = ImageOps.mirror(image)
    elif kind == "jpeg":
        quality = rng.randint(20, 60)
    elif kind == "resize":
        share = rng.uniform(0.3, 0.7)
        size = (max(16, round(image.width * share)), max(16, round(image.height * share)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    elif kind == "colour":
        hsv = np.asarray(image.convert("HSV"), dtype=np.int16).copy()
        hsv[..., 0] = (hsv[..., 0] + rng.randint(-8, 8)) % 256
        hsv[..., 1] = np.clip(np.rint(hsv[..., 1] * rng.uniform(0.85, 1.15)), 0, 255)
        hsv[..., 2] = np.clip(np.rint(hsv[..., 2] * rng.uniform(0.9, 1.1)), 0, 255)
        image = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    elif kind == "rotate":
        angle = rng.uniform(4, 12) * rng.choice((-1, 1))
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    else:
        raise ValueError(f"unknown alteration {kind!r}")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
