"""Facets, ranges and fields of an embedded index, counted in SQLite from the items' metadata JSON.

Facets, ranges and fields read every item's metadata (about 2 s for unfiltered facets over 100,000 items of six
fields, one of them an id). The unfiltered answers are kept until the items change (a write through this
object, or another process's commit: PRAGMA data_version), so the shop page's every-request "facets of the
whole catalogue" and the field cache's refreshes cost nothing while nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lookalike.index import filters
from lookalike.index.embedded.state import EmbeddedState
from lookalike.index.results import (
    choose_facets,
    facets_under,
)


class SummariesMixin(EmbeddedState):
    """Metadata summaries of :class:`EmbeddedIndex` (``self._summaries``, keyed by the items' state)."""

    # Facets, ranges and fields read every item's metadata (about 2 s for unfiltered facets over 100,000 items
    # of six fields, one of them an id). The unfiltered answers are kept until the items change (a write
    # through this object, or another process's commit: PRAGMA data_version), so the shop page's every-request
    # "facets of the whole catalogue" and the field cache's refreshes cost nothing while nothing is written.
    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` (a read of the items' metadata), or its answer kept from the same state of the items."""
        with self._lock:
            # Read before the statement: a commit in between makes the next call compute again (never stale).
            version = (self._db.execute("PRAGMA data_version").fetchone()[0], self._writes)
            if version != self._summaries_version or len(self._summaries) > 16:
                self._summaries, self._summaries_version = {}, version
            if name not in self._summaries:
                with self._snapshot():
                    self._summaries[name] = compute()
            return self._summaries[name]

    def fields(self) -> set[str]:
        def read() -> frozenset[str]:
            rows = self._db.execute("SELECT DISTINCT j.key FROM items, json_each(items.metadata) AS j")
            return frozenset(row[0] for row in rows)

        return set(self._cached("fields", read))

    def _facets(self, max_values: int, conditions: list[filters.Condition]) -> dict[str, dict[str, int]]:
        everything = self._cached(f"facets:{max_values}", lambda: choose_facets(self._value_counts(), max_values))
        if not conditions:
            return {key: dict(values) for key, values in everything.items()}
        where = filters.to_sql(conditions, "items.metadata")
        with self._lock:
            passing = self._value_counts(where, list(everything)) if everything else {}
        return facets_under(everything, passing)

    def _value_counts(
        self, where: tuple[str, list[Any]] | None = None, keys: list[str] | None = None
    ) -> dict[str, dict[str, int]]:
        """Field -> counted value -> items, over the items passing ``where`` and the fields in ``keys``."""
        clause, params = where or ("1", [])
        if keys is not None:
            clause += " AND j.key IN (SELECT value FROM json_each(?))"
            params = [*params, json.dumps(keys, ensure_ascii=False)]
        with self._lock:
            rows = self._db.execute(
                "SELECT j.key, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE j.value END, "
                "COUNT(*) FROM items, json_each(items.metadata) AS j "
                f"WHERE j.type IN ('text', 'integer', 'true', 'false') AND {clause} GROUP BY j.key, j.type, j.value",
                params,
            ).fetchall()
        result: dict[str, dict[str, int]] = {}
        for key, value, count in rows:
            values = result.setdefault(key, {})
            values[str(value)] = values.get(str(value), 0) + count  # 1 and "1" share a key: add, not overwrite
        return result

    def _ranges(self, conditions: list[filters.Condition]) -> dict[str, tuple[float, float]]:
        if not conditions:
            return dict(self._cached("ranges", self._spans))
        return self._spans(filters.to_sql(conditions, "items.metadata"))

    def _spans(self, where: tuple[str, list[Any]] | None = None) -> dict[str, tuple[float, float]]:
        clause, params = where or ("1", [])
        with self._lock:
            rows = self._db.execute(
                "SELECT j.key, MIN(j.value), MAX(j.value) FROM items, json_each(items.metadata) AS j "
                f"WHERE j.type IN ('integer', 'real') AND {clause} GROUP BY j.key ORDER BY j.key",
                params,
            ).fetchall()
        return {key: (float(low), float(high)) for key, low, high in rows}
