"""Resource attacks on a real ``lookalike serve`` process: the builders, a hostile peer, and a runner that measures.

The hardening goal these attacks check: *a memory-bounded server*. None of the bombs below may raise the
server's peak resident memory by more than 300 MB, and ``/health`` must answer within 1 s throughout each one.
Unlike ``test_hostile.py`` (the app in-process through a TestClient), everything here runs against a separate
``lookalike serve`` process over a small generated index, so memory is the server's own and measurable:

* **peak RSS**: the kernel's high-water mark ``VmHWM`` is reset by writing ``5`` to ``/proc/PID/clear_refs``
  just before an attack and read from ``/proc/PID/status`` after it (and after the server went quiet again,
  so work that outlives the clients counts too). Where that reset does not work (not Linux, not allowed), a
  thread samples ``VmRSS`` every 10 ms instead (:class:`MemoryMeter` says which it used).
* **/health latency**: a thread polls ``GET /health`` every 100 ms (5 s timeout) for the whole attack and
  records the slowest answer; a probe that fails or times out counts as its timeout.

The attacks (:data:`ATTACKS`), each bounded in time and concurrent where the issue says:

1. ``brotli_bomb`` / ``gzip_bomb``: a query URL whose server (:class:`HostilePeer`, on 127.0.0.2) answers
   ``Content-Type: image/jpeg`` with ``Content-Encoding: br`` (gzip) and a few KB (MB) that expand to 1 GiB
   (4 GiB) of zeros; 4 concurrent ``POST /api/search {"url": ...}``.
2. ``filter_bomb``: a base64 search with a filter of 32 fields x 930 values, then 64 x 1000; 2 concurrent each.
3. ``scan_bomb``: a flat 6000x6000 progressive JPEG with 3000 repeated AC refinement scans (387 KB, the
   hostile corpus's ``progressive_scan_bomb``), decoded by libjpeg one whole-image pass per scan; 2 at once.
4. ``float_tiff``: an 8000x5000 32-bit float TIFF, deflate-compressed to ~230 KB (the corpus's
   ``float_tiff_bomb``: 160 MB of samples, and the conversion to 8 bits made several copies); 4 at once.
5. ``slow_urls``: 45 concurrent URL queries to a peer that sends the headers, then one byte every 2 s, and
   gives up after 20 s.
6. ``deep_metadata``: an add (with the API key) whose metadata is nested 300 deep, then a GET of the item and
   a search that returns it: none may be a 5xx.

After each attack the runner checks that the server still answers a good query correctly (an uploaded
catalogue photo finds itself first). :func:`verdict` lists what an :class:`AttackResult` violates.
``tests/test_attacks.py`` asserts on it; ``bench/bench_attacks.py`` prints and saves every figure.

Server processes are started in their own process group (killed as a group at the end), optionally under an
address-space limit (``prlimit --as``) so that a bomb on unfixed code ends in a MemoryError, not in the
kernel's OOM killer. ``LOOKALIKE_ATTACKS_SRC`` (or ``src=``) runs the server from another source tree, e.g.
``git archive HEAD src`` unpacked somewhere, to measure the code before a change.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from hostile import corpus

MB = 2**20
GIB = 2**30
API_KEY = "attack-test-key"
PEER_HOST = "127.0.0.2"  # the only private address query URLs may reach (LOOKALIKE_URL_ALLOW)
SERVER_HOST = "127.0.0.1"
CATALOGUE_SIZE = 20

# The goal ("Done when" of the hardening issue).
MAX_RISE_MB = 300.0
MAX_HEALTH_MS = 1000.0

HEALTH_EVERY = 0.1
HEALTH_TIMEOUT = 5.0
CLIENT_TIMEOUT = 20.0  # an attack's requests give up after this (the server may go on working: see drain)
SLOW_PEER_SECONDS = 20.0
SLOW_PEER_EVERY = 2.0
DRAIN_MAX = 30.0  # how long the runner waits for the server to go quiet after an attack (then restarts it)


# ------------------------------------------------------------------------------------------------ builders
def photo(seed: int) -> bytes:
    """A synthetic product photo (320x400 JPEG): a striped coloured block on a light background, per seed."""
    return corpus.encode(corpus.photo(seed, (320, 400)), "JPEG", quality=90)


def catalogue_id(seed: int) -> str:
    """The id ``lookalike index FOLDER`` gives the photo of ``seed`` (its path in the folder)."""
    return f"photo-{seed:02d}.jpg"


@functools.cache
def brotli_bomb(expanded: int = 1 * GIB) -> bytes:
    """A brotli stream (a few KB) of ``expanded`` zero bytes."""
    return corpus.brotli_of_zeros(expanded, quality=5, chunk=64 * MB)


@functools.cache
def gzip_bomb(expanded: int = 4 * GIB) -> bytes:
    """A gzip member (~1 MB per GiB) of ``expanded`` zero bytes."""
    return corpus.gzip_of_zeros(expanded, chunk=64 * MB)


def filter_bomb(fields: int, values: int) -> dict[str, list[str]]:
    """``{"f0": ["v0", ..., "v<values-1>"], ...}``: within the per-request limits (64 fields, 1000 values)."""
    return {f"f{i}": [f"v{j}" for j in range(values)] for i in range(fields)}


def deep_metadata(depth: int = 300) -> dict[str, Any]:
    """``{"a": {"a": ... {"a": "leaf"}}}`` with ``depth`` levels of objects."""
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------------------------------------ the hostile peer
class HostilePeer:
    """An HTTP server on 127.0.0.2 serving the URL attacks; every response ends by itself.

    ``/br.jpg`` and ``/gz.jpg``: the compression bombs with ``Content-Type: image/jpeg`` whatever the client
    asked for (the server sends ``Accept-Encoding: identity``). ``/slow.jpg``: the headers (an honest-looking
    ``Content-Length``), then one byte every ``SLOW_PEER_EVERY`` seconds for ``SLOW_PEER_SECONDS``, then the
    connection is closed with the body unfinished.
    """

    def __init__(self, host: str = PEER_HOST) -> None:
        self.stop_event = threading.Event()
        self.bodies = {"/br.jpg": ("br", brotli_bomb()), "/gz.jpg": ("gzip", gzip_bomb())}
        self.slow_served = 0
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path in peer.bodies:
                        encoding, body = peer.bodies[path]
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Content-Encoding", encoding)
                        self.send_header("Content-Length", str(len(body)))
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(body)
                    elif path == "/slow.jpg":
                        peer.slow_served += 1
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Content-Length", "100000")
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.flush()
                        ends = time.monotonic() + SLOW_PEER_SECONDS
                        data = iter(photo(0))
                        while time.monotonic() < ends and not peer.stop_event.wait(SLOW_PEER_EVERY):
                            self.wfile.write(bytes([next(data)]))
                            self.wfile.flush()
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # 45 concurrent connects must not overflow the listen backlog

        self.httpd = Server((host, 0), Handler)
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}.jpg"

    def __enter__(self) -> HostilePeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------------------------ the real server
def free_port(host: str = SERVER_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def build_index(folder: Path, index: Path, cache: Path, src: Path | None = None) -> None:
    """``CATALOGUE_SIZE`` generated photos in ``folder``, indexed with ``lookalike index`` into ``index``."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(CATALOGUE_SIZE):
        (folder / catalogue_id(seed)).write_bytes(photo(seed))
    subprocess.run(
        [_lookalike(), "index", str(folder), "--index", str(index), "--no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=_server_env(cache, src),
        timeout=300,
    )


def _lookalike() -> str:
    found = Path(sys.executable).parent / "lookalike"
    return str(found) if found.exists() else (shutil.which("lookalike") or "lookalike")


def _server_env(cache: Path, src: Path | None, **settings: str) -> dict[str, str]:
    """This environment without any LOOKALIKE_* setting (the server runs on defaults), plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOOKALIKE_")}
    env["LOOKALIKE_CACHE"] = str(cache)
    env |= {f"LOOKALIKE_{key.upper()}": value for key, value in settings.items()}
    src = src or (Path(os.environ["LOOKALIKE_ATTACKS_SRC"]) if os.environ.get("LOOKALIKE_ATTACKS_SRC") else None)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _proc_status(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of /proc/PID/status, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm"):
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                values[name] = int(parts[0]) * 1024
    return values


class MemoryMeter:
    """Peak resident memory of a process between :meth:`reset` and :meth:`peak`.

    ``method`` is ``"VmHWM"`` when writing 5 to /proc/PID/clear_refs resets the kernel's high-water mark
    (checked on creation), else ``"sampled"``: a thread reads VmRSS every 10 ms and keeps the largest.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.method = "VmHWM" if self._hwm_resets() else "sampled"
        self._stop = threading.Event()
        self._max = 0
        self._thread: threading.Thread | None = None

    def _hwm_resets(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            status = _proc_status(self.pid)
        except OSError:
            return False
        # Right after a reset the mark is the current RSS (it may have grown a little in between).
        return status["VmHWM"] <= status["VmRSS"] + 16 * MB

    def rss(self) -> int:
        return _proc_status(self.pid)["VmRSS"]

    def reset(self) -> None:
        if self.method == "VmHWM":
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._stop = threading.Event()
        self._max = self.rss()
        self._thread = threading.Thread(target=self._sample, args=(self._stop,), daemon=True)
        self._thread.start()

    def _sample(self, stop: threading.Event) -> None:
        while not stop.wait(0.01):
            with contextlib.suppress(OSError, KeyError):
                self._max = max(self._max, self.rss())

    def peak(self) -> int:
        if self.method == "VmHWM":
            return _proc_status(self.pid)["VmHWM"]
        return self._max

    def close(self) -> None:
        self._stop.set()


class RealServer:
    """``lookalike serve --index INDEX --host 127.0.0.1 --port P`` in its own process group.

    Settings are the defaults except ``LOOKALIKE_URL_ALLOW`` (the hostile peer's address) and
    ``LOOKALIKE_API_KEY`` (for the write attack). ``as_limit`` caps the address space (``prlimit --as``):
    a bomb on unfixed code then ends in a MemoryError (a 500) rather than in swapping or the OOM killer.
    """

    def __init__(
        self, index: Path, cache: Path, *, src: Path | None = None, as_limit: int | None = None, log: Path | None = None
    ) -> None:
        self.index, self.cache, self.src, self.as_limit, self.log_path = index, cache, src, as_limit, log
        self.process: subprocess.Popen | None = None
        self.meter: MemoryMeter | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://{SERVER_HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> RealServer:
        self.port = free_port()
        env = _server_env(self.cache, self.src, url_allow=json.dumps([PEER_HOST]), api_key=API_KEY)
        command = [_lookalike(), "serve", "--index", str(self.index), "--host", SERVER_HOST, "--port", str(self.port)]
        command += ["--log-level", "warning"]
        if self.as_limit and shutil.which("prlimit"):
            command = ["prlimit", f"--as={self.as_limit}", "--", *command]  # prlimit execs: same pid
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT if self.log_path else None,
                start_new_session=True,  # its own process group, killed as one
            )
        finally:
            if self.log_path:
                log.close()
        self.starts += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lookalike serve exited with {self.process.returncode} (see {self.log_path})")
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    self.meter = MemoryMeter(self.pid)
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("lookalike serve did not answer /health within 120 s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        """Start again if an attack killed the server (so the next attack still has one)."""
        if not self.alive():
            self.restart()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def wait_idle(self, max_seconds: float = DRAIN_MAX, window: float = 0.5, busy: float = 0.1) -> tuple[float, bool]:
        """Seconds until the server used under ``busy`` of a core over ``window``, and whether it did so
        within ``max_seconds`` (a dead server is idle)."""
        started = time.monotonic()
        last = self.cpu_seconds() if self.alive() else 0.0
        while time.monotonic() - started < max_seconds:
            time.sleep(window)
            if not self.alive():
                return time.monotonic() - started, True
            now = self.cpu_seconds()
            if now - last < busy * window:
                return time.monotonic() - started, True
            last = now
        return time.monotonic() - started, False

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.meter is not None:
            self.meter.close()
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> RealServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Context:
    """What an attack needs: the server and the hostile peer."""

    server: RealServer
    peer: HostilePeer

    @property
    def base(self) -> str:
        return self.server.base


@contextlib.contextmanager
def environment(
    workdir: Path, cache: Path, *, src: Path | None = None, as_limit: int | None = None
) -> Iterator[Context]:
    """Index, hostile peer and server for a run of attacks; everything is stopped on the way out."""
    index = workdir / "index"
    if not (index / "index.sqlite").exists():
        build_index(workdir / "catalogue", index, cache, src)
    with HostilePeer() as peer:
        server = RealServer(index, cache, src=src, as_limit=as_limit, log=workdir / "server.log")
        try:
            server.start()
            yield Context(server, peer)
        finally:
            server.stop()


# ------------------------------------------------------------------------------------------------ the runner
class HealthProbe:
    """``GET /health`` every 100 ms (5 s timeout) in a thread; the slowest answer and the failures."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=HEALTH_TIMEOUT) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = http.get("/health")
                    if response.status_code != 200:
                        self.failures.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                elapsed = time.perf_counter() - started
                self.latencies.append(elapsed * 1000)
                self._stop.wait(max(0.0, HEALTH_EVERY - elapsed))

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_ms(self) -> float:
        return max(self.latencies, default=float("nan"))


@dataclass
class Outcome:
    """One attacking request: ``label`` is the HTTP status, ``timeout`` or ``error:<exception>``."""

    label: str
    seconds: float
    detail: str = ""
    busy: bool = False  # a 503 with Retry-After: the server refusing work it has no room for, on purpose


@dataclass
class AttackResult:
    name: str
    description: str
    requests: int
    statuses: dict[str, int]
    busy_refusals: int  # of the 503s, those with Retry-After (deliberate "busy", not a crash)
    baseline_mb: float
    peak_mb: float
    rise_mb: float
    end_mb: float
    health_max_ms: float
    health_p50_ms: float
    health_probes: int
    health_failures: int
    wall_s: float
    drain_s: float
    server_cpu_s: float
    slowest_request_s: float
    good_query_after: bool
    server_died: bool
    memory_method: str
    details: dict[str, str] = field(default_factory=dict)  # one answer body per non-2xx status
    checks: dict[str, Any] = field(default_factory=dict)  # attack-specific findings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _request(method: str, base: str, path: str, timeout: float, **kwargs: Any) -> Outcome:
    started = time.perf_counter()
    try:
        with httpx.Client(base_url=base, timeout=timeout) as http:
            response = http.request(method, path, **kwargs)
        busy = response.status_code == 503 and "retry-after" in response.headers
        return Outcome(str(response.status_code), time.perf_counter() - started, response.text[:300], busy)
    except httpx.TimeoutException:
        return Outcome("timeout", time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return Outcome(f"error:{type(exc).__name__}", time.perf_counter() - started, str(exc)[:300])


def concurrently(count: int, send: Callable[[int], Outcome]) -> list[Outcome]:
    """``send(0)`` ... ``send(count - 1)`` at once, each in its own thread."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def good_query(base: str, seed: int = 3) -> tuple[bool, str]:
    """An uploaded catalogue photo must find itself first (score ~1)."""
    try:
        response = httpx.post(
            f"{base}/api/search", files={"image": ("q.jpg", photo(seed), "image/jpeg")}, data={"k": "5"}, timeout=15
        )
    except httpx.HTTPError as exc:
        return False, f"good query: {type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return False, f"good query: HTTP {response.status_code} {response.text[:300]}"
    results = response.json()["results"]
    if not results:
        return False, "good query: no results"
    best = results[0]
    ok = best["id"] == catalogue_id(seed) and best["score"] > 0.999
    return ok, f"good query found {best['id']} ({best['score']:.4f})"


# --- the attacks: each returns its outcomes (and may add findings to ``checks``)
def attack_brotli_bomb(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    url = ctx.peer.url("br")
    checks["body_bytes"] = len(brotli_bomb())
    checks["expands_to_bytes"] = 1 * GIB
    return concurrently(4, lambda _: _request("POST", ctx.base, "/api/search", CLIENT_TIMEOUT, json={"url": url}))


def attack_gzip_bomb(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    url = ctx.peer.url("gz")
    checks["body_bytes"] = len(gzip_bomb())
    checks["expands_to_bytes"] = 4 * GIB
    return concurrently(4, lambda _: _request("POST", ctx.base, "/api/search", CLIENT_TIMEOUT, json={"url": url}))


def attack_filter_bomb(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    """Both shapes at once, two requests each (so the attack is bounded by one client timeout). No item has
    fields f0.. so these are refused by name before the index is asked; what the largest filter on real
    fields costs an index is measured by tests/test_filter_cost.py."""
    image = b64(photo(5))
    bodies = []
    for fields, values in ((32, 930), (64, 1000)):
        body = {"image_base64": image, "k": 10, "filter": filter_bomb(fields, values)}
        checks[f"body_bytes_{fields}x{values}"] = len(json.dumps(body))
        bodies += [body, body]
    return concurrently(
        len(bodies), lambda i: _request("POST", ctx.base, "/api/search", CLIENT_TIMEOUT, json=bodies[i])
    )


def scan_bomb_bytes() -> bytes:
    return corpus.progressive_scan_bomb()


def attack_scan_bomb(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    data = scan_bomb_bytes()
    checks["file_bytes"] = len(data)
    checks["scans"] = data.count(b"\xff\xda")
    send = lambda _: _request(  # noqa: E731
        "POST", ctx.base, "/api/search", CLIENT_TIMEOUT, files={"image": ("scans.jpg", data, "image/jpeg")}
    )
    return concurrently(2, send)


def float_tiff_bytes() -> bytes:
    return corpus.float_tiff_bomb()


def attack_float_tiff(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    data = float_tiff_bytes()
    checks["file_bytes"] = len(data)
    send = lambda _: _request(  # noqa: E731
        "POST", ctx.base, "/api/search", CLIENT_TIMEOUT, files={"image": ("float.tif", data, "image/tiff")}
    )
    return concurrently(4, send)


def attack_slow_urls(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    url = ctx.peer.url("slow")
    timeout = SLOW_PEER_SECONDS + 15  # the peer gives up after 20 s: a server waiting it out still answers
    before = ctx.peer.slow_served
    outcomes = concurrently(45, lambda _: _request("POST", ctx.base, "/api/search", timeout, json={"url": url}))
    checks["peer_connections"] = ctx.peer.slow_served - before
    return outcomes


def attack_deep_metadata(ctx: Context, checks: dict[str, Any]) -> list[Outcome]:
    """An add with metadata nested 300 deep (refusing it with a 4xx is fine), then reading it back two ways."""
    item_id = f"attack/deep-{ctx.server.starts}-{time.monotonic_ns()}"
    image = photo(100)  # not in the catalogue: a search with it finds the added item first
    metadata = json.dumps(deep_metadata(300))
    checks["metadata_bytes"] = len(metadata)
    add = _request(
        "POST",
        ctx.base,
        "/api/items",
        CLIENT_TIMEOUT,
        files={"image": ("deep.jpg", image, "image/jpeg")},
        data={"id": item_id, "metadata": metadata},
        headers={"X-API-Key": API_KEY},
    )
    checks["add"] = add.label
    get = _request("GET", ctx.base, f"/api/items/{item_id}", CLIENT_TIMEOUT)
    checks["get"] = get.label
    search = _request(
        "POST",
        ctx.base,
        "/api/search",
        CLIENT_TIMEOUT,
        files={"image": ("q.jpg", image, "image/jpeg")},
        data={"k": "3"},
    )
    checks["search"] = search.label
    by_id = _request("POST", ctx.base, "/api/search", CLIENT_TIMEOUT, json={"id": catalogue_id(0), "k": 100})
    checks["search_all"] = by_id.label
    if add.label == "201":
        checks["get_expected"] = "200"
        if search.label == "200":
            checks["search_found_item"] = _first_id(ctx.base, image) == item_id
    elif add.label.startswith("4"):
        checks["get_expected"] = "404"  # refused: nothing was stored
    return [add, get, search, by_id]


def _first_id(base: str, image: bytes) -> str | None:
    response = httpx.post(f"{base}/api/search", files={"image": ("q.jpg", image, "image/jpeg")}, timeout=30)
    return response.json()["results"][0]["id"] if response.status_code == 200 else None


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    run: Callable[[Context, dict[str, Any]], list[Outcome]]


ATTACKS = {
    attack.name: attack
    for attack in (
        Attack("brotli_bomb", "URL query, Content-Encoding br, ~1 KB -> 1 GiB; 4 concurrent", attack_brotli_bomb),
        Attack("gzip_bomb", "URL query, Content-Encoding gzip, ~4 MB -> 4 GiB; 4 concurrent", attack_gzip_bomb),
        Attack("filter_bomb", "base64 search, filter 32 x 930 then 64 x 1000 values; 2 concurrent", attack_filter_bomb),
        Attack("scan_bomb", "6000x6000 progressive JPEG, 3000 AC scans; 2 concurrent uploads", attack_scan_bomb),
        Attack("float_tiff", "8000x5000 float32 TIFF (deflate, ~230 KB); 4 concurrent uploads", attack_float_tiff),
        Attack("slow_urls", "45 concurrent URL queries to a peer dripping 1 byte / 2 s for 20 s", attack_slow_urls),
        Attack("deep_metadata", "add with metadata nested 300 deep, GET it, search for it", attack_deep_metadata),
    )
}


def run_attack(ctx: Context, name: str) -> AttackResult:
    """One attack, measured: wait for quiet, reset the peak, attack with /health probed, wait for quiet again."""
    attack = ATTACKS[name]
    server = ctx.server
    server.ensure_running()
    if not server.wait_idle()[1]:  # still busy with an earlier attack: measure this one on a fresh server
        server.restart()
        server.wait_idle()
    assert server.meter is not None
    baseline = server.meter.rss()
    server.meter.reset()
    cpu_before = server.cpu_seconds()
    checks: dict[str, Any] = {}
    with HealthProbe(ctx.base) as probe:
        started = time.monotonic()
        outcomes = attack.run(ctx, checks)
        wall = time.monotonic() - started
        drain, quiet = server.wait_idle()  # work the clients gave up on counts too; /health is probed through it
    died = not server.alive()
    if died:
        peak, end, cpu = float("nan"), float("nan"), float("nan")
    else:
        peak, end, cpu = server.meter.peak(), server.meter.rss(), server.cpu_seconds() - cpu_before
    good, good_detail = (False, "server died") if died else good_query(ctx.base)
    checks["good_query"] = good_detail
    checks["quiet_after_drain"] = quiet  # False: still busy DRAIN_MAX s after the attack (restarted before the next)
    statuses = Counter(outcome.label for outcome in outcomes)
    details = {}
    for outcome in outcomes:
        if not outcome.label.startswith("2") and outcome.label not in details:
            details[outcome.label] = outcome.detail
    latencies = probe.latencies or [float("nan")]
    return AttackResult(
        name=name,
        description=attack.description,
        requests=len(outcomes),
        statuses=dict(sorted(statuses.items())),
        busy_refusals=sum(outcome.busy for outcome in outcomes),
        baseline_mb=round(baseline / MB, 1),
        peak_mb=round(peak / MB, 1),
        rise_mb=round((peak - baseline) / MB, 1),
        end_mb=round(end / MB, 1),
        health_max_ms=round(max(latencies), 1),
        health_p50_ms=round(float(np.median(latencies)), 1),
        health_probes=len(probe.latencies),
        health_failures=len(probe.failures),
        wall_s=round(wall, 2),
        drain_s=round(drain, 2),
        server_cpu_s=round(cpu, 2),
        slowest_request_s=round(max(outcome.seconds for outcome in outcomes), 2),
        good_query_after=good,
        server_died=died,
        memory_method=server.meter.method,
        details=details,
        checks=checks,
    )


def verdict(result: AttackResult) -> list[str]:
    """What ``result`` violates of the goal: peak rise <= 300 MB, /health < 1 s, no 5xx (or unanswered request),
    the server alive and still answering a good query correctly; plus the deep-metadata reads.

    A 503 ``busy`` with Retry-After is the server shedding load by design (fetch and decode slots full: "URL
    fetches wait or are refused with 503"), not a failure; any other 5xx is.
    """
    problems = []
    if result.server_died:
        problems.append("the server died")
    if not result.rise_mb <= MAX_RISE_MB:
        problems.append(f"peak RSS rose {result.rise_mb} MB (> {MAX_RISE_MB:g})")
    if not result.health_max_ms < MAX_HEALTH_MS or result.health_failures:
        problems.append(f"/health took up to {result.health_max_ms} ms ({result.health_failures} failed probes)")
    errors = {label: n for label, n in result.statuses.items() if label.startswith("5")}
    if result.busy_refusals:
        errors["503"] = errors.get("503", 0) - result.busy_refusals
        errors = {label: n for label, n in errors.items() if n > 0}
    if errors:
        problems.append(f"5xx answers {errors}: {[result.details[label] for label in errors]}")
    unanswered = {label: n for label, n in result.statuses.items() if not label[:1].isdigit()}
    if unanswered:
        problems.append(f"requests not answered {unanswered}")
    if not result.good_query_after:
        problems.append(f"no good answer to a good query afterwards ({result.checks.get('good_query')})")
    if result.name == "deep_metadata":
        checks = result.checks
        if checks.get("add") not in ("201",) and not str(checks.get("add", "")).startswith("4"):
            problems.append(f"the add answered {checks.get('add')}")
        expected = checks.get("get_expected")
        if (expected and checks.get("get") != expected) or str(checks.get("get")).startswith("5"):
            problems.append(f"GET of the item answered {checks.get('get')}, expected {expected or 'no 5xx'}")
        if checks.get("search") != "200" or checks.get("search_all") != "200":
            problems.append(f"searches answered {checks.get('search')} / {checks.get('search_all')}")
        elif checks.get("search_found_item") is False:
            problems.append("a search with the added item's photo did not find it first")
    return problems


__all__ = [
    "ATTACKS",
    "AttackResult",
    "Context",
    "HostilePeer",
    "RealServer",
    "environment",
    "run_attack",
    "verdict",
]
