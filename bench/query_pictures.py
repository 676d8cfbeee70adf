"""A picture of a few "more like this" queries, before and after: docs/img/before-after.png.

Reads the vectors ``bench/focus_survey.py`` cached (``--cache``): ``--before`` and ``--after`` name two of its
``vectors-CONFIG-BACKBONE.npy`` files. Each row is one query (a seeded choice of real-class items whose
results the two settings disagree on): the query photo, then its 5 nearest items with each setting (exact
cosine, the query left out), each framed green where its label is the query's and marked "same sender"
where it comes from the query's sender.

    .venv/bin/python bench/query_pictures.py [--before none-lite0] [--after int8-160-hard-lite2]
        [--cache /tmp/focus-survey] [--out docs/img/before-after.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from quality_survey import neighbours, read_catalogue

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "clothing-dataset"
TILE = 120
SHOWN = 5


def tile(path: Path, frame: str | None, note: str) -> Image.Image:
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    image.thumbnail((TILE - 8, TILE - 22))
    out = Image.new("RGB", (TILE, TILE), "white")
    draw = ImageDraw.Draw(out)
    if frame:
        draw.rectangle((1, 1, TILE - 2, TILE - 20), outline=frame, width=3)
    out.paste(image, ((TILE - image.width) // 2, 4 + (TILE - 22 - image.height) // 2))
    draw.text((4, TILE - 17), note, fill="black")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/focus-survey"))
    parser.add_argument("--before", default="none-lite0")
    parser.add_argument("--after", default="int8-160-hard-lite2")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/img/before-after.png"))
    args = parser.parse_args()
    catalogue = read_catalogue(args.data)
    found = {}
    for name in (args.before, args.after):
        vectors = np.load(args.cache / f"vectors-{name}.npy").astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        found[name] = neighbours(vectors, catalogue.queries, SHOWN)
    queries = catalogue.queries
    labels, senders = catalogue.labels, catalogue.senders
    share = {name: (labels[f] == labels[queries][:, None]).mean(axis=1) for name, f in found.items()}
    differ = np.flatnonzero(np.abs(share[args.before] - share[args.after]) >= 0.4)
    rows = np.random.default_rng(args.seed).choice(differ, min(args.rows, len(differ)), replace=False)
    width = TILE * (1 + 2 * SHOWN) + 24
    sheet = Image.new("RGB", (width, 22 + TILE * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), "query", fill="black")
    draw.text((TILE + 12, 4), f"before: {args.before} (whole photo)", fill="black")
    draw.text((TILE * (1 + SHOWN) + 24, 4), f"after: {args.after}", fill="black")
    for row, position in enumerate(rows):
        query = queries[position]
        top = 22 + row * TILE
        sheet.paste(tile(catalogue.paths[query], None, str(labels[query])[:16]), (0, top))
        for block, name in enumerate((args.before, args.after)):
            for column, item in enumerate(found[name][position]):
                same_label = labels[item] == labels[query]
                note = str(labels[item])[:10] + (" same sender" if senders[item] == senders[query] else "")
                left = TILE * (1 + block * SHOWN + column) + 12 * (block + 1)
                sheet.paste(tile(catalogue.paths[item], "#2ca02c" if same_label else "#d62728", note), (left, top))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(rows)} queries)")


if __name__ == "__main__":
    main()
