"""Core benchmark on the clothing catalogue: throughput, latency and retrieval quality in one run.

Prints a table with the machine it ran on and writes the numbers as JSON. The naive baseline (one thread:
full decode, resize, float normalisation in NumPy, then ONNX Runtime) is measured in the same run, so the
ratio holds on any machine.

    python bench/bench_core.py [--quick] [--out bench/results/core.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.catalog import Catalog, open_or_create_catalog
from lookalike.embed import Embedder, load_embedder
from lookalike.evaluate import recall_against_exact, same_label_precision
from lookalike.ingest import ingest
from lookalike.search import search_image, search_item
from lookalike.sources.datasets import clothing_dataset

NOT_CLASSES = ("Not sure", "Skip", "Other")
TARGETS = {
    "ingest_images_per_s": (">=", 100.0),
    "query_by_image_p50_ms": ("<=", 15.0),
    "precision@10_exact_classes": (">=", 0.64),
    "recall@10_hnsw": (">=", 0.99),
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import faiss
    import onnxruntime

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def model_throughput(embedder: Embedder, batches: int = 10, batch_size: int = 32) -> float:
    """The model step alone, on prepared uint8 batches: the ceiling for ingest."""
    batch = np.random.default_rng(0).integers(0, 255, (batch_size, 224, 224, 3), dtype=np.uint8)
    embedder.embed_prepared(batch)
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed_prepared(batch)
    return batches * batch_size / (time.perf_counter() - started)


def naive_throughput(embedder: Embedder, paths: list[str], batch_size: int = 32) -> float:
    """The baseline: one thread, full-resolution decode, float normalisation in NumPy, then the model."""
    mean = np.asarray([127.0, 127.0, 127.0], dtype=np.float32)
    std = np.asarray([128.0, 128.0, 128.0], dtype=np.float32)
    started = time.perf_counter()
    batch: list[np.ndarray] = []
    for path in paths:
        image = Image.open(io.BytesIO(Path(path).read_bytes())).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        batch.append((pixels - mean) / std)  # the float work a naive pipeline does in Python
        if len(batch) == batch_size:
            embedder.embed_prepared(np.clip(np.stack(batch) * std + mean, 0, 255).astype(np.uint8))
            batch.clear()
    if batch:
        embedder.embed_prepared(np.clip(np.stack(batch) * std + mean, 0, 255).astype(np.uint8))
    return len(paths) / (time.perf_counter() - started)


def query_latencies(catalog: Catalog, paths: list[str], ids: list[str]) -> dict[str, float]:
    for path in paths[:5]:
        search_image(catalog, Path(path).read_bytes(), k=10)
    by_image, by_id = [], []
    for path in paths:
        started = time.perf_counter()
        search_image(catalog, Path(path).read_bytes(), k=10)
        by_image.append((time.perf_counter() - started) * 1000)
    for item_id in ids:
        started = time.perf_counter()
        search_item(catalog, item_id, k=10)
        by_id.append((time.perf_counter() - started) * 1000)
    return {
        "query_by_image_p50_ms": percentile(by_image, 50),
        "query_by_image_p99_ms": percentile(by_image, 99),
        "query_by_id_p50_ms": percentile(by_id, 50),
        "query_by_id_p99_ms": percentile(by_id, 99),
    }


class Subset:
    """The first ``limit`` items of a source (for --quick)."""

    def __init__(self, source: Any, limit: int | None) -> None:
        self.items = list(source)[:limit] if limit else list(source)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 images instead of the whole catalogue")
    parser.add_argument("--out", default="bench/results/core.json")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    source = Subset(clothing_dataset(fallback=False), 1000 if args.quick else None)
    print(f"catalogue: {len(source)} images; machine: {machine()}", flush=True)
    results: dict[str, Any] = {"machine": machine(), "images": len(source), "quick": args.quick}

    embedder = load_embedder("efficientnet-lite0")
    paths = [item.location for item in source]
    sample = random.Random(0).sample(paths, min(300, len(paths)))
    results["model_only_images_per_s"] = model_throughput(embedder)
    results["naive_images_per_s"] = naive_throughput(embedder, sample)

    workdir = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    try:
        catalog = open_or_create_catalog(workdir / "index", "efficientnet-lite0", metric="cosine", kind="hnsw")
        report = ingest(source, catalog.index, catalog.embedder, workers=args.workers, progress=False)
        results["ingest_seconds"] = report.seconds
        results["ingest_images_per_s"] = report.rate
        results["ingest_failed"] = len(report.failed)
        results["ingest_vs_naive"] = report.rate / results["naive_images_per_s"]

        ids = [item.id for item in random.Random(1).sample(source.items, min(300, len(source)))]
        results |= query_latencies(catalog, sample[:200], ids[:200])

        for exact in (True, False):
            name = "exact" if exact else "hnsw"
            precision = same_label_precision(catalog.index, (1, 10), "label", exact=exact)
            results[f"precision@1_{name}_all_labels"] = precision.precision[1]
            results[f"precision@10_{name}_all_labels"] = precision.precision[10]
            results["precision_queries_all_labels"] = precision.queries
        # "Not sure", "Skip" and "Other" name no visual class, so as queries they measure nothing; the
        # precision over real classes leaves them out as queries (they stay in the catalogue as distractors).
        classes = same_label_precision(catalog.index, (1, 10), "label", exact=True, ignore_labels=NOT_CLASSES)
        results["precision@1_exact_classes"] = classes.precision[1]
        results["precision@10_exact_classes"] = classes.precision[10]
        results["precision_queries_classes"] = classes.queries
        results["recall@10_hnsw"] = recall_against_exact(catalog.index, 10, queries=1000)
        catalog.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'measure':<44}{'value':>12}  target")
    for key, value in results.items():
        if key == "machine" or isinstance(value, dict | bool):
            continue
        target = TARGETS.get(key)
        mark = ""
        if target:
            op, bound = target
            ok = value >= bound if op == ">=" else value <= bound
            mark = f"{op} {bound}  {'ok' if ok else 'MISSED'}"
        shown = f"{value:.4f}" if isinstance(value, float) and value < 10 else str(round(value, 1))
        print(f"{key:<44}{shown:>12}  {mark}")


if __name__ == "__main__":
    sys.exit(main())
