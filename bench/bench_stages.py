"""Where ingest time goes: CPU milliseconds per image for each stage, before (a naive pipeline) and after.

Every stage runs on one thread and is timed with ``time.thread_time()``: the CPU time of that thread alone, so
what else runs on the machine hardly changes it (unlike wall time). The sum over the stages is the CPU cost of
one image; with two cores working all the time, ``2000 / sum`` images/s is the ceiling for ingest, and the
end-to-end rate measured by ``bench_quantize.py`` shows how close the pipeline gets to it.

Stages, on the same sample of catalogue photos:

* read: the file's bytes;
* decode: naive is a full-size ``Image.open(...).convert("RGB")``; lookalike's ``load_image`` asks the JPEG
  decoder for the smallest 1/2, 1/4 or 1/8 scale that still covers the model's input (resize-on-decode);
* resize + crop: naive resizes the whole image (bicubic) then crops; lookalike resamples only the crop box;
* normalise: naive makes float32 ``(x - mean) / std`` in NumPy; lookalike has it folded into the model graph
  (uint8 goes in), so this stage costs nothing;
* model: a batch of 32 on one ONNX Runtime thread, per image: fp32 and the optional int8 model;
* index: adding the vectors to an embedded HNSW index (FAISS on one thread, SQLite), per image, at the size of
  the clothing catalogue (5,000 vectors).

    python bench/bench_stages.py [--images 200] [--out bench/results/stages.json]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from bench_core import machine  # bench/ is on sys.path when this file is run
from PIL import Image

from lookalike.embed import load_embedder
from lookalike.images import load_image, resize_and_crop
from lookalike.index import EmbeddedIndex, IndexSettings, Item
from lookalike.sources.datasets import clothing_dataset

RESIZE, CROP = 256, 224
MEAN, STD = np.float32(127.0), np.float32(128.0)
BATCH = 32


def cpu_ms_per_call(function: Callable[[Any], Any], inputs: list[Any]) -> tuple[float, list[Any]]:
    """Mean CPU milliseconds of this thread per call of ``function`` over ``inputs``, and the outputs."""
    outputs = []
    started = time.thread_time()
    for value in inputs:
        outputs.append(function(value))
    return (time.thread_time() - started) * 1000 / len(inputs), outputs


def naive_decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def naive_resize_crop(image: Image.Image) -> np.ndarray:
    scale = RESIZE / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
    return np.asarray(image.crop((left, top, left + CROP, top + CROP)))


def naive_normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - MEAN) / STD


def model_ms(name: str, batch: np.ndarray, reps: int) -> float:
    """CPU ms per image of the model on one thread, best of ``reps`` batches (load only ever adds time)."""
    embedder = load_embedder(name, threads=1)
    embedder.embed_prepared(batch)  # warm-up: ORT allocates and picks kernels on the first run
    runs = []
    for _ in range(reps):
        started = time.thread_time()
        embedder.embed_prepared(batch)
        runs.append((time.thread_time() - started) * 1000 / len(batch))
    return min(runs)


def index_ms(vectors: np.ndarray, workdir: Path, count: int) -> float:
    """CPU ms per vector to add ``count`` vectors to a fresh HNSW index, as ingest does (one bulk load, one thread).

    The sample's real vectors, repeated with a little noise up to a catalogue-like size: an HNSW insert costs
    more as the graph grows, and the graph is built in batches of a few thousand.
    """
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    repeats = -(-count // len(vectors))
    vectors = np.tile(vectors, (repeats, 1))[:count]
    vectors = vectors + rng.normal(0, 0.05 * float(vectors.std()), vectors.shape).astype(np.float32)
    index = EmbeddedIndex.create(workdir / "index", IndexSettings(dim=vectors.shape[1], metric="cosine"))
    items = [Item(f"item-{i}", vector, {"label": "x"}, f"/p/{i}", f"h{i}") for i, vector in enumerate(vectors)]
    started = time.thread_time()
    with index.bulk_load():
        for start in range(0, len(items), BATCH):
            index.add(items[start : start + BATCH])
    index.save()
    elapsed = time.thread_time() - started
    index.close()
    return elapsed * 1000 / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="photos in the sample")
    parser.add_argument("--quick", action="store_true", help="100 photos and 2,000 index vectors")
    parser.add_argument("--reps", type=int, default=5, help="model batches timed (the best counts)")
    parser.add_argument("--index-items", type=int, default=5000, help="vectors added in the index stage")
    parser.add_argument("--out", default="bench/results/stages.json")
    args = parser.parse_args()
    if args.quick:
        args.images, args.index_items = min(args.images, 100), min(args.index_items, 2000)

    items = random.Random(0).sample(list(clothing_dataset(fallback=False)), args.images)
    info = machine()
    print(f"sample: {len(items)} catalogue photos; machine: {info}", flush=True)

    read_ms, blobs = cpu_ms_per_call(lambda item: item.read(), items)
    naive: dict[str, float] = {"read": read_ms}
    naive["decode"], decoded = cpu_ms_per_call(naive_decode, blobs)
    naive["resize + crop"], crops = cpu_ms_per_call(naive_resize_crop, decoded)
    naive["normalise"], _ = cpu_ms_per_call(naive_normalise, crops)
    ours: dict[str, float] = {"read": read_ms}
    ours["decode"], images = cpu_ms_per_call(lambda data: load_image(data, min_side=RESIZE), blobs)
    ours["resize + crop"], prepared = cpu_ms_per_call(lambda image: resize_and_crop(image, RESIZE, CROP), images)
    ours["normalise"] = 0.0

    batch = np.stack(prepared[:BATCH])
    fp32 = model_ms("efficientnet-lite0", batch, args.reps)
    int8 = model_ms("efficientnet-lite0-int8", batch, args.reps)
    vectors = load_embedder("efficientnet-lite0", threads=1).embed_prepared(np.stack(prepared))
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-stages-") as work:
        index = index_ms(vectors, Path(work), args.index_items)

    pipelines = {
        "naive, fp32": {**naive, "model": fp32, "index": index},
        "lookalike, fp32": {**ours, "model": fp32, "index": index},
        "lookalike, int8": {**ours, "model": int8, "index": index},
    }
    results: dict[str, Any] = {"machine": info, "images": len(items), "cpu_ms_per_image": pipelines}
    results["ceiling_images_per_s_2_cores"] = {name: 2000 / sum(stages.values()) for name, stages in pipelines.items()}
    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")


def print_table(results: dict[str, Any]) -> None:
    pipelines = results["cpu_ms_per_image"]
    names = list(pipelines)
    stages = list(pipelines[names[0]])
    print(f"\nCPU ms per image, one thread ({results['images']} photos)")
    print(f"{'stage':<16}" + "".join(f"{name:>18}" for name in names))
    for stage in stages:
        print(f"{stage:<16}" + "".join(f"{pipelines[name][stage]:>18.2f}" for name in names))
    print(f"{'total':<16}" + "".join(f"{sum(pipelines[name].values()):>18.2f}" for name in names))
    ceiling = results["ceiling_images_per_s_2_cores"]
    print(f"{'2-core ceiling':<16}" + "".join(f"{ceiling[name]:>14.0f} /s " for name in names))


if __name__ == "__main__":
    sys.exit(main())
