"""Search API benchmark over HTTP on the demo catalogue: latency, then sustained load with locust.

1. Starts ``lookalike serve`` on 127.0.0.1 (indexing the clothing catalogue first if needed).
2. Query-by-upload latency: sequential requests, p50/p99 (client-side, including HTTP).
3. Sustained load: locust, headless, at increasing target rates; reports the highest rate held for the
   whole run with zero errors.

    python bench/bench_api.py [--quick] [--index .lookalike/index] [--seconds 30]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import machine

from lookalike.sources.datasets import clothing_dataset

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: str, port: int, threads: int | None = None, **settings: str) -> subprocess.Popen:
    """``lookalike serve`` on 127.0.0.1:``port``, once /health answers; ``settings`` become LOOKALIKE_* variables."""
    env = dict(os.environ, **{f"LOOKALIKE_{key.upper()}": value for key, value in settings.items()})
    if threads is not None:
        env["LOOKALIKE_THREADS"] = str(threads)
    env.pop("LOOKALIKE_RATE_LIMIT", None)  # the benchmarks measure the server, not the limiter
    server = subprocess.Popen(
        [str(BIN / "lookalike"), "serve", "--index", index, "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


def latency(base: str, photos: list[bytes], count: int) -> dict[str, float]:
    timings = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(count + 5):
            started = time.perf_counter()
            response = client.post(
                "/api/search", files={"image": ("q.jpg", photos[i % len(photos)], "image/jpeg")}, data={"k": "10"}
            )
            response.raise_for_status()
            if i >= 5:
                timings.append((time.perf_counter() - started) * 1000)
    return {
        "http_upload_p50_ms": float(np.percentile(timings, 50)),
        "http_upload_p99_ms": float(np.percentile(timings, 99)),
    }


def locust_run(base: str, photo_paths: list[str], rate: float, seconds: int, users: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        env = dict(
            os.environ,
            LOOKALIKE_BENCH_PHOTOS=os.pathsep.join(photo_paths),
            LOOKALIKE_BENCH_RATE_PER_USER=str(rate / users),
        )
        subprocess.run(
            [
                str(BIN / "locust"),
                "-f",
                str(Path(__file__).parent / "locustfile.py"),
                "--headless",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{seconds}s",
                "--host",
                base,
                "--csv",
                f"{out}/run",
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            check=False,
            capture_output=True,
            timeout=seconds + 120,
        )
        with open(f"{out}/run_stats.csv") as handle:
            total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    return {
        "target_rps": rate,
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "achieved_rps": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]),
        "p99_ms": float(total["99%"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default=".lookalike/index")
    parser.add_argument("--quick", action="store_true", help="shorter load runs (10 s)")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per query in the server")
    parser.add_argument("--rates", default="40,60,80,100,120")
    parser.add_argument("--out", default="bench/results/api.json")
    args = parser.parse_args()
    seconds = 10 if args.quick else args.seconds

    if not Path(args.index, "index.sqlite").exists():
        subprocess.run(
            [str(BIN / "lookalike"), "index", "clothing", "--index", args.index, "--no-progress"], check=True
        )
    items = list(clothing_dataset(fallback=False))
    photo_paths = [item.location for item in random.Random(0).sample(items, 200)]
    photos = [Path(path).read_bytes() for path in photo_paths]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(args.index, port, args.threads)
    results: dict[str, Any] = {"machine": machine(), "server_threads": args.threads, "load_seconds": seconds}
    try:
        results |= latency(base, photos, 200)
        runs = []
        for rate in (float(r) for r in args.rates.split(",")):
            run = locust_run(base, photo_paths, rate, seconds, users=max(4, int(rate // 5)))
            runs.append(run)
            print(
                f"target {rate:>5.0f} rps: achieved {run['achieved_rps']:.1f} rps, {run['failures']} failures, "
                f"p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms",
                flush=True,
            )
        results["load_runs"] = runs
        clean = [run for run in runs if run["failures"] == 0 and run["achieved_rps"] >= 0.95 * run["target_rps"]]
        results["sustained_rps_zero_errors"] = max((run["achieved_rps"] for run in clean), default=0.0)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"\nmachine: {results['machine']}")
    print(
        f"query by upload over HTTP: p50 {results['http_upload_p50_ms']:.1f} ms, "
        f"p99 {results['http_upload_p99_ms']:.1f} ms (target p50 <= 20 ms)"
    )
    print(
        f"highest sustained rate with zero errors ({seconds} s runs): "
        f"{results['sustained_rps_zero_errors']:.1f} queries/s (target >= 80)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
