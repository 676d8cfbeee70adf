"""Train/test halves of a catalogue split by a metadata field's values (see :mod:`lookalike.adapt.holdout`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lookalike.adapt.holdout import DEFAULT_TEST_SHARE, held_out_flags
from lookalike.evaluate.neighbours import Snapshot


def holdout_split_by_field(
    snapshot: Snapshot, field: str, seed: int = 0, test_share: float = DEFAULT_TEST_SHARE
) -> tuple[list[str], list[str]]:
    """(train ids, test ids) of the items that carry ``field``, split by its values (items without it are
    left out); the same split ``lookalike adapt --holdout-by`` learns on."""
    values = snapshot.values(field)
    flags = held_out_flags(values, seed, test_share)
    train: list[str] = []
    test: list[str] = []
    for item_id, value, held_out in zip(snapshot.ids, values, flags, strict=True):
        if value is not None:
            (test if held_out else train).append(item_id)
    return train, test


def adaptation_holdout(embedding: Mapping[str, Any]) -> dict[str, Any] | None:
    """The split an adapted index was learned with (``adapt --holdout-by``), or None."""
    adaptation = embedding.get("adaptation") or {}
    holdout = (adaptation.get("learned") or {}).get("holdout")
    return dict(holdout) if holdout else None


def held_out_mask(snapshot: Snapshot, holdout: Mapping[str, Any]) -> np.ndarray:
    """A bool per item: True for the test half of ``holdout`` (the items the projection never saw)."""
    values = snapshot.values(holdout["field"])
    seed, share = int(holdout.get("seed", 0)), float(holdout.get("test_share", DEFAULT_TEST_SHARE))
    return np.array(held_out_flags(values, seed, share), dtype=bool)
