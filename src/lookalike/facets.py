"""The filter choices a shop page offers: value counts that follow the other filters, and price ranges.

A shop's filters are read together: with ``label=Skirt`` chosen, the ``kids`` choice should say how many
*skirts* are for kids, not how many items are. Each field's counts are therefore taken under every chosen
filter except its own (its own would leave only the chosen value): the usual faceted-search rule, so a
shopper can still switch a chosen field to another value and see what that would give. The same holds for
numeric ranges (the price control spans the prices the other filters leave).

What is offered follows the catalogue's :class:`~lookalike.display.Display`: fields that name one item each
and fields or values a shop hides are left out. The list of fields does not depend on the filter (a field
does not vanish because the current filter leaves none of it); its values absent under the filter count 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lookalike.display import Display
from lookalike.index import VectorIndex

MAX_VALUES = 50
"""A field with more distinct values than this is not offered as a choice list (it names items, not kinds)."""


@dataclass
class ShopFacets:
    fields: dict[str, dict[str, int]] = field(default_factory=dict)
    """Field -> value -> items under the other filters, in the order of their counts over the whole catalogue, so
    a list does not reshuffle as filters change."""
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Numeric field -> (lowest, highest) under the other filters, for range controls."""


def shop_facets(index: VectorIndex, filter: Mapping[str, Any] | None, display: Display) -> ShopFacets:
    """The choices to offer under ``filter`` (one index read per chosen field, plus two)."""
    chosen = dict(filter or {})
    everywhere = {name: counts for name, counts in index.facets(MAX_VALUES).items() if display.offers_filter(name)}
    numeric = {name: span for name, span in index.ranges().items() if display.offers_filter(name)}
    # Integer fields with few values (sizes, years) read best as choices; the rest (prices) as ranges.
    ranged = [name for name in numeric if name not in everywhere or name == display.fields.get("price")]
    under_all = index.facets(MAX_VALUES, filter=chosen) if chosen else everywhere
    spans_all = index.ranges(filter=chosen) if chosen else numeric
    result = ShopFacets()
    for name, counts in everywhere.items():
        if name in ranged:
            continue
        present = index.facets(MAX_VALUES, filter=_without(chosen, name)).get(name, {}) if name in chosen else None
        present = under_all.get(name, {}) if present is None else present
        values = {value: present.get(value, 0) for value in counts}
        shown = display.shown_values(name, values)
        if shown:
            result.fields[name] = shown
    for name in ranged:
        span = index.ranges(filter=_without(chosen, name)).get(name) if name in chosen else spans_all.get(name)
        if span is not None:
            result.ranges[name] = span
    return result


def _without(filter: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    rest = {key: value for key, value in filter.items() if key != name}
    return rest or None
