"""The vectors of the one-million benchmark: real embeddings first, then synthetic ones fitted to them.

Real: every Fashion-MNIST image (Debian's ``dataset-fashion-mnist``, 70,000 28x28 grey images, upscaled by the
model's own preprocessing) and every clothing photo plus two augmented copies of each (mirrored; a random
80-95 % crop with brightness/contrast jitter), all embedded with lookalike's default model through its own
``load_image`` / ``Embedder`` code. Embeddings are cached in chunks under ``.lookalike/bench-cache/<model
digest>/``, so a re-run (or the full run after ``--quick``) embeds only what is missing.

Synthetic: a mixture fitted to the real vectors, because random Gaussian vectors have no cluster structure
and are the worst case for every approximate index. ``SyntheticModel`` clusters the real vectors (k-means),
and keeps per cluster its mean, its top principal directions with their spreads, and a per-dimension residual
spread. A sample is ``mean + components @ (spread * z) + residual * z'``, then clipped at zero (the features
are average-pooled ReLU6 activations: never negative; values under a per-cluster, per-dimension threshold
are set to zero so that each dimension is zero as often as in the cluster's real vectors: about half of all
values are), then scaled to a norm drawn from the cluster's real norms. Clusters are drawn in proportion to
their real sizes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from lookalike.embed import Embedder
from lookalike.images import load_image

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CHUNK = 5000
FASHION_LABELS = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot")


@dataclass
class RealVectors:
    """Real embeddings with where each came from and its label (for precision, and to say what was used)."""

    vectors: np.ndarray
    labels: list[str]
    sources: list[str]  # "fashion-mnist", "clothing", "clothing-flip", "clothing-crop"


def cache_dir(embedder: Embedder, root: Path = Path(".lookalike/bench-cache")) -> Path:
    """One folder per model descriptor (name, preprocessing, weights digest): other vectors never mix in."""
    digest = hashlib.sha256(json.dumps(embedder.descriptor(), sort_keys=True).encode()).hexdigest()[:12]
    path = root / f"{embedder.name}-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist() -> tuple[np.ndarray, list[str]]:
    """All 70,000 images (train then test) and their class names."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist")
    images = [_read_idx(FASHION_MNIST_DIR / f"{part}-images-idx3-ubyte.gz") for part in ("train", "t10k")]
    labels = [_read_idx(FASHION_MNIST_DIR / f"{part}-labels-idx1-ubyte.gz") for part in ("train", "t10k")]
    return np.concatenate(images), [FASHION_LABELS[i] for i in np.concatenate(labels)]


def _cached_chunks(
    folder: Path,
    name: str,
    count: int,
    total: int,
    prepare: Callable[[int], np.ndarray],
    embedder: Embedder,
    log: bool,
) -> np.ndarray:
    """Embeddings of items 0..count-1, computed chunk by chunk and cached as ``name-NNNN.npy``."""
    parts = []
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        path = folder / f"{name}-{start // CHUNK:04d}.npy"
        if path.is_file() and np.load(path, mmap_mode="r").shape[0] >= stop - start:
            parts.append(np.load(path)[: stop - start])
            continue
        full_stop = min(start + CHUNK, total)  # a chunk is always cached whole: --quick and full runs share it
        started = time.perf_counter()
        out = []
        for batch_start in range(start, full_stop, 64):
            indices = range(batch_start, min(batch_start + 64, full_stop))
            out.append(embedder.embed_prepared(np.stack([prepare(i) for i in indices])))
        chunk = np.concatenate(out)
        np.save(path, chunk)
        parts.append(chunk[: stop - start])
        if log:
            print(
                f"  embedded {name} {start}..{start + len(chunk)} in {time.perf_counter() - started:.0f} s", flush=True
            )
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)


def real_vectors(embedder: Embedder, fashion: int, clothing: int, log: bool = True) -> RealVectors:
    """``fashion`` Fashion-MNIST embeddings and ``clothing`` clothing photos with two augmented copies each."""
    from lookalike.sources.datasets import clothing_dataset

    folder = cache_dir(embedder)
    images, fashion_labels = fashion_mnist()

    def prepare_fashion(i: int) -> np.ndarray:
        return embedder.prepare(Image.fromarray(images[i]).convert("RGB"))

    fashion = min(fashion, len(images))
    vectors = [_cached_chunks(folder, "fashion-mnist", fashion, len(images), prepare_fashion, embedder, log)]
    labels, sources = list(fashion_labels[:fashion]), ["fashion-mnist"] * fashion

    items = list(clothing_dataset(fallback=False))
    clothing = min(clothing, len(items))
    for variant in ("clothing", "clothing-flip", "clothing-crop"):
        vectors.append(
            _cached_chunks(
                folder, variant, clothing, len(items), _clothing_preparer(embedder, items, variant), embedder, log
            )
        )
        labels += [str(item.metadata.get("label")) for item in items[:clothing]]
        sources += [variant] * clothing
    return RealVectors(np.concatenate(vectors), labels, sources)


def _clothing_preparer(embedder: Embedder, items: list, variant: str) -> Callable[[int], np.ndarray]:
    def prepare(i: int) -> np.ndarray:
        image = load_image(items[i].read(), min_side=embedder.preprocessing.resize)
        if variant == "clothing-flip":
            image = ImageOps.mirror(image)
        elif variant == "clothing-crop":
            rng = np.random.default_rng(i)
            scale = rng.uniform(0.80, 0.95)
            width, height = round(image.width * scale), round(image.height * scale)
            left = int(rng.integers(0, image.width - width + 1))
            top = int(rng.integers(0, image.height - height + 1))
            image = image.crop((left, top, left + width, top + height))
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
        return embedder.prepare(image)

    return prepare


class SyntheticModel:
    """A per-cluster PCA model of real embeddings (see the module docstring)."""

    def __init__(self, real: np.ndarray, clusters: int = 64, components: int = 48, seed: int = 0) -> None:
        import faiss

        real = np.ascontiguousarray(real, dtype=np.float32)
        clusters = max(1, min(clusters, len(real) // 100))
        kmeans = faiss.Kmeans(real.shape[1], clusters, niter=20, seed=seed, verbose=False)
        kmeans.train(real)
        _, assignment = kmeans.index.search(real, 1)
        assignment = assignment[:, 0]
        self.weights, self.means, self.bases, self.spreads, self.residuals, self.norms = [], [], [], [], [], []
        self.thresholds: list[np.ndarray] = []
        inverse_cdf = np.vectorize(NormalDist().inv_cdf)
        for cluster in range(clusters):
            members = real[assignment == cluster]
            if len(members) < 10:
                continue
            mean = members.mean(axis=0)
            centred = members - mean
            _, singular, vt = np.linalg.svd(centred, full_matrices=False)
            r = min(components, len(members) - 1)
            spread = singular[:r] / np.sqrt(len(members) - 1)
            residual = centred - (centred @ vt[:r].T) @ vt[:r]
            self.weights.append(len(members))
            self.means.append(mean)
            self.bases.append(vt[:r].astype(np.float32))
            self.spreads.append(spread.astype(np.float32))
            self.residuals.append(residual.std(axis=0).astype(np.float32))
            self.norms.append(np.linalg.norm(members, axis=1))
            zeros = np.clip((members <= 1e-6).mean(axis=0), 0.001, 0.999)
            self.thresholds.append((mean + members.std(axis=0) * inverse_cdf(zeros)).astype(np.float32))
        self.p = np.asarray(self.weights, dtype=np.float64) / sum(self.weights)

    def sample(self, count: int, seed: int, batch: int = 50_000) -> Iterator[np.ndarray]:
        """``count`` synthetic vectors, in batches (so 900,000 of them never need two copies in memory)."""
        rng = np.random.default_rng(seed)
        for start in range(0, count, batch):
            n = min(batch, count - start)
            which = rng.choice(len(self.p), size=n, p=self.p)
            out = np.empty((n, len(self.means[0])), dtype=np.float32)
            for cluster in np.unique(which):
                rows = np.flatnonzero(which == cluster)
                z = rng.standard_normal((len(rows), len(self.spreads[cluster])), dtype=np.float32)
                noise = rng.standard_normal((len(rows), out.shape[1]), dtype=np.float32)
                values = self.means[cluster] + (z * self.spreads[cluster]) @ self.bases[cluster]
                values += noise * self.residuals[cluster]
                values[values < np.maximum(self.thresholds[cluster], 0)] = 0
                target = rng.choice(self.norms[cluster], size=len(rows))
                values *= (target / np.maximum(np.linalg.norm(values, axis=1), 1e-6))[:, None]
                out[rows] = values
            yield out


def describe(vectors: np.ndarray) -> dict[str, float]:
    """A few statistics to compare real and synthetic vectors side by side."""
    sample = vectors[: min(len(vectors), 20_000)].astype(np.float32)
    unit = sample / np.linalg.norm(sample, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(unit), 2000), rng.integers(0, len(unit), 2000)
    import faiss

    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    nn, _ = index.search(unit[:500], 2)
    return {
        "mean_norm": float(np.linalg.norm(sample, axis=1).mean()),
        "zero_fraction": float((sample <= 1e-6).mean()),
        "mean_cosine_random_pairs": float((unit[a] * unit[b]).sum(axis=1).mean()),
        "mean_cosine_nearest_neighbour": float(nn[:, 1].mean()),
    }


if __name__ == "__main__":  # warm the cache: python bench/scale_vectors.py [FASHION] [CLOTHING]
    import sys

    from lookalike.embed import load_embedder

    model = load_embedder("efficientnet-lite0")
    started = time.perf_counter()
    fashion_count = int(sys.argv[1]) if len(sys.argv) > 1 else 70_000
    got = real_vectors(model, fashion_count, int(sys.argv[2]) if len(sys.argv) > 2 else 10**6)
    print(got.vectors.shape, f"{time.perf_counter() - started:.0f} s")
