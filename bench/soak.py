"""Soak test: a real ``lookalike serve`` under sustained mixed load; zero errors and steady memory, or exit 1.

1. Builds a small index (400 photos of the clothing catalogue at ../shared/datasets/clothing-dataset, or
   generated photos when it is absent) and starts ``lookalike serve`` on 127.0.0.1 at a free port, with an
   API key so adds are allowed.
2. Runs ``--seconds`` (60) of closed-loop load from ``--clients`` (4) concurrent clients, each picking at
   random: a query by upload (48 %), a query by id (29 %), an add through the write API (19 %), or a broken
   file from the hostile corpus as an upload or an add (5 %), which must get its 400/413. Adds upsert a
   rotating set of 40 ids, so the catalogue size stays fixed and memory has no reason to grow.
3. Samples the server's resident memory (RSS) every second and fits a line to the second half of the run.
   The server saves its index every 10 s (``SAVE_SECONDS``; 30 by default, ``SOAK_SAVE_SECONDS`` here), which
   compacts the replaced vectors away once they are a quarter of the index, so the adds have no reason to
   grow memory either: the whole slope counts. (What the adds would hold without compaction, dim x 4 + 256
   bytes each, is reported beside it for comparison.)

Prints requests, errors, p50/p95/p99 per kind, RSS at start and end and the second-half slope, and the
machine; writes ``bench/results/soak.json``. Exits 1 if any request failed (a non-2xx answer, a transport
error, an upload of a catalogue photo that does not find an identical item first, a hostile file that is
not refused with 400/413, or a catalogue item missing afterwards) or if the
RSS slope exceeds ``--max-rss-slope`` MB per minute.

    python bench/soak.py [--seconds 60] [--clients 4] [--max-rss-slope 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api
from bench_api import free_port
from bench_core import machine

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "datasets" / "clothing-dataset"
API_KEY = "soak-test-key"
CATALOGUE_SIZE = 400
ADD_IDS = 40
KINDS = ("upload", "id", "add", "hostile")
WEIGHTS = (0.5, 0.3, 0.2, 0.05)


def photos(work: Path) -> tuple[Path, list[Path], list[Path], str]:
    """A manifest of CATALOGUE_SIZE photos, the photo files, spare photos for adds, and where they came from."""
    manifest = work / "catalogue.csv"
    if (DATASET / "images.csv").is_file():
        with open(DATASET / "images.csv", newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if (DATASET / "images" / f"{row['image']}.jpg").is_file()]
        rows.sort(key=lambda row: row["image"])
        chosen, spare = rows[:CATALOGUE_SIZE], rows[CATALOGUE_SIZE : CATALOGUE_SIZE + ADD_IDS]
        to_path = lambda row: DATASET / "images" / f"{row['image']}.jpg"  # noqa: E731
        labels = [row["label"] for row in chosen]
        catalogue, extra = [to_path(row) for row in chosen], [to_path(row) for row in spare]
        source = f"clothing data set ({DATASET})"
    else:
        folder = work / "generated"
        folder.mkdir()
        catalogue, extra, labels = [], [], []
        for seed in range(CATALOGUE_SIZE + ADD_IDS):
            path = folder / f"photo-{seed:04d}.jpg"
            path.write_bytes(generated_photo(seed))
            (catalogue if seed < CATALOGUE_SIZE else extra).append(path)
            labels.append(f"colour-{seed % 7}")
        source = "generated photos (the clothing data set is absent)"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "label"])
        for path, label in zip(catalogue, labels, strict=False):
            writer.writerow([path.stem, str(path), label])
    return manifest, catalogue, extra, source


def hostile_inputs() -> list[tuple[str, bytes]]:
    """The refused files of the hostile corpus (tests/hostile/): each must be a clear 4xx under load too."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile import corpus

    return [(Path(case.file).name, case.data()) for case in corpus.image_cases() if not case.accepted]


def generated_photo(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((400, 320, 3), 235, dtype=np.uint8)
    colour = rng.integers(0, 255, size=3, dtype=np.uint8)
    top, left = rng.integers(10, 130), rng.integers(10, 100)
    pixels[top : rng.integers(270, 390), left : rng.integers(215, 310)] = colour
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def build_index(manifest: Path, index: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "lookalike"), "index", str(manifest), "--index", str(index), "--no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def start_server(index: Path, port: int) -> subprocess.Popen:
    # Saves (and compactions) every 10 s rather than the default 30, so a 60 s run sees several cycles of
    # dead vectors piling up and being compacted away, and its second half measures the steady state.
    save_seconds = os.environ.get("SOAK_SAVE_SECONDS", "10")
    return bench_api.start_server(str(index), port, api_key=API_KEY, save_seconds=save_seconds)


class Load:
    """Closed-loop clients: each sends its next request as soon as the last one is answered."""

    def __init__(self, base: str, queries: dict[str, bytes], ids: list[str], adds: list[bytes], seconds: float):
        self.base, self.queries, self.ids, self.adds, self.seconds = base, queries, ids, adds, seconds
        self.hostile = hostile_inputs()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.lock = threading.Lock()
        self.add_counter = 0

    def client(self, seed: int, stop_at: float) -> None:
        rng = random.Random(seed)
        names = list(self.queries)
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while time.monotonic() < stop_at:
                kind = rng.choices(KINDS, WEIGHTS)[0]
                started = time.perf_counter()
                try:
                    problem = self.one(http, kind, rng, names)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - started) * 1000
                with self.lock:
                    self.latencies[kind].append(elapsed)
                    if problem:
                        self.errors[kind].append(problem)

    def one(self, http: httpx.Client, kind: str, rng: random.Random, names: list[str]) -> str | None:
        if kind == "hostile":  # a broken file from the hostile corpus, as an upload or as an add
            name, data = rng.choice(self.hostile)
            if rng.random() < 0.5:
                response = http.post("/api/search", files={"image": (name, data)})
            else:
                response = http.post(
                    "/api/items", files={"image": (name, data)}, data={"id": "soak/bad"}, headers={"X-API-Key": API_KEY}
                )
            ok = response.status_code in (400, 413) and response.json()["error"]["code"] in ("bad_image", "too_large")
            return None if ok else f"hostile {name}: HTTP {response.status_code} {response.text[:200]}"
        if kind == "upload":
            name = rng.choice(names)
            response = http.post("/api/search", files={"image": ("q.jpg", self.queries[name], "image/jpeg")})
            if response.status_code != 200:
                return f"upload: HTTP {response.status_code} {response.text[:200]}"
            best = response.json()["results"][0]
            if best["id"] != name and best["score"] < 0.999:  # a duplicate photo in the catalogue may come first
                return f"upload of {name} found {best['id']} ({best['score']:.3f}) first"
            return None
        if kind == "id":
            response = http.post("/api/search", json={"id": rng.choice(self.ids), "k": 10})
            ok = response.status_code == 200 and len(response.json()["results"]) == 10
            return None if ok else f"id: HTTP {response.status_code} {response.text[:200]}"
        with self.lock:
            self.add_counter += 1
            slot = self.add_counter % len(self.adds)
        response = http.post(
            "/api/items",
            files={"image": ("new.jpg", self.adds[slot], "image/jpeg")},
            data={"id": f"soak/add-{slot:02d}", "metadata": json.dumps({"label": "soak", "n": self.add_counter})},
            headers={"X-API-Key": API_KEY},
        )
        return None if response.status_code == 201 else f"add: HTTP {response.status_code} {response.text[:200]}"


def sample_rss(pid: int, samples: list[tuple[float, float]], stop: threading.Event, started: float) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))
        stop.wait(1.0)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "p99": round(float(np.percentile(array, 99)), 1),
        "max": round(float(array.max()), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-rss-slope", type=float, default=3.0, help="RSS growth allowed, MB/min, second half")
    parser.add_argument("--mix", default="upload=10,id=6,add=4,hostile=1", help="relative weights of the kinds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    global WEIGHTS
    mix = dict(part.split("=") for part in args.mix.split(","))
    WEIGHTS = tuple(float(mix.get(kind, 0)) for kind in KINDS)

    with tempfile.TemporaryDirectory(prefix="lookalike-soak-") as tmp:
        work = Path(tmp)
        manifest, catalogue, extra, source = photos(work)
        build_seconds = build_index(manifest, work / "index")
        queries = {path.stem: path.read_bytes() for path in catalogue[:: max(1, len(catalogue) // 100)]}
        ids = [path.stem for path in catalogue]
        adds = [path.read_bytes() for path in extra]
        port = free_port()
        server = start_server(work / "index", port)
        try:
            load = Load(f"http://127.0.0.1:{port}", queries, ids, adds, args.seconds)
            rss: list[tuple[float, float]] = []
            stop = threading.Event()
            started = time.monotonic()
            sampler = threading.Thread(target=sample_rss, args=(server.pid, rss, stop, started), daemon=True)
            sampler.start()
            load_before = os.getloadavg()
            stop_at = started + args.seconds
            clients = [threading.Thread(target=load.client, args=(i, stop_at)) for i in range(args.clients)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
            elapsed = time.monotonic() - started
            stop.set()
            sampler.join()
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=5).json()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:  # every item kept
                lost = [item for item in ids if http.get(f"/api/items/{item}").status_code != 200]
            expected_items = len(catalogue) + min(load.add_counter, ADD_IDS)
        finally:
            server.terminate()
            server.wait(timeout=30)

    second_half = [(t, mb) for t, mb in rss if t >= args.seconds / 2]
    slope = float(np.polyfit([t for t, _ in second_half], [mb for _, mb in second_half], 1)[0]) * 60
    # What the adds would hold if nothing compacted (each replaced vector with its HNSW links): for
    # comparison only, since the server's periodic saves compact them away.
    vector_bytes = info["dim"] * 4 + (2 * 32 * 4 if info["kind"] == "hnsw" else 0) + 9
    data_slope = len(load.latencies["add"]) / elapsed * 60 * vector_bytes / 2**20
    unexplained = slope
    total = sum(len(v) for v in load.latencies.values())
    errors = sum(len(v) for v in load.errors.values())
    if lost or health["items"] != expected_items:
        load.errors["kept"].append(f"{len(lost)} catalogue items lost; {health['items']} items, not {expected_items}")
        errors += 1
    result: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "catalogue": {"items": len(catalogue), "source": source, "index_build_seconds": round(build_seconds, 1)},
        "requests": {kind: len(load.latencies[kind]) for kind in KINDS} | {"total": total},
        "requests_per_second": round(total / elapsed, 1),
        "errors": {kind: len(load.errors[kind]) for kind in KINDS} | {"total": errors},
        "error_examples": [e for kind in (*KINDS, "kept") for e in load.errors[kind][:3]],
        "latency_ms": {kind: percentiles(load.latencies[kind]) for kind in KINDS},
        "rss_mb": {
            "start": round(rss[0][1], 1),
            "end": round(rss[-1][1], 1),
            "max": round(max(mb for _, mb in rss), 1),
            "second_half_slope_mb_per_min": round(slope, 2),
            "added_vectors_uncompacted_mb_per_min": round(data_slope, 2),
            "growth_slope_mb_per_min": round(unexplained, 2),
            "limit_mb_per_min": args.max_rss_slope,
            "samples": [[round(t, 1), round(mb, 1)] for t, mb in rss],
        },
        "items_after": health["items"],
        "items_expected": expected_items,
        "catalogue_items_lost": len(lost),
        "machine": machine()
        | {
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    steady = unexplained <= args.max_rss_slope
    result["passed"] = errors == 0 and steady
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result, steady)
    return 0 if result["passed"] else 1


def report(result: dict[str, Any], steady: bool) -> None:
    m = result["machine"]
    print(
        f"soak: {result['seconds']} s, {result['clients']} clients, {result['catalogue']['items']} items "
        f"({result['catalogue']['source']})"
    )
    print(f"machine: {m['cpu']}, {m['cores']} cores, loadavg {m['loadavg_before']} -> {m['loadavg_after']}")
    print(f"{'kind':<8}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for kind in KINDS:
        lat = result["latency_ms"][kind]
        print(
            f"{kind:<8}{result['requests'][kind]:>10}{result['errors'][kind]:>8}"
            f"{lat['p50']:>9}{lat['p95']:>9}{lat['p99']:>9}{lat['max']:>9}"
        )
    print(
        f"items after: {result['items_after']} (expected {result['items_expected']}), catalogue items lost: "
        f"{result['catalogue_items_lost']}"
    )
    print(
        f"total {result['requests']['total']} requests ({result['requests_per_second']}/s), "
        f"{result['errors']['total']} errors"
    )
    for example in result["error_examples"]:
        print(f"  error: {example}")
    rss = result["rss_mb"]
    print(
        f"RSS {rss['start']} MB -> {rss['end']} MB (max {rss['max']}); second-half slope "
        f"{rss['second_half_slope_mb_per_min']:+.2f} MB/min (limit {rss['limit_mb_per_min']}; the adds would "
        f"hold {rss['added_vectors_uncompacted_mb_per_min']:.2f} MB/min without compaction): "
        f"{'steady' if steady else 'GROWING'}"
    )
    print("PASS" if result["passed"] else "FAIL")


if __name__ == "__main__":
    sys.exit(main())
