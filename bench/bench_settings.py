"""Every retrieval setting on the clothing catalogue: quality, ingest speed, query latency and memory, one run.

A setting is a model and a focus stage (``efficientnet-lite2-int8+focus-int8-128``). For each, in its own
process (so peak memory is that setting's alone): the whole catalogue is indexed through the product's
ingest (decode, focus, model, HNSW index; images/s over the run), 200 catalogue photos are searched by image
in process (p50/p99 ms, after 5 warm-up queries), then ``lookalike eval``'s measures run on the index:
same-label precision@1/@10 over the 5,096 real-class items (exact, leave-one-out), the same-sender share@10,
and near-duplicate recall@1 of 200 photos under the 7 fixed transforms. The plain Lite0 pipeline is always
measured first, in the same run, as the baseline the others are compared with.

    .venv/bin/python bench/bench_settings.py [--settings S1,S2,...] [--duplicates 200]
        [--out bench/results/settings.json [--append]]

Each run measures its own baseline; compare a setting only with the baseline of its own run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BASELINE = "efficientnet-lite0"
DEFAULT_SETTINGS = (
    BASELINE,
    "efficientnet-lite0-int8",
    "efficientnet-lite1-int8",
    "efficientnet-lite2-int8",
    "efficientnet-lite2",
    "efficientnet-lite0-int8+focus-int8-160",
    "efficientnet-lite2-int8+focus-int8-160",
    "efficientnet-lite2+focus-int8-160+adapt",
    "efficientnet-lite2+focus-fp32-160",
)


def parse(setting: str) -> tuple[str, str | None, int | None]:
    """``model[+focus-PRECISION-RESOLUTION]`` to (model, focus precision or None, resolution or None)."""
    model, _, focus = setting.partition("+")
    if not focus:
        return model, None, None
    _, precision, resolution = focus.split("-")
    return model, precision, int(resolution)


def cpu_flags() -> dict[str, Any]:
    """The CPU, its cores and the flags the figures depend on (int8 speed: VNNI; AMX)."""
    from lookalike.evaluate.environment import cpu_flags as flags_of
    from lookalike.evaluate.environment import machine_info

    info = machine_info()
    flags = flags_of(Path("/proc/cpuinfo").read_text())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"cpu": info["cpu"], "cores": info["cores"], "flags": [f for f in wanted if f in flags]}


def run_one(setting: str, duplicates: int) -> dict[str, Any]:
    """One setting, measured in this process."""
    from lookalike.catalog import open_or_create_catalog
    from lookalike.evaluate import EvalOptions, evaluate_index
    from lookalike.ingest import ingest
    from lookalike.search import search_image
    from lookalike.sources.datasets import clothing_dataset

    adapt = setting.endswith("+adapt")
    model, precision, resolution = parse(setting.removesuffix("+adapt"))
    source = clothing_dataset(fallback=False)
    workdir = Path(tempfile.mkdtemp(prefix="lookalike-settings-"))
    try:
        # What `lookalike index --model M [--focus object --focus-precision P --focus-resolution R]` makes.
        catalog = open_or_create_catalog(
            workdir / "index",
            model,
            focus="none" if precision is None else "object",
            focus_resolution=resolution,
            focus_precision=precision or "fp32",
        )
        load_before = os.getloadavg()[0]
        report = ingest(source, catalog.index, catalog.embedder, progress=False)
        paths = [item.location for item in random.Random(0).sample(list(source), 200)]
        for path in paths[:5]:
            search_image(catalog, Path(path).read_bytes(), k=10)
        latencies = []
        for path in paths:
            data = Path(path).read_bytes()
            started = time.perf_counter()
            search_image(catalog, data, k=10)
            latencies.append(1000 * (time.perf_counter() - started))
        result = evaluate_index(catalog.index, catalog.embedder, EvalOptions(duplicates=duplicates))
        catalog.close()
        adapted = None
        if adapt:
            # Learned on the labels of half of the senders, measured on the other half's items.
            from lookalike.adapt.reproject import adapt_index
            from lookalike.catalog import open_catalog

            adapt_report = adapt_index(workdir / "index", "label", holdout_by="sender_id")
            catalog = open_catalog(workdir / "index")
            adapted = evaluate_index(catalog.index, catalog.embedder, EvalOptions(duplicates=duplicates))
            adapted["adapt"] = adapt_report.to_dict()
            catalog.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "setting": setting,
        "model": model,
        "focus": None if precision is None else {"precision": precision, "resolution": resolution},
        "ingest_images_per_s": round(report.rate, 1),
        "ingest_failed": len(report.failed),
        "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "query_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "precision@1": result["precision@1_exact"],
        "precision@10": result["precision@10_exact"],
        "queries": result["queries"],
        "same_sender@10": result["same_field"]["share"] if result["same_field"] else None,
        "duplicates_recall@1": result["duplicates"].get("overall_recall@1"),
        "duplicates_by_transform": result["duplicates"].get("recall@1"),
        "load_average_before": round(load_before, 2),
        "adapted": None
        if adapted is None
        else {
            "held_out": adapted["held_out"],
            "taught": adapted["adapt"]["taught"],
            "precision@1": adapted["precision@1_exact"],
            "precision@10": adapted["precision@10_exact"],
            "queries": adapted["queries"],
            "same_sender@10": adapted["same_field"]["share"],
            "duplicates_recall@1": adapted["duplicates"].get("overall_recall@1"),
            "duplicates_by_transform": adapted["duplicates"].get("recall@1"),
            "adapt_seconds": adapted["adapt"]["seconds"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    parser.add_argument("--duplicates", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--append", action="store_true", help="add this run to the runs already in --out")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one setting, print its JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.duplicates)))
        return
    settings = args.settings.split(",")
    if BASELINE not in settings:
        settings.insert(0, BASELINE)
    machine = cpu_flags()
    print(f"machine: {machine}", flush=True)
    rows = []
    header = f"{'setting':<44}{'P@1':>7}{'P@10':>7}{'sender':>8}{'dup@1':>7}{'img/s':>8}{'p50 ms':>8}{'MiB':>7}"
    print(header, flush=True)
    for setting in settings:
        done = subprocess.run(
            [sys.executable, __file__, "--one", setting, "--duplicates", str(args.duplicates)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            print(f"{setting}: failed\n{done.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{setting:<44}{row['precision@1']:>7.3f}{row['precision@10']:>7.3f}{row['same_sender@10']:>8.3f}"
            f"{row['duplicates_recall@1'] or 0:>7.3f}{row['ingest_images_per_s']:>8.1f}{row['query_p50_ms']:>8.1f}"
            f"{row['peak_rss_mib']:>7.0f}",
            flush=True,
        )
        if row["adapted"]:
            a = row["adapted"]
            print(
                f"{'  adapted (held-out senders: ' + str(a['queries']) + ' queries)':<44}{a['precision@1']:>7.3f}"
                f"{a['precision@10']:>7.3f}{a['same_sender@10']:>8.3f}{a['duplicates_recall@1'] or 0:>7.3f}",
                flush=True,
            )
    if args.out:
        runs = []
        if args.append and args.out.exists():
            saved = json.loads(args.out.read_text())
            runs = saved.get("runs", [saved])
        runs.append({"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows})
        args.out.write_text(json.dumps({"runs": runs}, indent=2))


if __name__ == "__main__":
    main()
