"""``efficientnet-lite{0,1,2}-int8``: the EfficientNet-Lite models with 8-bit weights and activations (optional).

Same preprocessing and 1280-d features as the fp32 variant, in a different feature space as far as an index
is concerned: the descriptor's name and weights digest (that of the int8 file itself) differ, so an index built
with one model refuses the other. Measured for Lite0 on the clothing catalogue (``bench/bench_quantize.py``):
about 2.7x the model throughput of fp32, same-label precision@10 within 0.001.

The int8 file is built on first use from the cached fp32 export (see :mod:`lookalike.embed.quantize` for the
recipe) and cached next to it as ``models/efficientnet-liteN-<digest>-e1-int8-q<version>[r]-<calibration>.onnx``
(``r``: 7-bit weights, chosen on x86 CPUs without VNNI).

Calibration, needed only for that first build: 200 images of the clothing catalogue when it is already on this
machine (:func:`~lookalike.sources.datasets.find_clothing_dataset`, which never downloads), prepared with the
variant's own resize and crop and recorded as ``"calibration": "clothing-200"``; otherwise 200 synthetic images
of the variant's crop size, ``"synthetic-200"``. Product photos calibrate better than synthetic ones, but either
is only a set of activation ranges, not training. Once a file is cached it is used whatever its calibration (a
clothing-calibrated one first when both exist), so the model, and the vectors it makes, do not change under an
index when a data set appears later.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np

from lookalike.embed.base import Embedder, Preprocessing
from lookalike.embed.efficientnet import DEFAULT, VARIANTS
from lookalike.embed.export import file_digest
from lookalike.embed.quantize import (
    CALIBRATION_IMAGES,
    QUANT_VERSION,
    RECIPE,
    RECIPE_REDUCED,
    needs_reduced_range,
    quantize_int8,
    synthetic_batches,
)

SUFFIX = "-int8"
MODELS = {f"{name}{SUFFIX}": variant for name, variant in VARIANTS.items()}
"""The int8 model names, each with the fp32 variant it is made from."""
NAME = f"{DEFAULT.name}{SUFFIX}"
Calibration = Callable[[], tuple[str, Iterable[np.ndarray]]]
"""Returns a tag for the descriptor (like ``"clothing-200"``) and uint8 NHWC batches of prepared images."""


def load(cache_dir: Path, threads: int = 0, calibration: Calibration | None = None, name: str = NAME) -> Embedder:
    """The int8 embedder ``name``, exporting and quantizing on first use (``calibration`` only matters then)."""
    variant = MODELS[name]
    fp32, digest = variant.export(cache_dir)
    reduced = needs_reduced_range()  # read the CPU's flags once
    path = cached_int8(fp32, calibration or partial(default_calibration, variant.preprocessing), reduced)
    return Embedder(
        name,
        path,
        variant.dim,
        variant.preprocessing,
        threads,
        extra={
            "weights": file_digest(path),
            "fp32_weights": digest,
            "calibration": path.stem.rsplit(_marker(reduced), 1)[1],
            "quantization": RECIPE_REDUCED if reduced else RECIPE,
        },
    )


def _marker(reduced: bool | None = None) -> str:
    """Part of the cached file's name: recipe version, and ``r`` for 7-bit weights (x86 without VNNI), so a
    file made for one kind of CPU is never picked up on the other (their vectors differ). ``None``: this CPU."""
    reduced = needs_reduced_range() if reduced is None else reduced
    return f"-int8-q{QUANT_VERSION}{'r' if reduced else ''}-"


def cached_int8(fp32: Path, calibration: Calibration, reduced: bool) -> Path:
    """The cached int8 file for the fp32 export ``fp32``, built with ``calibration()`` if there is none
    (``reduced``: with 7-bit weights)."""
    prefix = f"{fp32.stem}{_marker(reduced)}"
    existing = sorted(fp32.parent.glob(f"{prefix}*.onnx"))
    if existing:
        return existing[0]
    tag, batches = calibration()
    return quantize_int8(fp32, fp32.parent / f"{prefix}{tag}.onnx", batches, reduce_range=reduced)


def default_calibration(
    preprocessing: Preprocessing, count: int = CALIBRATION_IMAGES, batch: int = 20
) -> tuple[str, Iterable[np.ndarray]]:
    """``count`` clothing catalogue images (a fixed random sample) if the catalogue is here, else synthetic ones,
    resized and cropped as ``preprocessing`` says."""
    pixels = _clothing_sample(preprocessing, count)
    if pixels is None or len(pixels) < count // 2:
        return f"synthetic-{count}", synthetic_batches(count, batch, size=preprocessing.crop)
    return f"clothing-{len(pixels)}", (pixels[i : i + batch] for i in range(0, len(pixels), batch))


def _clothing_sample(preprocessing: Preprocessing, count: int) -> np.ndarray | None:
    from lookalike.errors import LookalikeError
    from lookalike.images import load_image, resize_and_crop
    from lookalike.sources.datasets import ClothingSource, find_clothing_dataset

    try:
        root = find_clothing_dataset()
        if root is None:
            return None
        items = sorted(ClothingSource(root), key=lambda item: item.id)
    except LookalikeError:
        return None
    resize, crop = preprocessing.resize, preprocessing.crop
    pixels = []
    for item in random.Random(0).sample(items, min(count, len(items))):
        try:
            pixels.append(resize_and_crop(load_image(item.read(), min_side=resize), resize, crop))
        except Exception:  # an unreadable image is just left out of the sample
            continue
    return np.stack(pixels) if pixels else None
