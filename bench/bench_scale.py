"""One million vectors in the embedded index: build time, memory, latency and recall per index setting.

    python bench/bench_scale.py [--quick] [--out bench/results/scale.json] [--workdir DIR] [--plots docs/img]

1. Vectors (see ``scale_vectors.py``): every real embedding we can make (Fashion-MNIST, the clothing photos and
   two augmented copies of each, through lookalike's own decoder and model; cached), 1,000 of them held out
   as queries, the rest topped up to 1,000,000 (``--quick``: 100,000) with synthetic vectors from a
   per-cluster PCA model fitted to the real ones.
2. Ground truth: exact float brute force (FAISS ``knn`` over all unit vectors) for every query.
3. The SQLite store is written once (an exact index: ``EmbeddedIndex.add`` in batches); every other setting
   is built from it with ``EmbeddedIndex.rebuild`` (read the float vectors from SQLite, train, add, write
   the checkpoint), so "build" = store + structure.
4. Each setting is measured in a fresh process that opens the index (memory-mapped, as ``lookalike serve``
   does) and runs the queries one at a time through ``EmbeddedIndex.search(k=10)``; its RSS and PSS come
   from ``/proc/PID/smaps_rollup`` while it is still alive. One setting is also opened by two processes at
   once, to show that they share one copy (PSS).
5. PCA: same-label precision@10 on the clothing catalogue (real labels, leave-one-out) with and without PCA.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import machine
from scale_vectors import SyntheticModel, describe, real_vectors

from lookalike.index.base import IndexSettings, Item
from lookalike.index.embedded import FAISS_NAME, SQLITE_NAME, EmbeddedIndex, structure_of

GOALS = {"build_s": ("<=", 900.0), "p50_ms": ("<=", 3.0), "recall@10": (">=", 0.95), "rss_mib": ("<=", 2048.0)}
QUERIES = 1000
EXACT_QUERIES = 50
"""Exact float brute force reads every vector per query (~0.5 s at 1M on 2 cores): 50 queries time it."""


def settings_list(dim: int, quick: bool) -> dict[str, dict[str, Any]]:
    """The settings measured, by name. HNSW builds are the slow part at 1M (0.5-1 ms a vector on 2 cores at
    efConstruction 200), so the bench builds 1280-d HNSW with M=16, efConstruction=64 to fit its time budget."""
    lists = 256 if quick else 1024
    hnsw = dict(kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64)
    return {
        "exact float": dict(kind="exact"),
        "HNSW float": dict(hnsw),
        "HNSW sq8": dict(hnsw, encoding="sq8", rerank=2),
        "HNSW sq8, rerank 0": dict(hnsw, encoding="sq8", rerank=0),
        "IVF sq8": dict(kind="ivf", encoding="sq8", ivf_lists=lists, nprobe=16, rerank=2),
        "IVF pq64": dict(kind="ivf", encoding="pq", pq_m=64, ivf_lists=lists, nprobe=16, rerank=10),
        # The graph is built over 256-d 8-bit codes (5x cheaper distances than 1280-d), so it can afford
        # M=24, efConstruction=80 in less time; the re-scoring store is 8-bit too (1.3 GB instead of 5.1 GB), so
        # everything a query touches fits in 2 GB, and the final k are re-scored with the floats in SQLite.
        "PCA256 HNSW sq8, sq8 store": dict(
            kind="hnsw",
            hnsw_m=24,
            ef_construction=80,
            ef_search=96,
            reduce_dim=256,
            encoding="sq8",
            rerank=4,
            rerank_encoding="sq8",
        ),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of a live process: PSS splits shared pages (a mapped index) among its users."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("Rss:", "Pss:", "Pss_File:", "Pss_Anon:", "Shared_Clean:"):
            values[parts[0].rstrip(":").lower() + "_mib"] = int(parts[1]) / 1024
    return values


def du(path: Path) -> dict[str, float]:
    sizes = {name: (path / name).stat().st_size / 2**20 for name in (SQLITE_NAME, FAISS_NAME) if (path / name).exists()}
    wal = path / (SQLITE_NAME + "-wal")
    if wal.exists():
        sizes[SQLITE_NAME] += wal.stat().st_size / 2**20
    return {"sqlite_mib": round(sizes.get(SQLITE_NAME, 0), 1), "faiss_mib": round(sizes.get(FAISS_NAME, 0), 1)}


# ------------------------------------------------------------------------------------------- measuring process
SWEEP = {"hnsw": ("ef_search", (32, 64, 128, 256)), "ivf": ("nprobe", (8, 16, 32, 64))}
"""Query-time parameters tried on every built structure (no rebuild needed): the recall/latency trade-off."""


def measure_child(index_dir: str, queries_path: str, count: int) -> None:
    """Run in a fresh process: open, query, print JSON, then wait (so the parent can read our memory).

    After 100 warm-up queries, the queries run once per value of the structure's query-time parameter
    (efSearch or nprobe, ascending); the index's own value is the headline figure.
    """
    from dataclasses import replace

    started = time.perf_counter()
    index = EmbeddedIndex.open(index_dir)
    open_s = time.perf_counter() - started
    queries = np.load(queries_path)[:count]
    for query in queries[: min(100, count)]:  # warm-up: page in what a query touches, as a server would
        index.search(query, 10)
    own = index.settings
    param, values = SWEEP.get(own.kind, ("", ()))
    values = sorted({*values, getattr(own, param)}) if param and count == QUERIES else [None]
    sweep = []
    for value in values:
        if value is not None:
            index.settings = replace(own, **{param: value})
        latencies, ids = [], []
        for query in queries:
            t0 = time.perf_counter()
            hits = index.search(query, 10)
            latencies.append((time.perf_counter() - t0) * 1000)
            ids.append([int(hit.id[1:]) for hit in hits])
        sweep.append({"param": param, "value": value, "latencies_ms": latencies, "ids": ids})
    index.settings = own
    headline = next(point for point in sweep if point["value"] in (None, getattr(own, param, None)))
    result = {"open_s": open_s, **headline, "sweep": sweep, "stats": index.stats()}
    with open(Path(index_dir).parent / "sweeps.jsonl", "a") as raw:  # raw ids per point, for re-analysis
        raw.write(json.dumps({"settings": asdict(own), **result}) + "\n")
    print(json.dumps(result), flush=True)
    sys.stdin.read()  # hold everything until the parent has read /proc/PID/smaps_rollup
    index._db.close()  # no save: the measurement must not write


def spawn(index_dir: Path, queries_path: Path, count: int, cgroup: Path | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--child", str(index_dir), str(queries_path), str(count)]

    def join_cgroup() -> None:  # in the child, before it runs anything: every page it touches is charged there
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=join_cgroup)


def memory_cgroup(limit_mib: int) -> tuple[Path, Path]:
    """A fresh memory cgroup (v2 or v1) capped at ``limit_mib``: (its folder, the file with its peak usage).

    RSS alone overstates what a memory-mapped index needs: once the checkpoint is in the page cache (it was
    just written), every page a query faults in brings its cached neighbours along. A cap is the honest test:
    the kernel must evict to stay under it, so latency under the cap shows what fits in that much memory."""
    name = f"lookalike-bench-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").is_file():
        folder = v2 / name
        folder.mkdir()
        (folder / "memory.max").write_text(str(limit_mib * 2**20))
        (folder / "memory.swap.max").write_text("0")
        return folder, folder / "memory.peak"
    folder = v2 / "memory" / name
    try:
        folder.mkdir()
    except OSError as error:
        raise SystemExit(f"cannot make a memory cgroup (needs root and cgroup v1 or v2): {error}") from error
    (folder / "memory.limit_in_bytes").write_text(str(limit_mib * 2**20))
    return folder, folder / "memory.max_usage_in_bytes"


def evict_from_page_cache(index_dir: Path) -> None:
    """Drop the index files' clean pages from the page cache, so the capped process pays for (and is charged
    for) every page it reads, as a freshly booted server would."""
    for name in (FAISS_NAME, SQLITE_NAME):
        with open(index_dir / name, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def measure_capped(index_dir: Path, queries_path: Path, truth: np.ndarray, limit_mib: int) -> dict[str, Any]:
    """The query run again, in a process confined to ``limit_mib`` of memory (page cache included)."""
    folder, peak = memory_cgroup(limit_mib)
    try:
        evict_from_page_cache(index_dir)
        child = spawn(index_dir, queries_path, QUERIES, cgroup=folder)
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SystemExit(f"the capped measuring process for {index_dir} failed (out of memory?)")
        output = json.loads(line)
        memory = memory_of(child.pid)
        peak_mib = int(peak.read_text()) / 2**20
        child.communicate("")
    finally:
        with contextlib.suppress(OSError):
            folder.rmdir()
    return {
        "limit_mib": limit_mib,
        "peak_mib": round(peak_mib, 1),
        "open_s": round(output["open_s"], 3),
        **score(output, truth),
        **{key: round(value, 1) for key, value in memory.items()},
        "sweep": [{"param": p["param"], "value": p["value"], **score(p, truth)} for p in output.get("sweep", [])],
    }


def capped(workdir: Path, report_path: Path, names: list[str], limit_mib: int) -> dict[str, Any]:
    """Rebuild each named setting on a kept ``--workdir`` and measure it under a memory cap (``--capped``)."""
    report = json.loads(report_path.read_text())
    truth = ground_truth(workdir / "base.npy", workdir / "queries.npy")
    dim = int(np.load(workdir / "queries.npy", mmap_mode="r").shape[1])
    for name in names:
        extra = settings_list(dim, report["quick"])[name]
        EmbeddedIndex.rebuild(workdir / "index", IndexSettings(dim=dim, **extra)).close()
        row = measure_capped(workdir / "index", workdir / "queries.npy", truth, limit_mib)
        report["settings"][name]["capped"] = row
        print(f"{name} under {limit_mib} MiB: {json.dumps({k: v for k, v in row.items() if k != 'sweep'})}")
    return report


def score(point: dict[str, Any], truth: np.ndarray) -> dict[str, Any]:
    """p50/p99 latency and recall@10 of one run of the queries against the exact float top 10."""
    ids = np.asarray([row + [-1] * (10 - len(row)) for row in point["ids"]])
    hits = sum(len(set(row) & set(true)) for row, true in zip(ids, truth[: len(ids)], strict=True))
    latencies = np.asarray(point["latencies_ms"])
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall@10": round(hits / (10 * len(ids)), 4),
        "queries": len(ids),
    }


def measure(index_dir: Path, queries_path: Path, truth: np.ndarray, count: int, pair: bool = False) -> dict[str, Any]:
    children = [spawn(index_dir, queries_path, count) for _ in range(2 if pair else 1)]
    outputs = []
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SystemExit(f"measuring process for {index_dir} failed")
        outputs.append(json.loads(line))
    memories = [memory_of(child.pid) for child in children]
    for child in children:
        child.communicate("")
    first = outputs[0]
    result = {
        "open_s": round(first["open_s"], 3),
        **score(first, truth),
        **{key: round(value, 1) for key, value in memories[0].items()},
        "stats": first["stats"],
        "sweep": [{"param": p["param"], "value": p["value"], **score(p, truth)} for p in first.get("sweep", [])],
    }
    if pair:
        result["two_processes"] = [{k: round(v, 1) for k, v in m.items()} for m in memories]
    return result


# ------------------------------------------------------------------------------------------- the run
def build_vectors(args: argparse.Namespace, workdir: Path, report: dict[str, Any]) -> tuple[Path, Path, Any]:
    from lookalike.embed import load_embedder

    total = args.total or (100_000 if args.quick else 1_000_000)
    started = time.perf_counter()
    embedder = load_embedder("efficientnet-lite0")
    fashion_count = args.fashion if args.fashion is not None else (10_000 if args.quick else 70_000)
    clothing_count = args.clothing if args.clothing is not None else (1000 if args.quick else 10**6)
    real = real_vectors(embedder, fashion_count, clothing_count)
    report["real_embedding_s"] = round(time.perf_counter() - started, 1)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(real.vectors))
    query_rows, base_rows = order[:QUERIES], np.sort(order[QUERIES:])
    queries_path = workdir / "queries.npy"
    np.save(queries_path, real.vectors[query_rows])

    started = time.perf_counter()
    model = SyntheticModel(real.vectors[base_rows])
    synthetic_count = total - len(base_rows)
    base = np.lib.format.open_memmap(
        workdir / "base.npy", mode="w+", dtype=np.float32, shape=(total, real.vectors.shape[1])
    )
    base[: len(base_rows)] = real.vectors[base_rows]
    position = len(base_rows)
    first_synthetic = None
    for batch in model.sample(synthetic_count, seed=1):
        base[position : position + len(batch)] = batch
        first_synthetic = batch if first_synthetic is None else first_synthetic
        position += len(batch)
    base.flush()
    report["synthetic_s"] = round(time.perf_counter() - started, 1)
    sources: dict[str, int] = {}
    for row in base_rows:
        sources[real.sources[row]] = sources.get(real.sources[row], 0) + 1
    report["vectors"] = {
        "total": total,
        "real_in_index": len(base_rows),
        "real_by_source": sources,
        "synthetic": synthetic_count,
        "queries": QUERIES,
        "query_sources": {s: int(sum(real.sources[r] == s for r in query_rows)) for s in set(real.sources)},
        "real_stats": describe(real.vectors[base_rows][rng.permutation(len(base_rows))]),
        "synthetic_stats": describe(first_synthetic) if first_synthetic is not None else None,
    }
    print(f"vectors: {json.dumps(report['vectors'])}", flush=True)

    started = time.perf_counter()
    best_ids = ground_truth(workdir / "base.npy", queries_path)
    report["ground_truth_s"] = round(time.perf_counter() - started, 1)
    clothing = [(real.vectors[i], real.labels[i]) for i in range(len(real.vectors)) if real.sources[i] == "clothing"]
    fashion = [
        (real.vectors[i], real.labels[i]) for i in range(len(real.vectors)) if real.sources[i] == "fashion-mnist"
    ]
    return queries_path, workdir / "base.npy", (best_ids, clothing, fashion[:3000])


def ground_truth(base_path: Path, queries_path: Path, k: int = 10) -> np.ndarray:
    """The exact float top k of every query: inner product of unit vectors over the whole base, in chunks."""
    import faiss

    base = np.load(base_path, mmap_mode="r")
    queries = np.load(queries_path).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(base), 100_000):
        chunk = np.array(base[start : start + 100_000], dtype=np.float32)  # a writable copy
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        scores, ids = faiss.knn(queries, chunk, k, metric=faiss.METRIC_INNER_PRODUCT)
        merged_scores = np.concatenate([best, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids + start], axis=1)
        keep = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best, best_ids = np.take_along_axis(merged_scores, keep, 1), np.take_along_axis(merged_ids, keep, 1)
    return best_ids


def rescore(workdir: Path, report_path: Path) -> dict[str, Any]:
    """Attach the query-parameter sweeps kept in ``workdir/sweeps.jsonl`` to a report (re-analysis, no rebuild)."""
    report = json.loads(report_path.read_text())
    truth = ground_truth(workdir / "base.npy", workdir / "queries.npy")
    for line in (workdir / "sweeps.jsonl").read_text().splitlines():
        raw = json.loads(line)
        settings = {key: value for key, value in raw["settings"].items() if key != "embedding"}
        for row in report["settings"].values():
            full = asdict(IndexSettings(dim=settings["dim"], **row["settings"]))
            if {key: value for key, value in full.items() if key != "embedding"} == settings and "sweep" not in row:
                row["sweep"] = [{"param": p["param"], "value": p["value"], **score(p, truth)} for p in raw["sweep"]]
    return report


def build_store(path: Path, base_path: Path, dim: int) -> float:
    """The SQLite store plus the exact float structure: ``EmbeddedIndex.add`` in batches of 10,000."""
    base = np.load(base_path, mmap_mode="r")
    started = time.perf_counter()
    index = EmbeddedIndex.create(path, IndexSettings(dim=dim, kind="exact"))
    for start in range(0, len(base), 10_000):
        chunk = np.asarray(base[start : start + 10_000])
        index.add([Item(f"v{start + i}", vector, {"n": start + i}) for i, vector in enumerate(chunk)])
    index.close()
    return time.perf_counter() - started


def pca_precision(clothing: list[tuple[np.ndarray, str]], fashion: list[tuple[np.ndarray, str]], workdir: Path) -> dict:
    """Same-label precision@10 (leave-one-out) with float vectors and with PCA-256 learned on the catalogue.

    ``rerank=1`` re-scores only the 10 PCA neighbours, so the set (and precision) is PCA's own.
    """
    from lookalike.evaluate import same_label_precision

    out: dict[str, Any] = {}
    for name, rows in (("clothing", clothing), ("fashion-mnist 3k", fashion)):
        if len(rows) < 500:
            continue
        dim = len(rows[0][0])
        for variant, extra in (("float", {}), ("pca256", {"reduce_dim": 256, "rerank": 1})):
            path = workdir / f"pca-{name.split()[0]}-{variant}"
            index = EmbeddedIndex.create(path, IndexSettings(dim=dim, kind="exact", **extra))
            index.add([Item(f"c{i}", v, {"label": label}) for i, (v, label) in enumerate(rows)])
            index.save()
            ignore = ("Not sure", "Skip", "Other")
            precision = same_label_precision(index, (10,), "label", exact=False, ignore_labels=ignore)
            out[f"{name} {variant}"] = {
                "precision@10": round(precision.precision[10], 4),
                "queries": precision.queries,
                "structure_bytes_per_vector": 4 * (256 if extra else dim),
            }
            index.close()
            shutil.rmtree(path, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 vectors instead of 1,000,000")
    parser.add_argument("--out", default=None, help="default bench/results/scale.json (scale-quick.json)")
    parser.add_argument("--workdir", default=None, help="where the indexes go (default: a temporary folder)")
    parser.add_argument("--plots", default="docs/img", help="folder for the PNG plots ('' for none)")
    parser.add_argument("--only", nargs="*", help="measure only these settings")
    parser.add_argument("--total", type=int, help="vectors in the index (overrides --quick's 100,000)")
    parser.add_argument("--fashion", type=int, help="Fashion-MNIST images to embed (default all; --quick 10,000)")
    parser.add_argument("--clothing", type=int, help="clothing photos to embed (default all; --quick 1,000)")
    parser.add_argument("--rescore", metavar="WORKDIR", help="redo tables and plots of --out from a kept --workdir")
    parser.add_argument(
        "--capped", nargs="+", metavar="SETTING", help="with --rescore WORKDIR: rebuild and measure under --cap-mib"
    )
    parser.add_argument("--cap-mib", type=int, default=2048, help="memory cap for --capped (page cache included)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure_child(args.child[0], args.child[1], int(args.child[2]))
        return
    out = Path(args.out or ("bench/results/scale-quick.json" if args.quick else "bench/results/scale.json"))
    if args.rescore and args.capped:
        finish(capped(Path(args.rescore), out, args.capped, args.cap_mib), out, args)
        return
    if args.rescore:
        finish(rescore(Path(args.rescore), out), out, args)
        return
    begun = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick, "loadavg_start": loadavg()}
    print(f"machine: {report['machine']}, loadavg {report['loadavg_start']}", flush=True)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lookalike-scale-", dir=".lookalike"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        queries_path, base_path, (truth, clothing, fashion) = build_vectors(args, workdir, report)
        dim = int(np.load(queries_path).shape[1])
        report["pca_precision"] = pca_precision(clothing, fashion, workdir)
        print(f"PCA precision: {json.dumps(report['pca_precision'])}", flush=True)

        index_dir = workdir / "index"
        store_s = build_store(index_dir, base_path, dim)
        report["store_build_s"] = round(store_s, 1)
        print(f"store (SQLite + exact float checkpoint): {store_s:.0f} s, {du(index_dir)}", flush=True)
        report["settings"] = {}
        built: dict[str, str] = {}  # structure -> the setting that built it
        settings = settings_list(dim, args.quick)
        for name, extra in settings.items():
            if args.only and name not in args.only:
                continue
            started = time.perf_counter()
            try:
                wanted = IndexSettings(dim=dim, **extra)
                if name != "exact float":
                    EmbeddedIndex.rebuild(index_dir, wanted).close()
                structure_s = 0.0 if name == "exact float" else time.perf_counter() - started
                # A setting that differs from the one before only in query-time parameters reuses its
                # structure (rebuild keeps it): report the time that structure took to build.
                structure = json.dumps(structure_of(wanted), sort_keys=True, default=str)
                same = built.get(structure)
                if same in report["settings"]:
                    structure_s = report["settings"][same]["structure_build_s"]
                built[structure] = name
                count = EXACT_QUERIES if extra.get("kind") == "exact" and not extra.get("encoding") else QUERIES
                row = {
                    "settings": extra,
                    "structure_build_s": round(structure_s, 1),
                    "build_s": round(store_s + structure_s, 1),
                    **du(index_dir),
                    **measure(index_dir, queries_path, truth, count),
                    "loadavg": loadavg(),
                }
                if name == "HNSW sq8":  # sharing: one process alone, then two at once, the same 200 queries each
                    alone = measure(index_dir, queries_path, truth, 200)
                    row["one_process"] = {key: alone[key] for key in alone if key.endswith("_mib")}
                    row["two_processes"] = measure(index_dir, queries_path, truth, 200, pair=True)["two_processes"]
            except (Exception, SystemExit) as error:  # one failed setting must not lose the others' numbers
                print(f"{name}: FAILED after {time.perf_counter() - started:.0f} s: {error!r}", flush=True)
                report.setdefault("failed", {})[name] = repr(error)
                continue
            report["settings"][name] = row
            shown = {k: v for k, v in row.items() if k not in ("stats", "settings")}
            print(f"{name}: {json.dumps(shown)}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - begun, 1)
    report["loadavg_end"] = loadavg()
    finish(report, out, args)


def finish(report: dict[str, Any], out: Path, args: argparse.Namespace) -> None:
    """Print the table, write JSON, the Markdown tables and the plots."""
    print_table(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    tables = markdown(report)
    out.with_suffix(".md").write_text(tables + "\n")
    print(f"\n{tables}\n\nwritten to {out} and {out.with_suffix('.md')}")
    if args.plots:
        plot(report, Path(args.plots), "scale-quick" if args.quick else "scale")


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['vectors']['total']:,} vectors; machine {report['machine']['cpu']}, loadavg {report['loadavg_end']}"
    )
    print(f"{'setting':<14}{'build s':>9}{'RSS MiB':>9}{'PSS MiB':>9}", end="")
    print(f"{'p50 ms':>8}{'p99 ms':>8}{'recall':>8}{'faiss MiB':>10}")
    for name, row in report.get("settings", {}).items():
        print(
            f"{name:<14}{row['build_s']:>9.0f}{row.get('rss_mib', 0):>9.0f}{row.get('pss_mib', 0):>9.0f}"
            f"{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['recall@10']:>8.3f}{row['faiss_mib']:>10.0f}"
        )
    print(f"total {report['total_s']:.0f} s")


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, from one run."""
    lines = [
        "| setting | FAISS structure | build (store + structure) | RSS / PSS of a query process | open | "
        "p50 / p99 | recall@10 | FAISS file | goals missed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["settings"].items():
        missed = []
        for key, (op, bound) in GOALS.items():
            value = row[key]
            if not (value <= bound if op == "<=" else value >= bound):
                missed.append(key.replace("_", " "))
        structure = row["stats"].get(
            "structure", "IndexFlat" if row["settings"]["kind"] == "exact" else "IndexHNSWFlat"
        )
        if row["stats"].get("trained") is False:
            structure += " (untrained: float staging)"
        lines.append(
            f"| {name} | `{structure}` | {row['build_s']:.0f} s ({report['store_build_s']:.0f} + "
            f"{row['structure_build_s']:.0f}) | {row['rss_mib']:,.0f} / {row['pss_mib']:,.0f} MiB | "
            f"{row['open_s']:.2f} s | {row['p50_ms']:.2f} / {row['p99_ms']:.2f} ms | {row['recall@10']:.3f} | "
            f"{row['faiss_mib']:,.0f} MiB | {', '.join(missed) or 'none'} |"
        )
    lines += ["", "| setting | query parameter | p50 / p99 | recall@10 |", "| --- | --- | --- | --- |"]
    for name, row in report["settings"].items():
        for point in row.get("sweep", []):
            if point["param"]:
                lines.append(
                    f"| {name} | {point['param']} = {point['value']} | {point['p50_ms']:.2f} / "
                    f"{point['p99_ms']:.2f} ms | {point['recall@10']:.3f} |"
                )
    capped_rows = {name: row["capped"] for name, row in report["settings"].items() if "capped" in row}
    if capped_rows:
        lines += [
            "",
            "| setting, in a process capped at | query parameter | peak memory (page cache included) | p50 / p99 | "
            "recall@10 |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, row in capped_rows.items():
            for point in row["sweep"]:
                parameter = f"{point['param']} = {point['value']}" if point["param"] else "-"
                lines.append(
                    f"| {name}, {row['limit_mib']:,} MiB | {parameter} | {row['peak_mib']:,.0f} MiB | "
                    f"{point['p50_ms']:.2f} / {point['p99_ms']:.2f} ms | {point['recall@10']:.3f} |"
                )
    pair = next((row for row in report["settings"].values() if "two_processes" in row), None)
    if pair:
        lines += [
            "",
            "| two processes on one index | RSS | PSS | of which file-backed (shared) |",
            "| --- | --- | --- | --- |",
        ]
        if "one_process" in pair:
            memory = pair["one_process"]
            lines.append(
                f"| alone | {memory['rss_mib']:,.0f} MiB | {memory['pss_mib']:,.0f} MiB | "
                f"{memory.get('pss_file_mib', 0):,.0f} MiB |"
            )
        for number, memory in enumerate(pair["two_processes"], 1):
            lines.append(
                f"| process {number} | {memory['rss_mib']:,.0f} MiB | {memory['pss_mib']:,.0f} MiB | "
                f"{memory.get('pss_file_mib', 0):,.0f} MiB |"
            )
    lines += ["", "| PCA (same-label precision@10, leave-one-out) | precision@10 | queries | bytes a vector |"]
    lines += ["| --- | --- | --- | --- |"]
    for name, row in report["pca_precision"].items():
        lines.append(
            f"| {name} | {row['precision@10']:.3f} | {row['queries']:,} | {row['structure_bytes_per_vector']:,} |"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], folder: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rows = report["settings"]
    total = report["vectors"]["total"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in rows.items():
        points = [p for p in row.get("sweep", []) if p["param"]]
        if points:  # the query-time parameter's curve, its values written beside the points
            line = ax.plot([p["p50_ms"] for p in points], [p["recall@10"] for p in points], marker=".", alpha=0.7)
            for p in points:
                ax.annotate(str(p["value"]), (p["p50_ms"], p["recall@10"]), fontsize=7, color=line[0].get_color())
            ax.scatter(row["p50_ms"], row["recall@10"], s=60, color=line[0].get_color(), label=name)
        else:
            ax.scatter(row["p50_ms"], row["recall@10"], s=60, label=name)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1)
    ax.axvline(3.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("p50 query latency, ms (log scale; EmbeddedIndex.search, k=10)")
    ax.set_ylabel("recall@10 vs exact float search")
    ax.set_title(f"{total:,} vectors, 1280-d: recall@10 against p50 latency (goal: upper left)")
    ax.legend(fontsize=8, loc="lower right", title="setting (large dot: its own parameter)", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / f"{stem}-recall-latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(rows)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [rows[n].get("rss_mib", 0) for n in names], 0.4, label="RSS of a query process")
    ax.bar(x + 0.2, [rows[n]["faiss_mib"] for n in names], 0.4, label="FAISS checkpoint on disk")
    ax.axhline(2048, color="grey", linestyle="--", linewidth=1, label="2 GiB goal")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("MiB")
    ax.set_title(
        f"{total:,} vectors: memory per setting (SQLite store not shown: {rows[names[0]]['sqlite_mib']:.0f} MiB)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / f"{stem}-memory.png", dpi=110)
    plt.close(fig)
    print(f"plots in {folder}/{stem}-*.png")


if __name__ == "__main__":
    main()
