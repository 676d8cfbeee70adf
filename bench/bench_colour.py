"""The colour descriptor (lookalike.colour): how well it ignores the background, and what it costs.

    .venv/bin/python bench/bench_colour.py [--photos 300]

The reference for each clothing photo is the histogram of the object's own pixels: the focus stage's crop
(the product on white, int8 masks) with the white left out, every pixel counted alike. Each weighting of
``describe`` is run on the photo's model crop (224 px, no focus) and on the focus stage's crop, and compared
with the reference: the mean Bhattacharyya coefficient, and how often both name the same dominant colour.
The figures are quoted in ``lookalike.colour.CENTRE_SIGMA``; the time is one ``describe`` of a 224-px crop
(what ingest and search pass), of a 64-px picture and of an 800x600 photo.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lookalike import colour  # noqa: E402
from lookalike.focus import Focus  # noqa: E402
from lookalike.images import load_image, resize_and_crop  # noqa: E402
from lookalike.sources import clothing_dataset  # noqa: E402


def photos(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(model crop, focus crop) of ``count`` random clothing photos where the focus stage finds an object."""
    sources = list(clothing_dataset(fallback=False))
    focus = Focus(precision="int8")
    pairs = []
    for i in np.random.default_rng(1).choice(len(sources), count, replace=False):
        image = load_image(sources[i].read(), min_side=512)
        focused = focus.focus(image)
        if focused.found:
            pairs.append((resize_and_crop(image, 256, 224), resize_and_crop(focused.image, 256, 224)))
    return pairs


def reference(focused: np.ndarray) -> np.ndarray:
    """The object's colour: the focus crop's pixels that are not the painted white, unweighted."""
    small = np.asarray(Image.fromarray(focused).resize((64, 64), Image.Resampling.NEAREST))
    shift = colour.LUT_SHIFT
    names = colour._lookup()[small[..., 0] >> shift, small[..., 1] >> shift, small[..., 2] >> shift]
    histogram = np.bincount(names[~(small == 255).all(axis=2)], minlength=colour.SIZE).astype(np.float32)
    return histogram / max(float(histogram.sum()), 1.0)


def measure(pairs: list[tuple[np.ndarray, np.ndarray]], label: str, **overrides: float) -> None:
    saved = {name: getattr(colour, name) for name in overrides}
    for name, value in overrides.items():
        setattr(colour, name, value)
    colour._CENTRE_CACHE.clear()
    try:
        for which in (0, 1):
            similarities, agree = [], []
            for pair in pairs:
                described, wanted = colour.describe(pair[which]), reference(pair[1])
                similarities.append(colour.similarity(described, wanted))
                agree.append(colour.dominant(described) == colour.dominant(wanted))
            crop = ("model crop", "focus crop")[which]
            print(f"{label:40s} {crop:10s}  {np.mean(similarities):.3f}  dominant agrees {np.mean(agree):.0%}")
    finally:
        for name, value in saved.items():
            setattr(colour, name, value)
        colour._CENTRE_CACHE.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args()
    pairs = photos(args.photos)
    print(f"{len(pairs)} photos with an object")
    measure(pairs, "no weighting", CENTRE_SIGMA=1e6, PLAIN_SHARE=2.0)
    measure(pairs, "centre (0.35) only", CENTRE_SIGMA=0.35, PLAIN_SHARE=2.0)
    measure(pairs, "plain border only", CENTRE_SIGMA=1e6)
    for sigma, distance, share in itertools.product((0.25, 0.3, 0.35), (24.0, 32.0, 40.0), (0.4, 0.5, 0.6)):
        label = f"centre {sigma}, border {distance:.0f} / {share}"
        measure(pairs, label, CENTRE_SIGMA=sigma, PLAIN_DISTANCE=distance, PLAIN_SHARE=share)
    crop = pairs[0][0]
    for label, picture in (
        ("224-px crop (array)", crop),
        ("64-px picture", Image.fromarray(crop).resize((64, 64))),
        ("800x600 photo", Image.fromarray(crop).resize((800, 600))),
    ):
        colour.describe(picture)
        started = time.perf_counter()
        for _ in range(1000):
            colour.describe(picture)
        print(f"describe, {label}: {(time.perf_counter() - started):.3f} ms")  # 1000 runs: seconds = ms each


if __name__ == "__main__":
    main()
