"""``lookalike adapt``: learn a projection from the items that carry a label and re-project the whole index.

Every stored vector is read back, returned to the plain features (the inverse of any projection the index
already has), and the new projection is learned from the labelled items among them (only those of the
training half with ``holdout_by``). Then, in one transaction, every vector is replaced by its projection and
the index's model descriptor records the projection, so queries get it too. No image is read or embedded
again; ``undo`` writes the plain features back and forgets the projection.

Embedded cosine indexes only for now: the server backends fix their recorded settings at creation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.adapt.holdout import DEFAULT_TEST_SHARE, held_out_flags
from lookalike.adapt.learn import DEFAULT_GAIN, DEFAULT_SHRINKAGE, AdaptError, learn_projection, unit_mean
from lookalike.adapt.projection import Projection
from lookalike.catalog import as_target, open_catalog
from lookalike.index.backends import IndexTarget

DEFAULT_IGNORED = ("Not sure", "Skip", "Other", "")
"""Label values that say "no class" (the clothing catalogue's): never taught from."""


@dataclass
class AdaptReport:
    """What one ``adapt`` did."""

    field: str | None
    items: int
    """Vectors re-projected (every item of the index)."""
    taught: int
    """Labelled items the projection was learned from."""
    classes: int
    rank: int
    """Directions stretched (at most classes - 1)."""
    gain: float | None
    holdout: dict[str, Any] | None
    undone: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.undone:
            return f"adapt: undone; {self.items:,} vectors are the plain features again ({self.seconds:.1f} s)"
        if not self.field:
            return f"adapt: {self.items:,} vectors centred on the catalogue's mean direction ({self.seconds:.1f} s)"
        held = ""
        if self.holdout:
            held = f", learned on the {self.holdout['field']} training half only (seed {self.holdout['seed']})"
        return (
            f"adapt: learned from {self.taught:,} items in {self.classes} {self.field!r} classes{held}; "
            f"{self.rank} directions stretched by {1 + (self.gain or 0):.1f}x; {self.items:,} vectors "
            f"re-projected ({self.seconds:.1f} s)"
        )


def teaching_items(
    metadata: Sequence[dict[str, Any]],
    field: str,
    ignored: Sequence[str] = DEFAULT_IGNORED,
    holdout_by: str | None = None,
    seed: int = 0,
    test_share: float = DEFAULT_TEST_SHARE,
) -> tuple[np.ndarray, list[str]]:
    """Positions of the items that teach (a usable ``field`` value, in the training half) and their labels."""
    split = [m.get(holdout_by) for m in metadata] if holdout_by else []
    held_out = held_out_flags(split, seed, test_share)
    positions: list[int] = []
    labels: list[str] = []
    for position, entry in enumerate(metadata):
        label = entry.get(field)
        if label is None or isinstance(label, (dict, list)) or str(label).strip() in ignored:
            continue
        if holdout_by and (split[position] is None or held_out[position]):
            continue
        positions.append(position)
        labels.append(str(label).strip())
    return np.asarray(positions, dtype=np.int64), labels


def adapt_index(
    where: str | Path | IndexTarget,
    field: str | None = None,
    *,
    undo: bool = False,
    centre_only: bool = False,
    ignored: Sequence[str] = DEFAULT_IGNORED,
    holdout_by: str | None = None,
    seed: int = 0,
    gain: float = DEFAULT_GAIN,
    shrinkage: float = DEFAULT_SHRINKAGE,
) -> AdaptReport:
    """Learn the projection from ``field`` and re-project the index at ``where`` (or ``undo`` it).

    ``centre_only``: no labels; only centre every vector on the catalogue's mean direction (measured on the
    clothing catalogue: precision@10 +0.011 with Lite2, +0.005 with Lite0, +0.009 with Lite2 and focus).
    """
    started = time.perf_counter()
    target = as_target(where)
    if target.backend != "embedded":
        raise AdaptError(
            f"lookalike adapt re-projects an embedded index in place; the {target.backend} backend fixes its "
            "recorded model at creation (build the catalogue on the embedded backend to adapt it)"
        )
    if not undo and not centre_only and not field:
        raise AdaptError("say which metadata field holds the labels to learn from: --label FIELD")
    catalog = open_catalog(target)
    if catalog.index.settings.metric != "cosine":
        catalog.close()
        raise AdaptError("lookalike adapt works on cosine indexes (it re-projects directions, not lengths)")
    try:
        current: Projection | None = catalog.embedder.projection
        rows: list[np.ndarray] = []
        metadata: list[dict[str, Any]] = []
        for batch in catalog.index.iter_items(with_vectors=True):
            for item in batch:
                assert item.vector is not None  # asked for with_vectors
                rows.append(item.vector)
                metadata.append(item.metadata)
        plain = np.stack(rows) if rows else np.zeros((0, catalog.index.settings.dim), dtype=np.float32)
        if current is not None:
            plain = current.invert(plain)
        plain_embedder = catalog.embedder.with_projection(None)
    finally:
        catalog.close()

    if undo:
        if current is None:
            raise AdaptError("this index is not adapted: there is nothing to undo")
        new: Projection | None = None
        positions, labels = np.zeros(0, dtype=np.int64), list[str]()
    elif centre_only:
        positions, labels = np.zeros(0, dtype=np.int64), []
        new = Projection(np.zeros((plain.shape[1], 0), dtype=np.float32), 0.0, unit_mean(plain), {"field": None})
    else:
        assert field is not None
        positions, labels = teaching_items(metadata, field, ignored, holdout_by, seed)
        holdout = {"field": holdout_by, "seed": seed, "test_share": DEFAULT_TEST_SHARE} if holdout_by else None
        learned = {"field": field, "items": len(positions), "classes": len(set(labels)), "holdout": holdout}
        new = learn_projection(plain[positions], labels, gain, shrinkage, learned, centre=unit_mean(plain))

    descriptor = plain_embedder.with_projection(new).descriptor()

    def transform(stored: np.ndarray) -> np.ndarray:
        vectors = stored if current is None else current.invert(stored)
        return vectors if new is None else new.apply(vectors)

    from lookalike.index.embedded import EmbeddedIndex

    EmbeddedIndex.reproject(target.path, transform, descriptor).close()
    return AdaptReport(
        field=field if not undo else None,
        items=len(rows),
        taught=len(positions),
        classes=len(set(labels)),
        rank=0 if new is None else int(new.basis.shape[1]),
        gain=None if new is None else new.gain,
        holdout=None if new is None else new.learned.get("holdout"),
        undone=undo,
        seconds=time.perf_counter() - started,
    )
