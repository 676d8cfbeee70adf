"""Splitting a catalogue in two by a metadata field's values, for learning on one half and measuring on the other.

Splitting by value, not by item, keeps every sender (say) wholly on one side, so a projection learned on the
training half cannot score by recognising the test half's rooms and hangers. ``lookalike adapt --holdout-by``
learns only from the training half and records the split; ``lookalike eval`` then measures on the test half.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_TEST_SHARE = 0.5


def value_key(value: Any) -> str:
    """A field value as the split compares it (so 7 and "7" are told apart, and lists are hashable)."""
    return repr(value)


def test_values(values: Iterable[Any], seed: int = 0, test_share: float = DEFAULT_TEST_SHARE) -> set[str]:
    """The keys of the values held out for testing: the distinct values (None left out) sorted, shuffled
    with ``seed``, the first ``test_share`` of them (rounded, at least one and not all when there are two
    or more)."""
    keys = sorted({value_key(value) for value in values if value is not None})
    random.Random(seed).shuffle(keys)
    cut = round(test_share * len(keys))
    if len(keys) >= 2:
        cut = min(max(cut, 1), len(keys) - 1)
    return set(keys[:cut])


def held_out_flags(values: Sequence[Any], seed: int = 0, test_share: float = DEFAULT_TEST_SHARE) -> list[bool]:
    """One flag per value: True where it falls in the test half (a missing value, None, in neither half)."""
    held_out = test_values(values, seed, test_share)
    return [value is not None and value_key(value) in held_out for value in values]
