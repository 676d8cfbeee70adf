"""Near-duplicate recall: does an altered copy of a catalogue photo find its original first?

A seeded sample of catalogue items is read back from where each image lives, altered by every transform of
the fixed set :data:`TRANSFORMS`, embedded with the catalogue's model through the query path (decode, prepare,
embed) and searched; a hit is the original item ranked first (recall@1), or among the first k (recall@k).

The transforms, exactly (``w`` x ``h`` is the decoded original, EXIF orientation applied; every result is
encoded as JPEG quality 95, except ``jpeg30``):

* ``crop80``: the centre 80 % of each side, box ``(round(0.1 w), round(0.1 h))`` + ``(round(0.8 w), round(0.8 h))``;
* ``mirror``: flipped left to right;
* ``rotate10``: rotated 10 degrees anticlockwise, bicubic, canvas expanded to fit, corners filled white;
* ``jpeg30``: re-encoded as JPEG quality 30;
* ``half``: ``(w // 2, h // 2)``, Lanczos;
* ``colour``: in Pillow's HSV (0-255 per channel), hue + 7 (9.8 degrees) modulo 256, saturation x 1.1
  rounded and clipped at 255, value unchanged;
* ``text``: "SALE -50%" in Pillow's default font at a size of 8 % of the shorter side (at least 10 px),
  white with a black outline of a twelfth of that size (at least 1 px), its top-left corner at 4 % of the
  shorter side from the image's left edge, with its bottom as far from the bottom edge.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lookalike.embed import Embedder
from lookalike.errors import LookalikeError, SourceError
from lookalike.evaluate.neighbours import Snapshot
from lookalike.images import load_image
from lookalike.index import VectorIndex
from lookalike.ingest import bounded_map

QUALITY = 95
"""JPEG quality every transformed image is saved at (``jpeg30`` excepted)."""
OVERLAY_TEXT = "SALE -50%"
EMBED_BATCH = 32


def _encode(image: Image.Image, quality: int = QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def crop80(image: Image.Image) -> bytes:
    width, height = image.size
    left, top = round(0.1 * width), round(0.1 * height)
    return _encode(image.crop((left, top, left + round(0.8 * width), top + round(0.8 * height))))


def mirror(image: Image.Image) -> bytes:
    return _encode(ImageOps.mirror(image))


def rotate10(image: Image.Image) -> bytes:
    return _encode(image.rotate(10, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255)))


def jpeg30(image: Image.Image) -> bytes:
    return _encode(image, quality=30)


def half(image: Image.Image) -> bytes:
    width, height = image.size
    return _encode(image.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.LANCZOS))


def colour(image: Image.Image) -> bytes:
    hsv = np.asarray(image.convert("HSV"), dtype=np.int16).copy()
    hsv[..., 0] = (hsv[..., 0] + 7) % 256
    hsv[..., 1] = np.clip(np.rint(hsv[..., 1] * 1.1), 0, 255)
    return _encode(Image.fromarray(hsv.astype(np.uint8), "HSV"))


def text(image: Image.Image) -> bytes:
    image = image.convert("RGB")  # a copy: the original stays as it was for the other transforms
    short = min(image.size)
    size = max(10, round(0.08 * short))
    margin = round(0.04 * short)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    stroke = max(1, size // 12)
    left, _, _, bottom = draw.textbbox((0, 0), OVERLAY_TEXT, font=font, stroke_width=stroke)
    position = (margin - left, image.height - margin - bottom)
    draw.text(position, OVERLAY_TEXT, fill=(255, 255, 255), font=font, stroke_width=stroke, stroke_fill=(0, 0, 0))
    return _encode(image)


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "crop80": crop80,
    "mirror": mirror,
    "rotate10": rotate10,
    "jpeg30": jpeg30,
    "half": half,
    "colour": colour,
    "text": text,
}
"""The fixed set, in report order: name -> decoded original -> encoded altered copy."""


def transform_bytes(data: bytes, name: str) -> bytes:
    """The altered copy ``name`` of the image in ``data`` (deterministic: the same bytes every time)."""
    return TRANSFORMS[name](load_image(data))


def read_location(location: str | None) -> bytes:
    """The bytes of an item's image: a local path, an http(s) URL, or any fsspec URL (s3://...)."""
    if not location:
        raise SourceError("the item records no image location")
    if location.startswith(("http://", "https://")):
        from lookalike.sources.fetch import fetch_bytes

        return fetch_bytes(location)
    if "://" in location:
        from lookalike.sources.folder import FsReader, url_to_fs

        fs, path = url_to_fs(location, None)
        return FsReader(fs, path, location)()
    try:
        return Path(location).read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {location}: {exc}") from exc


@dataclass
class DuplicateReport:
    transforms: tuple[str, ...]
    sampled: int
    """Items drawn from the catalogue (with a location)."""
    unreadable: int
    """Of those, items whose image could not be read or decoded: left out."""
    k: int
    exact: bool
    recall_at_1: dict[str, float] = field(default_factory=dict)
    recall_at_k: dict[str, float] = field(default_factory=dict)

    @property
    def queries(self) -> int:
        """Altered copies searched per transform."""
        return self.sampled - self.unreadable

    @property
    def overall_at_1(self) -> float | None:
        """Over every altered copy of every transform; None when nothing could be read."""
        return float(np.mean(list(self.recall_at_1.values()))) if self.recall_at_1 else None

    @property
    def overall_at_k(self) -> float | None:
        return float(np.mean(list(self.recall_at_k.values()))) if self.recall_at_k else None


def duplicate_recall(
    index: VectorIndex,
    embedder: Embedder,
    sample: int = 200,
    seed: int = 0,
    k: int = 10,
    exact: bool = False,
    snapshot: Snapshot | None = None,
    transforms: Mapping[str, Callable[[Image.Image], bytes]] = TRANSFORMS,
    read: Callable[[str | None], bytes] = read_location,
    workers: int = 2,
    among: np.ndarray | None = None,
) -> DuplicateReport:
    """Recall@1 and @k of each transform's altered copies of ``sample`` seeded catalogue items.

    The search is the index's own (approximate unless ``exact``), as a user's query by image runs. Reading
    and altering run in ``workers`` threads, ahead of the model; the results do not depend on their number.
    ``among``: a bool per item, only those are sampled (a held-out half).
    """
    snapshot = snapshot if snapshot is not None else Snapshot.load(index)
    candidates = [
        position
        for position, location in enumerate(snapshot.locations)
        if location and (among is None or among[position])
    ]
    chosen = random.Random(seed).sample(candidates, min(sample, len(candidates)))
    names = tuple(transforms)
    hits_1 = dict.fromkeys(names, 0)
    hits_k = dict.fromkeys(names, 0)
    unreadable = 0
    pending: list[tuple[str, str, np.ndarray]] = []  # (original id, transform, prepared pixels)

    def flush() -> None:
        vectors = embedder.embed_prepared(np.stack([pixels for _, _, pixels in pending]))
        for (original, name, _), vector in zip(pending, vectors, strict=True):
            found = [result.id for result in index.search(vector, k, exact=exact)]
            hits_1[name] += bool(found) and found[0] == original
            hits_k[name] += original in found
        pending.clear()

    def altered(position: int) -> list[tuple[str, np.ndarray]] | None:
        """Every transform of one item's image, prepared for the model (in a worker thread); None: unreadable."""
        try:
            image = load_image(read(snapshot.locations[position]))
            return [
                (name, embedder.prepare(load_image(make(image), min_side=embedder.decode_min_side)))
                for name, make in transforms.items()
            ]
        except (LookalikeError, OSError, ValueError):
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="alter") as pool:
        for position, prepared in zip(chosen, bounded_map(pool, altered, chosen, window=4 * workers), strict=True):
            if prepared is None:
                unreadable += 1
                continue
            pending.extend((snapshot.ids[position], name, pixels) for name, pixels in prepared)
            if len(pending) >= EMBED_BATCH:
                flush()
    if pending:
        flush()
    report = DuplicateReport(names, len(chosen), unreadable, k, exact)
    if report.queries:  # else the recall dicts stay empty: nothing was measured
        report.recall_at_1 = {name: hits_1[name] / report.queries for name in names}
        report.recall_at_k = {name: hits_k[name] / report.queries for name in names}
    return report
