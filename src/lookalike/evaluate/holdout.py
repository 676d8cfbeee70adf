"""Train/test halves split by a metadata field's values (for a later ``adapt --holdout-by FIELD``).

Splitting by value, not by item, keeps every sender (say) wholly on one side, so a model adapted on the
train half cannot score by recognising the test half's rooms and hangers. Used by nothing yet.
"""

from __future__ import annotations

import random

from lookalike.evaluate.neighbours import Snapshot


def holdout_split_by_field(
    snapshot: Snapshot, field: str, seed: int = 0, test_share: float = 0.5
) -> tuple[list[str], list[str]]:
    """(train ids, test ids): the field's distinct values shuffled with ``seed``, the first ``test_share`` of
    them (rounded, at least one when there are two or more) to test. Items without the field are left out."""
    values = sorted({repr(value) for value in snapshot.values(field) if value is not None})
    random.Random(seed).shuffle(values)
    cut = round(test_share * len(values))
    if len(values) >= 2:
        cut = min(max(cut, 1), len(values) - 1)
    test_values = set(values[:cut])
    train: list[str] = []
    test: list[str] = []
    for item_id, value in zip(snapshot.ids, snapshot.values(field), strict=True):
        if value is not None:
            (test if repr(value) in test_values else train).append(item_id)
    return train, test
