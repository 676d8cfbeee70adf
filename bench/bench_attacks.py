"""Resource attacks on a real ``lookalike serve``: every attack's memory, /health latency and answers, in a table.

Runs each attack of ``tests/hostile/attacks.py`` (decompression bombs behind a query URL, filter bomb,
progressive-JPEG scan bomb, float-TIFF memory amplification, slow URLs, deeply nested metadata) against one
server over a 20-photo generated index, and for each reports: the answers (status counts), the server's RSS
just before, its peak (VmHWM after a clear_refs reset, or 10 ms sampling), the rise, the slowest /health
answer (probed every 100 ms), the attack's wall time, how long the server stayed busy afterwards (drain),
the CPU seconds it spent, and whether the goal holds (rise <= 300 MB, /health < 1 s, no 5xx, a good query
still answered correctly). Prints the CPU model and flags from ``lscpu``; writes ``bench/results/attacks.json``.

    python bench/bench_attacks.py [--only brotli_bomb,scan_bomb] [--out bench/results/attacks.json]
                                  [--src DIR] [--as-limit-gib 10]

``--src DIR`` runs the server from another source tree, e.g. the committed code while src/ is being edited:
``git archive HEAD src | tar -x -C /tmp/head`` then ``--src /tmp/head/src``. The server runs under an
address-space limit (``prlimit --as``, 10 GiB by default, 0 for none) so that an unstopped bomb ends in a
MemoryError instead of exhausting the machine; the brotli bomb on code that does not stop it takes ~2 GB
a request (4 at once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hostile import attacks  # noqa: E402


def lscpu() -> dict[str, str]:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in output.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def machine() -> dict[str, Any]:
    import PIL
    from PIL import features

    cpu = lscpu()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import brotli

        brotli_version = brotli.__version__
    except ImportError:
        brotli_version = None
    return {
        "cpu": cpu.get("Model name") or platform.processor(),
        "cpu_flags": cpu.get("Flags", ""),
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "brotli": brotli_version,
    }


def code_under_test(src: Path | None) -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        return result.stdout.strip()

    changed = [line for line in git("status", "--porcelain", "--", "src").splitlines() if line]
    return {
        "git_head": git("rev-parse", "HEAD"),
        "server_src": str(src) if src else str(ROOT / "src"),
        "working_tree_src_changes": len(changed) if src is None else None,
    }


COLUMNS = (
    ("attack", 14),
    ("answers", 24),
    ("base MB", 8),
    ("peak MB", 8),
    ("rise MB", 8),
    ("health max ms", 13),
    ("wall s", 7),
    ("drain s", 7),
    ("cpu s", 6),
    ("goal", 5),
)


def row(result: attacks.AttackResult, problems: list[str]) -> list[str]:
    answers = " ".join(f"{label}x{count}" for label, count in result.statuses.items())
    if result.busy_refusals:
        answers += f" ({result.busy_refusals} busy)"
    return [
        result.name,
        answers,
        f"{result.baseline_mb:.0f}",
        f"{result.peak_mb:.0f}",
        f"{result.rise_mb:.0f}",
        f"{result.health_max_ms:.0f}",
        f"{result.wall_s:.1f}",
        f"{result.drain_s:.1f}" + ("" if result.checks.get("quiet_after_drain", True) else "+"),
        f"{result.server_cpu_s:.1f}",
        "ok" if not problems else "FAIL",
    ]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(width, *(len(r[i]) for r in rows)) for i, (_, width) in enumerate(COLUMNS)]
    print("  ".join(name.ljust(w) for (name, _), w in zip(COLUMNS, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated attacks (of {', '.join(attacks.ATTACKS)})")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "attacks.json"))
    parser.add_argument("--src", type=Path, default=None, help="run the server from this source tree")
    parser.add_argument("--as-limit-gib", type=float, default=10.0, help="server address-space cap (0: none)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lookalike-attacks-cache",
        help="LOOKALIKE_CACHE for the server (the exported model is kept there between runs)",
    )
    args = parser.parse_args()
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(attacks.ATTACKS)
    unknown = sorted(set(names) - set(attacks.ATTACKS))
    if unknown:
        parser.error(f"unknown attacks {unknown}; known: {', '.join(attacks.ATTACKS)}")
    src = args.src.resolve() if args.src else None

    info = machine()
    print(f"cpu: {info['cpu']} ({info['cores']} cores, {info['memory_gib']} GiB)")
    print(f"cpu flags: {info['cpu_flags']}")
    print(f"server source: {src or ROOT / 'src'}\n", flush=True)
    results: list[dict[str, Any]] = []
    rows = []
    started = time.monotonic()
    as_limit = int(args.as_limit_gib * attacks.GIB) or None
    with tempfile.TemporaryDirectory(prefix="lookalike-attacks-") as work:
        with attacks.environment(Path(work), args.cache, src=src, as_limit=as_limit) as context:
            print(
                f"server pid {context.server.pid} on {context.base}, memory measured by {context.server.meter.method}"
            )
            for name in names:
                result = attacks.run_attack(context, name)
                problems = attacks.verdict(result)
                results.append(result.to_dict() | {"problems": problems})
                rows.append(row(result, problems))
                print(
                    f"  {name}: {result.statuses}, rise {result.rise_mb} MB, /health max {result.health_max_ms} ms,"
                    f" {result.wall_s} s (+{result.drain_s} s drain)",
                    flush=True,
                )
                for problem in problems:
                    print(f"    - {problem[:300]}", flush=True)
            restarts = context.server.starts - 1
        log = (Path(work) / "server.log").read_text(errors="replace")[-4000:]

    print()
    print_table(rows)
    print(
        f"\ngoal: rise <= {attacks.MAX_RISE_MB:g} MB, /health < {attacks.MAX_HEALTH_MS:g} ms, no 5xx but 503 busy"
        " with Retry-After (load shed by design), good query after"
    )
    print("drain: seconds the server stayed busy after the attack; + = still busy at the cap (restarted)")
    print(f"server restarts (died, or still busy): {restarts}; total {time.monotonic() - started:.0f} s")
    report = {
        "machine": info,
        "code": code_under_test(src),
        "goal": {
            "max_rise_mb": attacks.MAX_RISE_MB,
            "max_health_ms": attacks.MAX_HEALTH_MS,
            "busy_503_allowed": True,
        },
        "settings": {
            "as_limit_bytes": as_limit,
            "health_every_s": attacks.HEALTH_EVERY,
            "client_timeout_s": attacks.CLIENT_TIMEOUT,
            "catalogue_size": attacks.CATALOGUE_SIZE,
        },
        "server_restarts": restarts,
        "server_log_tail": log,
        "attacks": results,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
