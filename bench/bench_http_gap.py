"""Where a query by upload spends its time between the model and the client: in process, through the ASGI
app, and over real HTTP, on the same query images in one run.

The same search (k=10, a multipart upload, catalogue photos as queries) four ways:

* ``core``: ``embed_query`` + ``search_steered`` called directly (decode, embed, search, judge, colour): the
  work the route exists to do, with nothing around it;
* ``service``: ``api.service.run_search`` on an event loop in this process (thread-pool hops, the decode
  slot, the query cache and its on-disk store, the response model);
* ``asgi``: the whole app in this process through ``httpx.ASGITransport`` (multipart, middleware, response
  validation and JSON), no socket; the transport itself looks for trio on every request (0.3 ms, cProfile);
* ``http``: ``lookalike serve`` on 127.0.0.1 and a keep-alive ``httpx.Client`` (on top: the client encoding
  the multipart body, the socket, uvicorn's HTTP parsing and event loop, the client reading the JSON).

``--baseline-src DIR`` adds ``http-before``: a second ``lookalike serve`` running the source tree in DIR
(``git archive <commit> | tar -x -C DIR``), so a change is measured against the code before it in the same
run; ``--baseline-hide httptools,uvloop`` hides those modules from it (uvicorn then uses h11 and asyncio,
as it did before they were dependencies).

The ways take turns, ten photos each (the order rotating from one block to the next), so a neighbour's load
hits them all alike; ``--rounds`` rounds of ``--queries`` photos, each round's p50/p90 kept and the medians
over rounds reported. The gap is a server's HTTP p50 minus the core p50 of the same round (median over
rounds). CPU milliseconds a query (this process and the servers together) are printed too: under a
neighbour's load they move less than wall time.

    python bench/bench_http_gap.py [--index DIR] [--rounds 8] [--queries 50] [--stored 200] [--label after]
        [--baseline-src DIR] [--baseline-hide httptools,uvloop] [--out bench/results/http-gap.json]

The query store (``queries/`` in the index) starts with ``--stored`` of bench_api.py's 200 photos in it, as a
server has it after one bench_api run; a store's size mattered before (every upload scanned its folder).

With no index at ``--index`` (default: ``.lookalike/index``, else a folder under the temp dir) the demo
catalogue is indexed there first (``lookalike index clothing``; ``LOOKALIKE_DATA`` points at it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import BIN, free_port
from bench_core import machine

from lookalike.sources.datasets import clothing_dataset

MODES = ("core", "service", "asgi", "http")
K = 10
BLOCK = 10
"""Photos sent one way before the next way's turn: short enough that a neighbour's load hits every way alike,
long enough that each runs warm (one photo at a time each way made every way pay for cold caches)."""


def cpu_flags() -> list[str]:
    """The CPU's feature flags as lscpu prints them (the SIMD ones decide the model's speed)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = Path("/proc/cpuinfo").read_text()
    for line in out.splitlines():
        if line.lower().startswith("flags"):
            return line.split(":", 1)[1].split()
    return []


def the_machine() -> dict[str, Any]:
    found = machine()
    if "flags" not in found:
        found["flags"] = " ".join(cpu_flags())
    found["simd"] = [flag for flag in str(found["flags"]).split() if flag.startswith(("avx", "amx"))]
    return found


def default_index() -> Path:
    local = Path(".lookalike/index")
    if (local / "index.sqlite").exists():
        return local
    return Path(tempfile.gettempdir()) / "lookalike-http-gap" / "index"


def ensure_index(index: Path) -> None:
    if not (index / "index.sqlite").exists():
        index.parent.mkdir(parents=True, exist_ok=True)
        command = [str(BIN / "lookalike"), "index", "clothing", "--index", str(index), "--no-progress"]
        subprocess.run(command, check=True)


def hiding(modules: list[str], folder: Path) -> Path:
    """A folder of stand-ins that refuse to import, to put first on a server's PYTHONPATH."""
    for name in modules:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} hidden by bench_http_gap')\n")
    return folder


def start_server(index: Path, port: int, pythonpath: list[str] | None = None) -> subprocess.Popen:
    """``lookalike serve`` with its defaults (what a shop runs), once /health answers."""
    env = dict(os.environ)
    env.pop("LOOKALIKE_RATE_LIMIT", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    server = subprocess.Popen(
        [str(BIN / "lookalike"), "serve", "--index", str(index), "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Runner:
    """The same query each way: in process, through the ASGI app, over HTTP to each server."""

    def __init__(self, index: Path, servers: dict[str, subprocess.Popen], ports: dict[str, int]) -> None:
        from lookalike.api import create_app
        from lookalike.api.service import run_search
        from lookalike.catalog import open_catalog
        from lookalike.search import embed_query, search_steered

        self.catalog = open_catalog(index)
        self.app = create_app(self.catalog)
        self.state = self.app.state.lookalike
        self._embed_query, self._search_steered, self._run_search = embed_query, search_steered, run_search
        self.loop = asyncio.new_event_loop()
        self.asgi = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://asgi")
        self.clients = {
            mode: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) for mode, port in ports.items()
        }
        self.pids = [server.pid for server in servers.values()]

    def close(self) -> None:
        self.loop.run_until_complete(self.asgi.aclose())
        self.loop.close()
        for client in self.clients.values():
            client.close()
        self.catalog.close()

    def _cpu(self) -> float:
        return time.process_time() + sum(process_cpu_seconds(pid) for pid in self.pids)

    def core(self, data: bytes) -> None:
        query = self._embed_query(self.catalog, data)
        self._search_steered(self.catalog, query.vector, K, None, False, 0, (), (), (), image=data, shade=query.colour)

    async def _service(self, data: bytes) -> float:
        response = await self._run_search(self.state, "upload", data, K)
        return response.took_ms["total"]

    async def _asgi(self, data: bytes) -> float:
        response = await self.asgi.post(
            "/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"k": str(K)}
        )
        response.raise_for_status()
        return response.json()["took_ms"]["total"]

    def _http(self, mode: str, data: bytes) -> float:
        response = self.clients[mode].post(
            "/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"k": str(K)}
        )
        response.raise_for_status()
        return response.json()["took_ms"]["total"]

    def one(self, mode: str, data: bytes) -> tuple[float, float | None, float]:
        """One query: its client-side milliseconds, the server's ``took_ms.total`` (None in ``core``), and the
        CPU milliseconds of this process and the servers while it ran (clock ticks: exact only summed)."""
        cpu_started = self._cpu()
        started = time.perf_counter()
        took = None
        if mode == "core":
            self.core(data)
        elif mode == "service":
            took = self.loop.run_until_complete(self._service(data))
        elif mode == "asgi":
            took = self.loop.run_until_complete(self._asgi(data))
        else:
            took = self._http(mode, data)
        return (time.perf_counter() - started) * 1000, took, (self._cpu() - cpu_started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--queries", type=int, default=50, help="query photos per round")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--baseline-src", type=Path, default=None, help="source tree of an http-before server")
    parser.add_argument("--baseline-hide", default="", help="modules the http-before server must not import")
    parser.add_argument(
        "--stored", type=int, default=200, help="bench_api's photos in the query store at the start (0: as found)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/http-gap.json"))
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]

    index = args.index or default_index()
    ensure_index(index)
    items = list(clothing_dataset())
    sample = [Path(item.location).read_bytes() for item in random.Random(0).sample(items, 200)]  # bench_api's
    photos = sample[: args.queries]
    if args.stored:  # the store as a server has it after bench_api.py: its photos kept as shared links
        from lookalike.api.query_cache import QueryCache
        from lookalike.api.query_store import SUFFIX

        (index / "queries").mkdir(parents=True, exist_ok=True)
        for data in sample[: args.stored]:
            (index / "queries" / f"{QueryCache.ref_of(data)}{SUFFIX}").write_bytes(data)
    stored = len(list((index / "queries").glob("*.query")))

    ports = {"http": free_port()}
    servers = {"http": start_server(index, ports["http"])}
    scratch = tempfile.TemporaryDirectory()
    if args.baseline_src is not None:
        modes.append("http-before")
        ports["http-before"] = free_port()
        hidden = [name for name in args.baseline_hide.split(",") if name]
        path = [str(hiding(hidden, Path(scratch.name))), str(args.baseline_src.resolve() / "src")]
        servers["http-before"] = start_server(index, ports["http-before"], path)
    http_modes = [mode for mode in modes if mode.startswith("http")]
    runner = Runner(index, servers, {mode: ports[mode] for mode in http_modes})
    items_count = runner.catalog.index.count()
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    try:
        for data in photos[:BLOCK]:  # warm up: the first model runs, connections, lazy imports
            for mode in modes:
                runner.one(mode, data)
        for number in range(args.rounds):
            client: dict[str, list[float]] = {mode: [] for mode in modes}
            took: dict[str, list[float]] = {mode: [] for mode in modes}
            cpu = dict.fromkeys(modes, 0.0)
            for start in range(0, len(photos), BLOCK):  # a block of photos each way, in turn (the order rotates)
                shift = (start // BLOCK) % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    for data in photos[start : start + BLOCK]:
                        elapsed, server_took, cpu_ms = runner.one(mode, data)
                        client[mode].append(elapsed)
                        cpu[mode] += cpu_ms
                        if server_took is not None:
                            took[mode].append(server_took)
            turn: dict[str, Any] = {}
            for mode in modes:
                turn[mode] = {
                    "p50": float(np.percentile(client[mode], 50)),
                    "p90": float(np.percentile(client[mode], 90)),
                    "cpu_ms": cpu[mode] / len(photos),
                }
                if took[mode]:
                    turn[mode]["server_total_p50"] = float(np.percentile(took[mode], 50))
            rounds.append(turn)
            print(
                f"round {number + 1}: " + ", ".join(f"{m} {turn[m]['p50']:.2f}" for m in modes) + " ms p50", flush=True
            )
    finally:
        runner.close()
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
        scratch.cleanup()

    def median(mode: str, key: str) -> float:
        return statistics.median(turn[mode][key] for turn in rounds)

    results: dict[str, Any] = {
        "label": args.label,
        "machine": the_machine(),
        "index": str(index),
        "items": items_count,
        "stored_queries_at_start": stored,
        "queries_per_round": args.queries,
        "rounds": args.rounds,
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "baseline_hide": args.baseline_hide,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "modes": {mode: {key: median(mode, key) for key in rounds[0][mode]} for mode in modes},
        "gaps": {},
        "per_round": rounds,
    }
    if "core" in modes:
        for mode in modes:
            if mode != "core":
                results["gaps"][mode] = {
                    key: statistics.median(turn[mode][key] - turn["core"][key] for turn in rounds)
                    for key in ("p50", "cpu_ms")
                }

    found = results["machine"]
    print(f"\nmachine: {found['cpu']}, {found['cores']} cores, {' '.join(found['simd'])}")
    print(f"index: {items_count} items, {stored} stored queries at the start")
    print(f"load average before / after: {load_before[0]:.2f} / {results['load_average_after'][0]:.2f}")
    print(f"{'mode':<12} {'p50 ms':>8} {'p90 ms':>8} {'CPU ms':>8} {'took_ms p50':>12} {'- core p50':>11}")
    for mode, values in results["modes"].items():
        took = f"{values['server_total_p50']:.2f}" if "server_total_p50" in values else "-"
        gap = f"{results['gaps'][mode]['p50']:+.2f}" if mode in results["gaps"] else "-"
        print(f"{mode:<12} {values['p50']:>8.2f} {values['p90']:>8.2f} {values['cpu_ms']:>8.2f} {took:>12} {gap:>11}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
