"""Which focus settings, crops and poolings make "more like this" follow the item on the clothing catalogue.

Measured before the product's defaults are chosen. The focus stage's masks (U²-Net-p at a resolution and a
precision) are computed once per setting and cached; the crops made from them vary:

* ``soft``: the product's recipe (every pixel blended towards white by ``1 - mask``; the box of mask >= 0.5
  grown by a margin and squared; then the model's resize and centre crop);
* ``hard``: the same, but the matte binarised at 0.5 first (no half-transparent floor at the edges);
* ``fit``: the square crop resized straight to the model's input (no centre crop cutting the object's ends).

Each crop goes through the backbone (torch, the product's normalisation), pooled by global average (GAP,
the product's), GeM p = 2 or CroW, each also centred on the catalogue's mean (learned without labels).
Protocol as ``quality_survey.py``: leave-one-out exact cosine over all items, the 5,096 real-class items as
queries; same-label precision@1/@10 and same-sender share@10.

    .venv/bin/python bench/focus_survey.py [--configs fp32-160-soft,...] [--backbones lite0,lite2]
        [--cache /tmp/focus-survey] [--out bench/results/focus-survey.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from quality_survey import Backbone, Catalogue, evaluate, machine, read_catalogue

from lookalike.embed import load_embedder
from lookalike.focus import Focus
from lookalike.focus.stage import WHITE, _upscale, object_box, square_crop
from lookalike.images import load_image, resize_and_crop, to_rgb

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "clothing-dataset"
BATCH = 32
MODELS = {"lite0": "efficientnet-lite0", "lite2": "efficientnet-lite2", "lite1": "efficientnet-lite1"}


def decode_all(catalogue: Catalogue) -> list[Image.Image]:
    return [to_rgb(load_image(path.read_bytes())) for path in catalogue.paths]


def masks_for(images: list[Image.Image], resolution: int, precision: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"masks-{precision}-{resolution}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["masks"], saved["peaks"]
    focus = Focus(resolution=resolution, precision=precision, threads=2)
    began = time.perf_counter()
    masks, peaks = [], []
    for start in range(0, len(images), BATCH):
        m, p = focus.small_masks(images[start : start + BATCH])
        masks.append(m.astype(np.float16))
        peaks.append(p)
    print(f"  masks {precision}-{resolution}: {1000 * (time.perf_counter() - began) / len(images):.1f} ms/photo")
    out = np.concatenate(masks), np.concatenate(peaks)
    np.savez(path, masks=out[0], peaks=out[1])
    return out


def focused(image: Image.Image, small: np.ndarray, peak: float, crop_mode: str, margin: float) -> Image.Image:
    if peak < 0.1:
        return image
    width, height = image.size
    matte = _upscale(small.astype(np.float32), image.size)
    array = np.asarray(matte)
    box = object_box(array, 0.5)
    if box is None or (box[2] - box[0]) * (box[3] - box[1]) < 0.01 * width * height:
        return image
    if crop_mode == "box":  # the crop alone: no white outside the object
        matte = Image.new("L", image.size, 255)
    if crop_mode == "hard":
        matte = Image.fromarray(np.where(array >= 128, 255, 0).astype(np.uint8))
    crop = square_crop(box, margin)
    side = crop[2] - crop[0]
    out = Image.composite(image.crop(crop), Image.new("RGB", (side, side), WHITE), matte.crop(crop))
    if crop_mode == "grey":
        return out.convert("L").convert("RGB")
    if crop_mode == "greyworld":  # equal channel means over the object, so a colour cast of the light goes
        pixels = np.asarray(out, dtype=np.float32)
        weights = np.asarray(matte.crop(crop), dtype=np.float32)[..., None] / 255.0
        means = (pixels * weights).sum(axis=(0, 1)) / max(float(weights.sum()), 1.0)
        gains = means.mean() / np.maximum(means, 1.0)
        balanced = pixels * (1 - weights) + np.clip(pixels * gains, 0, 255) * weights
        return Image.fromarray(balanced.astype(np.uint8))
    return out


def model_input(image: Image.Image, backbone: Backbone, fit: bool) -> np.ndarray:
    if fit and image.width == image.height:
        return np.asarray(image.resize((backbone.crop, backbone.crop), Image.Resampling.BILINEAR, reducing_gap=None))
    return resize_and_crop(image, backbone.resize, backbone.crop)


def vectors_for(pixels: list[np.ndarray], model: str) -> dict[str, np.ndarray]:
    """The product's own ONNX model (global average pooling), in batches."""
    embedder = load_embedder(model, threads=2)
    parts = [embedder.embed_prepared(np.stack(pixels[start : start + BATCH])) for start in range(0, len(pixels), BATCH)]
    return {"gap": l2n(np.concatenate(parts))}


def l2n(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--configs", default="none,fp32-160-soft,int8-160-soft,int8-128-soft,int8-160-hard,int8-160-fit"
    )
    parser.add_argument("--backbones", default="lite2")
    parser.add_argument("--margin", type=float, default=0.04)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/focus-survey"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    catalogue = read_catalogue(args.data)
    print(json.dumps(machine()))
    began = time.perf_counter()
    images = decode_all(catalogue)
    print(f"decoded {len(images)} photos in {time.perf_counter() - began:.0f} s", flush=True)
    rows: list[dict[str, Any]] = []
    for config in args.configs.split(","):
        if config == "none":
            crops, fit = images, False
        else:
            precision, resolution, mode = config.split("-")[:3]
            masks, peaks = masks_for(images, int(resolution), precision, args.cache)
            crops = [focused(i, m, float(p), mode, args.margin) for i, m, p in zip(images, masks, peaks, strict=True)]
            fit = mode == "fit"
        mirror = config.endswith("-mirror")
        for key in args.backbones.split(","):
            name = MODELS[key.removesuffix("-int8")] + ("-int8" if key.endswith("-int8") else "")
            preprocessing = load_embedder(name, threads=2).preprocessing
            backbone = Backbone(key, name, "", "", preprocessing.resize, preprocessing.crop)
            pixels = [model_input(c, backbone, fit) for c in crops]
            started = time.perf_counter()
            pooled = vectors_for(pixels, name)
            if mirror:
                flipped = vectors_for([np.ascontiguousarray(p[:, ::-1]) for p in pixels], name)
                pooled = {key: l2n(pooled[key] + flipped[key]) for key in pooled}
            np.save(args.cache / f"vectors-{config}-{key}.npy", pooled["gap"])
            print(f"  {config} {key}: features in {time.perf_counter() - started:.0f} s", flush=True)
            for pooling, vectors in pooled.items():
                for centred in (False, True):
                    v = l2n(vectors - vectors.mean(axis=0)) if centred else vectors
                    summary = evaluate(v, catalogue).summary()
                    row = {"focus": config, "backbone": key, "pooling": pooling, "centred": centred, **summary}
                    rows.append(row)
                    print(
                        f"{config:16} {key:6} {pooling:5} {'centred' if centred else '       '} "
                        f"P@1 {summary['p@1']:.3f}  P@10 {summary['p@10']:.3f}  sender {summary['sender@10']:.3f}",
                        flush=True,
                    )
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "margin": args.margin, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
