"""One evaluation of an index: every measure, with the settings and the machine they were measured on.

:func:`evaluate_index` returns a JSON-ready dict (what ``lookalike eval --json`` prints) and
:func:`format_report` the table; the CLI is a thin map onto the two.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lookalike.embed import Embedder
from lookalike.evaluate.bias import default_bias_field, same_field_share
from lookalike.evaluate.duplicates import duplicate_recall
from lookalike.evaluate.environment import index_settings, machine_info
from lookalike.evaluate.feedback import negative_feedback_effect
from lookalike.evaluate.holdout import adaptation_holdout, held_out_mask
from lookalike.evaluate.neighbours import Snapshot, exact_neighbours
from lookalike.evaluate.precision import default_ignore_labels, same_label_precision
from lookalike.evaluate.recall import recall_against_exact
from lookalike.index import VectorIndex


@dataclass
class EvalOptions:
    k: int = 10
    label_field: str = "label"
    ignore_labels: tuple[str, ...] | None = None
    """Labels that are not queries; None: the catalogue's non-classes (see ``default_ignore_labels``)."""
    bias_field: str | None = None
    """Field for the same-value share; None: ``sender_id`` when items have it; "": no measurement."""
    duplicates: int = 200
    """Catalogue items altered for near-duplicate recall (0: none)."""
    recall_queries: int = 500
    seed: int = 0
    check_queries: int = 20
    """Queries on which the batched exact k-NN is compared with the index's own exact search."""


def approximate_name(index: VectorIndex) -> str | None:
    """How the index searches when not exact (hnsw, ivf, or a lossy encoding), or None for a plain flat one."""
    settings = index.settings
    if settings.kind != "exact":
        return settings.kind
    return settings.encoding if settings.is_lossy() else None


def exact_agreement(index: VectorIndex, snapshot: Snapshot, neighbours: np.ndarray, queries: int, seed: int) -> float:
    """Share of sampled items whose batched exact neighbours are the index's exact search's, id for id."""
    if not len(snapshot) or not queries:
        return float("nan")
    k = neighbours.shape[1]
    chosen = random.Random(seed).sample(range(len(snapshot)), min(queries, len(snapshot)))
    agree = 0
    for position in chosen:
        found = [r.id for r in index.search(snapshot.vectors[position], k + 1, exact=True)]
        expected = [snapshot.ids[p] for p in neighbours[position] if p >= 0]
        agree += [i for i in found if i != snapshot.ids[position]][:k] == expected
    return agree / len(chosen)


def evaluate_index(
    index: VectorIndex, embedder: Embedder | None = None, options: EvalOptions | None = None
) -> dict[str, Any]:
    """Every measure over ``index``; near-duplicate recall needs the catalogue's ``embedder``."""
    options = options or EvalOptions()
    k = options.k
    k_values = tuple(sorted({1, k}))
    seconds: dict[str, float] = {}
    started = last = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal last
        now = time.perf_counter()
        seconds[stage] = round(now - last, 3)
        last = now

    snapshot = Snapshot.load(index)
    holdout = adaptation_holdout(index.settings.embedding)
    among = held_out_mask(snapshot, holdout) if holdout else None
    lap("read")
    neighbours = exact_neighbours(snapshot, k)
    lap("exact_knn")

    ignore = options.ignore_labels
    ignore_source = "option"
    if ignore is None:
        ignore, ignore_source = default_ignore_labels(snapshot, options.label_field), "default"
    result: dict[str, Any] = {
        "index": None,
        "model": index.settings.embedding.get("model"),
        "metric": index.settings.metric,
        "kind": index.settings.kind,
        "items": len(snapshot),
        "label_field": options.label_field,
        "ignored_labels": list(ignore),
        "ignored_labels_from": ignore_source,
        "held_out": None if among is None or holdout is None else {**holdout, "items": int(among.sum())},
    }
    exact = same_label_precision(
        index, k_values, options.label_field, True, ignore, snapshot=snapshot, neighbours=neighbours, among=among
    )
    result["queries"] = exact.queries
    result |= {f"precision@{kk}_exact": round(exact.precision[kk], 4) for kk in k_values}
    result["precision_chance"] = round(exact.chance or 0.0, 4)
    lap("precision_exact")

    name = approximate_name(index)
    if name is not None:
        approx = same_label_precision(
            index, k_values, options.label_field, False, ignore, snapshot=snapshot, among=among
        )
        result |= {f"precision@{kk}_{name}": round(approx.precision[kk], 4) for kk in k_values}
        lap(f"precision_{name}")
        result[f"recall@{k}_{name}_vs_exact"] = round(recall_against_exact(index, k, options.recall_queries), 4)
        result["recall_queries"] = min(options.recall_queries, len(snapshot))
        lap("recall")

    field = default_bias_field(snapshot) if options.bias_field is None else (options.bias_field or None)
    if field is not None:
        share = same_field_share(snapshot, field, k, neighbours, among)
        result["same_field"] = {
            key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(share).items()
        }
    else:
        result["same_field"] = None
    lap("same_field")

    feedback = negative_feedback_effect(snapshot, options.label_field, ignore, k, seed=options.seed)
    result["feedback"] = {key: round(v, 4) if isinstance(v, float) else v for key, v in asdict(feedback).items()}
    lap("feedback")

    if options.duplicates and embedder is not None:
        dup = duplicate_recall(index, embedder, options.duplicates, options.seed, k, snapshot=snapshot, among=among)
        result["duplicates"] = {
            "sampled": dup.sampled,
            "unreadable": dup.unreadable,
            "queries_per_transform": dup.queries,
            "k": k,
            "search": "exact" if dup.exact else (name or "exact"),
            "seed": options.seed,
            "recall@1": {t: round(v, 4) for t, v in dup.recall_at_1.items()},
            f"recall@{k}": {t: round(v, 4) for t, v in dup.recall_at_k.items()},
            "overall_recall@1": None if dup.overall_at_1 is None else round(dup.overall_at_1, 4),
            f"overall_recall@{k}": None if dup.overall_at_k is None else round(dup.overall_at_k, 4),
        }
        lap("duplicates")
    else:
        reason = "--duplicates 0" if not options.duplicates else "the index records no model"
        result["duplicates"] = {"skipped": reason}

    result["exact_check"] = {
        "queries": min(options.check_queries, len(snapshot)),
        "agree": round(exact_agreement(index, snapshot, neighbours, options.check_queries, options.seed), 4),
    }
    lap("exact_check")
    seconds["total"] = round(time.perf_counter() - started, 3)
    result["seconds"] = seconds
    result["options"] = asdict(options) | {"ignore_labels": list(ignore), "bias_field": field}
    result["settings"] = index_settings(index)
    result["machine"] = machine_info()
    return result


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())


def _adaptation_line(adaptation: dict[str, Any] | None) -> list[str]:
    if not adaptation:
        return []
    learned = adaptation.get("learned", {})
    if not learned.get("field"):
        return [f"adapted:  centred on the catalogue's mean direction (no labels), digest {adaptation.get('digest')}"]
    return [
        f"adapted:  from {learned.get('field')!r} ({learned.get('items')} items, {learned.get('classes')} classes), "
        f"{adaptation.get('rank')} directions stretched by {1 + adaptation.get('gain', 0):.1f}x, "
        f"digest {adaptation.get('digest')}"
    ]


def format_report(result: dict[str, Any]) -> str:
    """The table ``lookalike eval`` prints: settings and machine first, then every figure."""
    machine, settings, options = result["machine"], dict(result["settings"]), result["options"]
    embedding = settings.pop("embedding", {})
    k = options["k"]
    yes = {True: "yes", False: "no"}
    lines = [
        f"index:    {result['index'] or '-'} ({result['items']:,} items)",
        f"machine:  {machine['cpu']}, {machine['cores']} cores (of {machine['cores_in_machine']}), "
        f"avx512 {yes[machine['avx512']]}, avx512_vnni {yes[machine['avx512_vnni']]}; "
        f"python {machine['python']}, faiss {machine['faiss']}, onnxruntime {machine['onnxruntime']}, "
        f"numpy {machine['numpy']}",
        f"model:    {_pairs({k: v for k, v in embedding.items() if k != 'adaptation'}) or '(not recorded)'}",
        *_adaptation_line(embedding.get("adaptation")),
        f"settings: {_pairs(settings)}",
        f"options:  k {k}, label field {options['label_field']!r}, bias field {options['bias_field']!r}, "
        f"duplicates {options['duplicates']}, recall queries {options['recall_queries']}, seed {options['seed']}",
        "",
    ]
    held = result.get("held_out")
    if held:
        lines.append(
            f"held out: queries are the {held['items']:,} items of the {held['field']!r} test half (seed "
            f"{held['seed']}), whose labels the adaptation never saw; neighbours come from every item"
        )
    ignored = ", ".join(repr(label) for label in result["ignored_labels"]) or "none"
    lines.append(
        f"same-label precision, leave-one-out over {result['queries']:,} queries "
        f"(labels ignored as queries, kept as distractors: {ignored}; {result['ignored_labels_from']})"
    )
    searches = [key.split("_", 1)[1] for key in result if key.startswith("precision@1_")]
    for search in searches:
        figures = "  ".join(f"P@{kk} {result[f'precision@{kk}_{search}']:.4f}" for kk in sorted({1, k}))
        lines.append(f"  {search:<10}{figures}")
    lines.append(f"  {'chance':<10}P@any {result['precision_chance']:.4f}")
    share = result["same_field"]
    if share:
        lines.append(
            f"same {share['field']} share@{share['k']} ({share['queries']:,} queries, exact): "
            f"{_pct(share['share'])} of neighbours vs {_pct(share['random_pairs'])} for random pairs"
        )
    else:
        lines.append("same-field share: skipped (no bias field)")
    feedback = result.get("feedback")
    if feedback and feedback["queries"]:
        lines.append(
            f"less like that ({feedback['queries']} queries, one wrong result rejected): its label's share of the "
            f"top {feedback['k']} {_pct(feedback['rejected_label_share_before'])} -> "
            f"{_pct(feedback['rejected_label_share_after'])}; the query's label "
            f"{_pct(feedback['precision_before'])} -> {_pct(feedback['precision_after'])}"
        )
    dup = result["duplicates"]
    if "skipped" in dup:
        lines.append(f"near-duplicate recall: skipped ({dup['skipped']})")
    else:
        lines.append(
            f"near-duplicate recall ({dup['sampled']} items, {dup['unreadable']} unreadable, "
            f"{dup['search']} search, seed {dup['seed']})"
        )
        lines.append(f"  {'transform':<10}{'recall@1':>10}{f'recall@{k}':>11}")
        for transform, value in dup["recall@1"].items():
            lines.append(f"  {transform:<10}{value:>10.4f}{dup[f'recall@{k}'][transform]:>11.4f}")
        if dup["overall_recall@1"] is not None:
            lines.append(f"  {'overall':<10}{dup['overall_recall@1']:>10.4f}{dup[f'overall_recall@{k}']:>11.4f}")
    for key, value in result.items():
        if key.startswith("recall@"):
            lines.append(f"{key.replace('_', ' ')} ({result['recall_queries']} queries): {value:.4f}")
    check = result["exact_check"]
    lines.append(
        f"batched exact k-NN = index exact search on {check['agree']:.0%} of {check['queries']} sampled queries"
    )
    lines.append("seconds:  " + _pairs(result["seconds"]))
    return "\n".join(lines)
