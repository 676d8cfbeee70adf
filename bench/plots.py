"""Draw the PNG figures of docs/benchmarks.md from the JSON the benchmarks wrote (bench/results/*.json).

Only what a run produced is drawn: a missing results file is reported and skipped, so ``--quick`` runs and
partial runs still give their figures.

    python bench/plots.py [--results bench/results] [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt

STAGE_COLOURS = {
    "read": "#bbbbbb",
    "decode": "#4e79a7",
    "resize + crop": "#59a14f",
    "normalise": "#edc948",
    "model": "#e15759",
    "index": "#b07aa1",
}


def stages_figure(stages: dict[str, Any], ingest: dict[str, float] | None, out: Path) -> Path:
    """Stacked CPU ms per image for each pipeline, with the 2-core ceiling and measured ingest rates beside."""
    pipelines = stages["cpu_ms_per_image"]
    names = list(pipelines)
    figure, axis = plt.subplots(figsize=(8, 3.6))
    left = [0.0] * len(names)
    for stage, colour in STAGE_COLOURS.items():
        widths = [pipelines[name].get(stage, 0.0) for name in names]
        axis.barh(names, widths, left=left, color=colour, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for row, name in enumerate(names):
        text = f"ceiling {stages['ceiling_images_per_s_2_cores'][name]:.0f}/s"
        if ingest and name in ingest:
            text += f", measured {ingest[name]:.0f}/s"
        axis.text(left[row] + 0.2, row, text, va="center", fontsize=8)
    axis.set_xlim(0, max(left) * 1.6)
    axis.invert_yaxis()
    axis.set_xlabel("CPU milliseconds per image (one thread)")
    axis.set_title(f"Where ingest time goes ({stages['machine']['cores']} cores, {stages['machine']['cpu']})")
    axis.legend(ncol=6, fontsize=7, loc="lower right", frameon=False)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def quantize_figure(quantize: dict[str, Any], out: Path) -> Path:
    """fp32 against int8: model step and end-to-end ingest (median with min-max), and precision@10."""
    kinds = ("fp32", "int8")
    measures = (("model_only_images_per_s", "model step"), ("ingest_images_per_s", "ingest end to end"))
    figure, (speed, quality) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.38
    for offset, kind in zip((-width / 2, width / 2), kinds, strict=True):
        values = [quantize[kind][key] for key, _ in measures]
        medians = [value["median"] for value in values]
        errors = [
            [m - v["min"] for m, v in zip(medians, values, strict=True)],
            [v["max"] - m for m, v in zip(medians, values, strict=True)],
        ]
        bars = speed.bar([i + offset for i in range(len(measures))], medians, width, yerr=errors, label=kind)
        speed.bar_label(bars, fmt="%.0f", fontsize=8)
    speed.axhline(150, color="grey", linestyle="--", linewidth=1)
    speed.text(1.45, 152, "ingest goal 150/s", fontsize=7, ha="right", va="bottom")
    speed.set_xticks(range(len(measures)), [label for _, label in measures])
    speed.set_ylabel("images per second")
    speed.legend(frameon=False)
    precision = [quantize[kind]["precision@10_classes"] for kind in kinds]
    bars = quality.bar(kinds, precision, color=["#4e79a7", "#f28e2b"])
    quality.bar_label(bars, fmt="%.3f", fontsize=8)
    quality.set_ylim(min(precision) - 0.05, max(precision) + 0.03)
    quality.set_title("same-label precision@10", fontsize=9)
    figure.suptitle(f"EfficientNet-Lite0 fp32 vs int8, {quantize['images']} photos, {quantize['threads']} threads")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def quality_figure(settings: dict[str, Any], out: Path) -> Path:
    """Same-label precision@10 against ingest speed, one point a setting, with the issue's floors."""
    latest: dict[str, Any] = {}
    for run in settings.get("runs", [settings]):  # a later run's measurement of a setting replaces an earlier one
        latest |= {row["setting"]: row for row in run["rows"]}
    rows = list(latest.values())
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axis, (key, label, floor, better) in zip(
        axes,
        (
            ("ingest_images_per_s", "ingest, images/s (2 cores)", 100.0, "right"),
            ("query_p50_ms", "query by image, p50 ms (in process)", 20.0, "left"),
        ),
        strict=True,
    ):
        for row in rows:
            focused = row["focus"] is not None
            axis.scatter(row[key], row["precision@10"], s=40, color="#e15759" if focused else "#4e79a7")
            name = row["setting"].removeprefix("efficientnet-").replace("+focus-", " +focus ")
            axis.annotate(
                name.removesuffix("+adapt"),
                (row[key], row["precision@10"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
            if row.get("adapted"):
                adapted = row["adapted"]["precision@10"]
                axis.scatter(row[key], adapted, s=40, marker="*", color="#59a14f")
                axis.annotate("  + adapt (held-out senders)", (row[key], adapted), fontsize=7)
        axis.axvline(floor, color="#999999", linestyle="--", linewidth=1)
        axis.axhline(0.72, color="#999999", linestyle=":", linewidth=1)
        axis.set_xlabel(f"{label}; better to the {better}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("same-label precision@10 (5,096 queries)")
    axes[0].set_xscale("log")
    figure.suptitle(
        "Retrieval quality against speed, clothing catalogue (blue: whole photo, red: focus stage; "
        "dashed: the speed floors, dotted: P@10 0.72)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(out, dpi=130)
    plt.close(figure)
    return out


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        print(f"plots: {path} not found, its figure is skipped", file=sys.stderr)
        return None
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--quick", action="store_true", help="plot the *-quick.json of make bench-quick")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    stages, quantize = load(args.results / f"stages{suffix}.json"), load(args.results / f"quantize{suffix}.json")
    made = []
    if stages:
        ingest = None
        if quantize:
            ingest = {
                "lookalike, fp32": quantize["fp32"]["ingest_images_per_s"]["median"],
                "lookalike, int8": quantize["int8"]["ingest_images_per_s"]["median"],
            }
        made.append(stages_figure(stages, ingest, args.out / f"ingest-stages{suffix}.png"))
    if quantize:
        made.append(quantize_figure(quantize, args.out / f"fp32-vs-int8{suffix}.png"))
    settings = load(args.results / "settings.json")
    if settings and not args.quick:
        made.append(quality_figure(settings, args.out / "quality-speed.png"))
    for path in made:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
