"""Run every fuzzer for a bounded time, seeded from the hostile corpus, and print what each did.

    python fuzz/run.py [--seconds 60] [decode] [request]      # make fuzz (FUZZ_SECONDS=60 per target)

Each target starts from the corpus in tests/hostile/ (and every input it crashed on before, in
tests/hostile/found/), with a dictionary of the tokens its input format is built from (fuzz/{target}.dict).
A crashing input is written to tests/hostile/found/{target}-crash-* (timeouts and
out-of-memory inputs as -timeout-/-oom-), where tests/test_hostile.py replays it from then on; fix the bug,
keep the file. Figures go to bench/results/fuzz.json; the exit code is 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hostile import corpus  # noqa: E402

TARGETS = ("decode", "request")
MAX_LEN = 100_000


def seed(target: str, directory: Path) -> int:
    directory.mkdir(parents=True)
    if target == "decode":
        for i, case in enumerate(corpus.image_cases()):
            data = case.data()
            if 0 < len(data) <= MAX_LEN:
                (directory / f"case-{i:03d}").write_bytes(data)
    else:
        subprocess.run(
            [sys.executable, str(ROOT / "fuzz" / "fuzz_request.py"), "--write-seeds", str(directory)],
            check=True,
            capture_output=True,
        )
    if corpus.FOUND.is_dir():
        for found in corpus.FOUND.glob(f"{target}-*"):
            (directory / found.name).write_bytes(found.read_bytes())
    return len(list(directory.iterdir()))


def run(target: str, seconds: int, work: Path) -> dict[str, object]:
    seeds = work / f"{target}-corpus"
    n_seeds = seed(target, seeds)
    corpus.FOUND.mkdir(exist_ok=True)
    before = set(corpus.FOUND.iterdir())
    log = work / f"{target}.log"
    command = [
        sys.executable,
        str(ROOT / "fuzz" / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        "-timeout=25",
        "-rss_limit_mb=3000",
        f"-artifact_prefix={corpus.FOUND}/{target}-",
        f"-dict={ROOT / 'fuzz' / f'{target}.dict'}",
        str(seeds),
    ]
    started = time.monotonic()
    with open(log, "w") as handle:
        returncode = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    runs = re.findall(r"Done (\d+) runs in (\d+) second", text)
    coverage = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", text)
    found = sorted(str(path.relative_to(ROOT)) for path in set(corpus.FOUND.iterdir()) - before)
    crash_lines = [line for line in text.splitlines() if "Uncaught Python exception" in line or "ERROR:" in line]
    result: dict[str, object] = {
        "target": target,
        "seconds": round(elapsed, 1),
        "seeds": n_seeds,
        "runs": int(runs[-1][0]) if runs else None,
        "runs_per_second": round(int(runs[-1][0]) / max(1, int(runs[-1][1])), 1) if runs else None,
        "coverage": int(coverage[-1][0]) if coverage else None,
        "features": int(coverage[-1][1]) if coverage else None,
        "corpus": int(coverage[-1][2]) if coverage else None,
        "crashed": returncode != 0,
        "found": found,
    }
    if returncode != 0:
        result["log_tail"] = text.splitlines()[-40:]
        result["error"] = crash_lines[:3]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the fuzzers for a bounded time.")
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 60)), help="per target")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(TARGETS)}")
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]'")
    results = []
    with tempfile.TemporaryDirectory(prefix="lookalike-fuzz-run-") as tmp:
        for target in args.targets or TARGETS:
            print(f"fuzzing {target} for {args.seconds} s ...", flush=True)
            results.append(run(target, args.seconds, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seconds_per_target": args.seconds, "targets": results}, indent=2) + "\n")
    print(f"{'target':<10}{'runs':>10}{'runs/s':>9}{'cov':>7}{'corpus':>8}  result")
    for r in results:
        outcome = f"CRASH -> {', '.join(r['found']) or 'see log'}" if r["crashed"] else "no crash"
        print(
            f"{r['target']:<10}{r['runs'] or 0:>10}{r['runs_per_second'] or 0:>9}{r['coverage'] or 0:>7}"
            f"{r['corpus'] or 0:>8}  {outcome}"
        )
        for line in r.get("error", []):
            print(f"    {line}")
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
