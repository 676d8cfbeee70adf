"""Do the calibrated match tiers meet the match-confidence issue's targets, on photos they did not learn from?

10 % of the clothing catalogue is held out (seeded, as in ``tier_survey.py``); the rest is indexed with the
default model through the product's ingest (HNSW, as `lookalike index` makes it) and calibrated by
``lookalike.confidence.calibrate`` (its own random alterations of 100 sampled photos, leave-one-out
neighbours, drawn out-of-domain images, seed 0). Then every query goes through the product's search path
(``search_image``: decode, model, index, folding, verification, tiers), on data calibration never saw:

* altered copies: ``lookalike eval``'s 7 fixed transforms of 200 indexed photos outside the calibration
  sample (target: >= 98 % answer ``same_item`` with the original first);
* the held-out photos, distinct items the index does not hold (target: <= 3 % answer ``same_item``);
* out-of-domain images drawn with another seed (target: >= 90 % answer ``none``), and, where scikit-image
  is installed, its sample photos of other kinds (reported apart: a photo of a person is not out of a
  clothing catalogue's domain).

Then near-duplicates: one altered copy (a transform of the 7, in turn) of each of 140 other indexed photos
is added to the index as an item of its own, and ``find_duplicates`` runs over the whole catalogue. Recall:
planted copies grouped with their original (target >= 0.95); precision: of the pairs reported that involve
a planted copy, the share that pair it with its own original (target >= 0.9). Pairs among the catalogue's
own photos are counted and written to a contact sheet (``--sheet``) to be looked at.

    .venv/bin/python bench/tiers.py [--model efficientnet-lite1] [--out bench/results/tiers.json]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tier_survey import Subset, held_out_split

from lookalike.catalog import open_or_create_catalog
from lookalike.confidence.calibrate import SAMPLES, _sample_ids, calibrate
from lookalike.confidence.outside import out_of_domain
from lookalike.evaluate.duplicates import TRANSFORMS
from lookalike.images import load_image
from lookalike.ingest import ingest
from lookalike.search import search_image
from lookalike.sources.datasets import clothing_dataset

COPIES = 200


def cpu_flags() -> str:
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    wanted = ("avx2", "avx512f", "avx512_vnni", "amx_int8")
    return " ".join(flag for flag in wanted if f" {flag}" in flags)


def other_photos() -> list[tuple[str, bytes]]:
    try:
        from skimage import data
    except ImportError:
        return []
    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera"):
        try:
            array = getattr(data, name)()
        except Exception:  # a sample that needs a download is simply skipped
            continue
        buffer = io.BytesIO()
        from PIL import Image

        Image.fromarray(array).convert("RGB").save(buffer, "JPEG", quality=90)
        photos.append((name, buffer.getvalue()))
    return photos


PLANTED = 140


def planted_duplicates(catalog: Any, pool: list[Any], workdir: Path, sheet: Path | None) -> dict[str, Any]:
    """Plant altered copies in the index, find the duplicate groups, score them against what was planted."""
    from PIL import Image

    from lookalike.confidence.duplicates import find_duplicates
    from lookalike.index import Item

    names = list(TRANSFORMS)
    planted: dict[str, str] = {}  # copy id -> original id
    folder = workdir / "planted"
    folder.mkdir()
    items = []
    for n, item in enumerate(random.Random(2).sample(pool[COPIES:], PLANTED)):
        name = names[n % len(names)]
        data = TRANSFORMS[name](load_image(item.read()))
        path = folder / f"{n}-{name}.jpg"
        path.write_bytes(data)
        vector = catalog.embedder.embed([load_image(data, min_side=catalog.embedder.decode_min_side)])[0]
        copy_id = f"planted/{n}/{name}"
        planted[copy_id] = item.id
        items.append(Item(copy_id, vector, {"planted": name}, str(path), f"planted-{n}"))
    catalog.index.add(items)
    started = time.perf_counter()
    groups = find_duplicates(catalog.index, catalog.calibration())
    seconds = time.perf_counter() - started
    group_of = {item_id: n for n, group in enumerate(groups) for item_id in group.ids}
    found = [
        copy for copy, original in planted.items() if copy in group_of and group_of[copy] == group_of.get(original)
    ]
    pairs = [(a, b) for group in groups for a, b, _ in group.pairs]
    touching = [(a, b) for a, b in pairs if a in planted or b in planted]
    right = [(a, b) for a, b in touching if planted.get(a) == b or planted.get(b) == a]
    own = [(a, b) for a, b in pairs if a not in planted and b not in planted]
    by_transform = Counter(copy.split("/")[2] for copy in found)
    if sheet and own:
        tiles = Image.new("RGB", (2 * 160, min(len(own), 40) * 200), "white")
        for row, pair in enumerate(own[:40]):
            for column, item_id in enumerate(pair):
                photo = Image.open(catalog.index.get(item_id).location).convert("RGB")
                photo.thumbnail((160, 200))
                tiles.paste(photo, (column * 160, row * 200))
        tiles.save(sheet)
    return {
        "planted": len(planted),
        "recall": round(len(found) / len(planted), 4),
        "recall_by_transform": {
            name: by_transform[name] / names.count(name) / (PLANTED // len(names)) for name in names
        },
        "pairs_with_a_planted_copy": len(touching),
        "precision": round(len(right) / len(touching), 4) if touching else None,
        "catalogue_own_pairs": len(own),
        "groups": len(groups),
        "seconds": round(seconds, 1),
        "items": catalog.index.count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite1")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sheet", type=Path, help="Write the catalogue's own duplicate pairs as a PNG")
    args = parser.parse_args()
    indexed, held_out = held_out_split(list(clothing_dataset(fallback=False)))
    workdir = Path(tempfile.mkdtemp(prefix="lookalike-tiers-"))
    result: dict[str, Any] = {"model": args.model, "cpu": f"{platform.processor() or platform.machine()} {cpu_flags()}"}
    judge_ms: list[float] = []

    def ask(data: bytes) -> Any:
        response = search_image(catalog, data, k=10)
        judge_ms.append(response.timings_ms.get("judge", 0.0))
        return response

    try:
        catalog = open_or_create_catalog(workdir / "index", args.model)
        ingest(Subset(indexed), catalog.index, catalog.embedder, progress=False)
        started = time.perf_counter()
        calibration = calibrate(catalog)
        result["calibration"] = calibration.to_note()
        result["calibration_seconds"] = round(time.perf_counter() - started, 1)
        learned = set(_sample_ids(catalog, 2 * SAMPLES, random.Random(0)))
        pool = [item for item in indexed if item.id not in learned]
        by_transform: dict[str, Counter[str]] = defaultdict(Counter)
        for item in random.Random(1).sample(pool, COPIES):
            photo = load_image(item.read())
            for name, transform in TRANSFORMS.items():
                response = ask(transform(photo))
                first = bool(response.results) and response.results[0].id == item.id
                by_transform[name][f"{response.match}{'+first' if first else ''}"] += 1
        copies = sum(by_transform.values(), Counter())
        total = sum(copies.values())
        result["copies"] = {
            "queries": total,
            "same_item_original_first": round(copies["same_item+first"] / total, 4),
            "by_transform": {
                name: round(counts["same_item+first"] / sum(counts.values()), 4)
                for name, counts in by_transform.items()
            },
            "answers": dict(copies),
        }
        unindexed = Counter(ask(item.read()).match for item in held_out)
        result["held_out"] = {
            "queries": len(held_out),
            "same_item": round(unindexed["same_item"] / len(held_out), 4),
            "answers": dict(unindexed),
        }
        drawn = out_of_domain(300, seed=1)
        outside = Counter(ask(data).match for data in drawn)
        result["out_of_domain"] = {"queries": len(drawn), "none": round(outside["none"] / len(drawn), 4)}
        result["out_of_domain"]["answers"] = dict(outside)
        result["other_photos"] = {name: ask(data).match for name, data in other_photos()}
        result["judge_ms"] = {f"p{q}": round(float(np.percentile(judge_ms, q)), 2) for q in (50, 90, 99)}
        result["duplicates"] = planted_duplicates(catalog, pool, workdir, args.sheet)
        catalog.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
