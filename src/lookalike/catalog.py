"""A catalogue: an index together with the model that built it.

The index records its model's descriptor (name, dimension, preprocessing, weights digest); opening a
catalogue loads that same model, and asking for another one fails with a clear error instead of silently
comparing vectors from two different feature spaces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.embed import Embedder, load_embedder
from lookalike.errors import IndexError_, ModelMismatchError
from lookalike.index import IndexSettings, VectorIndex
from lookalike.index.backends import IndexTarget, create_index, index_exists, open_index
from lookalike.index.base import IndexKind, Metric

COMPARED_KEYS = ("model", "dim", "preprocessing", "weights", "focus", "adaptation")
BOTH_WAYS = ("focus", "adaptation")
"""Stages that change every vector: an index without one records none, so they must match both ways."""


@dataclass
class Catalog:
    index: VectorIndex
    embedder: Embedder
    _calibration: Any = field(default=None, init=False, repr=False)
    _calibration_read: bool = field(default=False, init=False, repr=False)
    _colour_weight: float = field(default=0.0, init=False, repr=False)

    def calibration(self) -> Any:
        """The index's match calibration (a ``confidence.Calibration``) when one applies to its settings, else
        None. Read once (one read of the notes), not per search: ``forget_calibration`` re-reads."""
        if not self._calibration_read:
            from lookalike.confidence.calibrate import calibration_digest
            from lookalike.confidence.tiers import read_calibration

            notes = self.index.notes()
            self._calibration = read_calibration(notes, calibration_digest(self))
            weight = notes.get("colour", {}).get("weight", 0.0)
            self._colour_weight = float(weight) if isinstance(weight, int | float) and 0 <= weight <= 1 else 0.0
            self._calibration_read = True
        return self._calibration

    def colour_weight(self) -> float:
        """How much colour weighs in this catalogue's searches by default: its note ``colour`` (set by
        ``lookalike calibrate --colour``), else 0 (shape only). Read once, like the calibration."""
        if not self._calibration_read:
            self.calibration()
        return self._colour_weight

    def forget_calibration(self) -> None:
        """Read the calibration again at the next search (after ``lookalike calibrate`` wrote a new one)."""
        self._calibration_read = False

    def close(self) -> None:
        self.index.close()


def as_target(where: str | Path | IndexTarget) -> IndexTarget:
    """A path means the embedded backend, so the simple case stays simple."""
    return where if isinstance(where, IndexTarget) else IndexTarget("embedded", Path(where))


def check_model(recorded: dict[str, Any], embedder: Embedder) -> None:
    """Fail unless ``embedder`` makes vectors in the same space as the index's recorded model."""
    # Compare as stored (JSON), where tuples have become lists.
    recorded, current = json.loads(json.dumps(recorded)), json.loads(json.dumps(embedder.descriptor()))
    differences = [
        key for key in COMPARED_KEYS if (key in recorded or key in BOTH_WAYS) and recorded.get(key) != current.get(key)
    ]
    if differences:
        raise ModelMismatchError(
            f"this index was built with {recorded.get('model')} ({recorded.get('dim')}-d) but the model in use is "
            f"{current['model']} ({current['dim']}-d); they differ in {', '.join(differences)}. "
            f"Use --model {recorded.get('model')}, or build a new index with --index."
        )


def open_catalog(where: str | Path | IndexTarget, model: str | None = None, weights: str | None = None) -> Catalog:
    """Open an existing index with the model it records (or ``model``, which must be the same)."""
    target = as_target(where)
    index = open_index(target)
    recorded = dict(index.settings.embedding)
    if not recorded.get("model"):
        index.close()
        raise IndexError_(f"the index at {target.describe()} does not record which model built it")
    return Catalog(index, embedder_for(recorded, model, weights))


def embedder_for(recorded: dict[str, Any], model: str | None = None, weights: str | None = None) -> Embedder:
    """The model an index records (or ``model``, which must make the same vectors), with its focus stage and
    the projection ``lookalike adapt`` learned for it."""
    embedder = load_embedder(model or recorded["model"], weights=weights)
    if recorded.get("focus"):
        embedder = embedder.with_focus(focus_from_descriptor(recorded["focus"]))
    if recorded.get("adaptation"):
        from lookalike.adapt import Projection

        embedder = embedder.with_projection(Projection.from_record(recorded["adaptation"]))
    check_model(recorded, embedder)
    return embedder


FOCUS_CHOICES = ("none", "object")


def make_focus(focus: str, resolution: int | None = None, precision: str = "fp32") -> Any:
    """The focus stage a new index asks for: None for ``none``, U²-Net-p for ``object``."""
    if focus not in FOCUS_CHOICES:
        raise IndexError_(f"focus must be one of {', '.join(FOCUS_CHOICES)}, got {focus!r}")
    if precision not in ("fp32", "int8"):
        raise IndexError_(f"focus precision must be fp32 or int8, got {precision!r}")
    if focus == "none":
        return None
    from lookalike.focus import DEFAULT_RESOLUTION, Focus

    return Focus(resolution=resolution or DEFAULT_RESOLUTION, precision=precision)


def focus_from_descriptor(recorded: dict[str, Any]) -> Any:
    """The focus stage an index recorded, rebuilt with the same settings (check_model then compares the
    weights digest and version too)."""
    from lookalike.focus import Focus

    if recorded.get("name") != "u2netp":
        raise IndexError_(f"this index was built with a focus stage lookalike does not know: {recorded.get('name')!r}")
    keys = ("resolution", "threshold", "margin", "matte", "min_box", "min_peak", "precision")
    return Focus(**{key: recorded[key] for key in keys if key in recorded})


def open_or_create_catalog(
    where: str | Path | IndexTarget,
    model: str | None = None,
    metric: Metric = "cosine",
    kind: IndexKind = "hnsw",
    weights: str | None = None,
    structure: Mapping[str, Any] | None = None,
    focus: str = "none",
    focus_resolution: int | None = None,
    focus_precision: str = "fp32",
) -> Catalog:
    """Open the index at ``where``, or create one for ``model`` (default: the configured default model).

    ``structure``: more ``IndexSettings`` fields for a new index (encoding, ivf_lists, reduce_dim, ...);
    ``focus``: ``object`` puts the salient-object stage before the model (new index only: an existing index
    keeps the focus it records).
    """
    target = as_target(where)
    if index_exists(target):
        return open_catalog(target, model, weights)
    from lookalike.config import get_settings

    embedder = load_embedder(model or get_settings().model, weights=weights)
    embedder = embedder.with_focus(make_focus(focus, focus_resolution, focus_precision))
    settings = IndexSettings(
        dim=embedder.dim, metric=metric, kind=kind, embedding=embedder.descriptor(), **dict(structure or {})
    )
    return Catalog(create_index(target, settings), embedder)
