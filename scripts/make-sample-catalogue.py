#!/usr/bin/env python3
"""Make the small clothing sample that ships in the package, from the full clothing data set.

    .venv/bin/python scripts/make-sample-catalogue.py [--source DIR] [--out DIR]

``lookalike index clothing`` falls back to this sample when the full data set (CC0,
alexeygrigorev/clothing-dataset) is neither found nor downloadable, so that ``make demo`` works offline.

The choice is reproducible: the same source gives the same sample, byte for byte (a fixed seed, rows taken
in a fixed order, Pillow's JPEG encoder with fixed settings). Labels that say nothing about the garment
('Not sure', 'Skip', 'Other') are left out; every other label gets at least ``--floor`` photos (or all it
has), the rest of ``--count`` is shared in proportion to the full set. Within a label the photos are taken
round-robin over the senders (in a seeded order), so the sample holds photos of many senders and a hold-out
by sender still leaves both halves populated. Each photo is turned upright (EXIF), stripped of its metadata
and scaled down so that its longest side is ``--side`` pixels.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / ".." / "shared" / "datasets" / "clothing-dataset"
DEFAULT_OUT = ROOT / "src" / "lookalike" / "sources" / "clothing-sample"
LEFT_OUT = ("Not sure", "Skip", "Other")
FIELDS = ["image", "sender_id", "label", "kids"]

README = """\
# The clothing sample catalogue

{count} photos of clothing in {labels} labels from {senders} senders: a small, downscaled subset of the
clothing data set (https://github.com/alexeygrigorev/clothing-dataset, by Alexey Grigorev and the
people who sent photos), which is in the public domain (CC0 1.0 Universal, see LICENSE in this folder).

`lookalike index clothing` uses it only when the full data set (5,398 photos) is neither found
(`$LOOKALIKE_DATA`, `../shared/datasets/clothing-dataset`, `<cache>/datasets/clothing-dataset`) nor
downloadable, and says so on stderr: it keeps `make demo` working on a machine without internet.

Made by `scripts/make-sample-catalogue.py` (seed {seed}): labels 'Not sure', 'Skip' and 'Other' left out,
at least {floor} photos a label (or all it has), taken round-robin over senders; every photo turned upright,
stripped of metadata, scaled to a longest side of {side} px and saved as JPEG quality {quality}.
`images.csv` has the full set's format (image, sender_id, label, kids) and its rows, in the full set's order.

| label | photos |
|---|---:|
{table}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the full clothing data set")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="replaced by the sample")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--floor", type=int, default=10, help="at least this many photos a label")
    parser.add_argument("--side", type=int, default=320, help="longest side in pixels")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source: Path = args.source.resolve()
    with (source / "images.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    present = {p.name for p in (source / "images").iterdir()}
    usable = [r for r in rows if r["label"] not in LEFT_OUT and f"{r['image']}.jpg" in present]
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in usable:
        by_label[row["label"]].append(row)

    quota = _quotas({label: len(group) for label, group in by_label.items()}, args.count, args.floor)
    rng = random.Random(args.seed)
    chosen: set[str] = set()
    for label in sorted(by_label):
        chosen.update(_round_robin(by_label[label], quota[label], rng))
    sample = [r for r in rows if r["image"] in chosen]  # the full set's order

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    for row in sample:
        (out / "images" / f"{row['image']}.jpg").write_bytes(
            _downscale(source / "images" / f"{row['image']}.jpg", args.side, args.quality)
        )
    with (out / "images.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({field: row[field] for field in FIELDS} for row in sample)
    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    counts = {label: sum(r["label"] == label for r in sample) for label in by_label}
    table = "\n".join(f"| {label} | {n} |" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    (out / "README.md").write_text(
        README.format(
            count=len(sample),
            labels=len(counts),
            senders=len({r["sender_id"] for r in sample}),
            seed=args.seed,
            floor=args.floor,
            side=args.side,
            quality=args.quality,
            table=table,
        ),
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    digest = hashlib.sha256((out / "images.csv").read_bytes()).hexdigest()[:12]
    print(f"{out}: {len(sample)} photos, {len(counts)} labels, {size / 1e6:.2f} MB; images.csv sha256 {digest}")
    return 0


def _quotas(sizes: dict[str, int], count: int, floor: int) -> dict[str, int]:
    """Photos a label: at least ``floor`` (or all it has), the rest in proportion, adding up to ``count``."""
    quota = {label: min(n, floor) for label, n in sizes.items()}
    while sum(quota.values()) < count and any(quota[label] < n for label, n in sizes.items()):
        # the label furthest below its proportional share gets the next photo (largest remainder, stable)
        total = sum(sizes.values())
        label = max(
            (label for label, n in sizes.items() if quota[label] < n),
            key=lambda label: (sizes[label] * count / total - quota[label], label),
        )
        quota[label] += 1
    return quota


def _round_robin(rows: list[dict[str, str]], n: int, rng: random.Random) -> list[str]:
    """``n`` image ids, one sender after another (senders and their photos in a seeded order)."""
    by_sender: dict[str, list[str]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["image"]):
        by_sender[row["sender_id"]].append(row["image"])
    senders = sorted(by_sender, key=int)
    rng.shuffle(senders)
    for sender in senders:
        rng.shuffle(by_sender[sender])
    picked: list[str] = []
    while len(picked) < n:
        for sender in senders:
            if by_sender[sender] and len(picked) < n:
                picked.append(by_sender[sender].pop())
    return picked


def _downscale(path: Path, side: int, quality: int) -> bytes:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=True)  # no exif=: metadata left behind
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
