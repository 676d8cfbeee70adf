"""Metadata filters: one validated form, compiled to SQL here and to each engine's query by its backend.

A filter maps a metadata field to a condition:

* ``"Dress"`` or ``True`` or ``3``: equality;
* ``["Dress", "Skirt"]``: one of;
* ``{"gte": 10, "lt": 50}``: numeric range (``gt``, ``gte``, ``lt``, ``lte``).

All fields must hold. The textual form used by the CLI and query strings is ``label=Dress``,
``label=Dress,Skirt``, ``price>=10``, ``price<50``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lookalike.errors import FilterError

Scalar = str | int | float | bool
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_FIELD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,127}$")
_EXPRESSION = re.compile(r"^\s*([^=<>!]+?)\s*(>=|<=|>|<|=)\s*(.*?)\s*$")
# Bounds on what a client can ask for: every backend turns a filter into one query expression, and SQLite
# refuses expression trees deeper than 1000 (20,000 ANDed fields were a 500 before this limit).
MAX_FIELDS = 64
MAX_VALUES = 1000


@dataclass(frozen=True)
class Condition:
    """One field's test, after validation."""

    field: str
    kind: Literal["eq", "in", "range"]
    values: tuple[Scalar, ...] = ()
    bounds: tuple[tuple[str, float], ...] = ()


def normalize(filter: Mapping[str, Any] | None) -> list[Condition]:
    """Validate a filter and return its conditions; a FilterError names what is wrong."""
    if filter is None:
        return []
    if not isinstance(filter, Mapping):
        raise FilterError(f"a filter must be an object mapping field to value, got {type(filter).__name__}")
    if len(filter) > MAX_FIELDS:
        raise FilterError(f"a filter may test at most {MAX_FIELDS} fields, got {len(filter):,}")
    conditions = []
    for field, condition in filter.items():
        if not isinstance(field, str) or not _FIELD.match(field):
            raise FilterError(f"bad filter field name {field!r}")
        conditions.append(_condition(field, condition))
    return conditions


def _condition(field: str, condition: Any) -> Condition:
    if _is_scalar(condition):
        return Condition(field, "eq", (condition,))
    if isinstance(condition, list | tuple):
        if not condition or not all(_is_scalar(value) for value in condition):
            raise FilterError(f"filter on {field!r}: a one-of list needs one or more plain values")
        if len(condition) > MAX_VALUES:
            raise FilterError(f"filter on {field!r}: a one-of list may hold at most {MAX_VALUES} values")
        return Condition(field, "in", tuple(condition))
    if isinstance(condition, Mapping):
        unknown = set(condition) - set(RANGE_OPERATORS)
        if unknown or not condition:
            raise FilterError(
                f"filter on {field!r}: a range takes {', '.join(RANGE_OPERATORS)}, got {sorted(map(str, unknown))}"
            )
        bounds = []
        for operator, bound in condition.items():
            if isinstance(bound, bool) or not isinstance(bound, int | float) or bound != bound:  # NaN too
                raise FilterError(f"filter on {field!r}: range bound {operator} must be a number, got {bound!r}")
            bounds.append((operator, float(bound)))
        return Condition(field, "range", bounds=tuple(bounds))
    raise FilterError(f"filter on {field!r}: unsupported condition {condition!r}")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value == value  # rejects NaN


def to_sql(conditions: Iterable[Condition], column: str = "metadata") -> tuple[str, list[Any]]:
    """SQLite WHERE clause over a JSON column; booleans compare as SQLite's 1/0 from ``json_extract``."""
    clauses: list[str] = []
    params: list[Any] = []
    for condition in conditions:
        path = f'$."{condition.field}"'
        extract = f"json_extract({column}, ?)"
        if condition.kind in ("eq", "in"):
            # json_type keeps "1" (text) from matching 1 (number) and true from matching 1; it is checked per
            # value, so in a mixed list like [true, 0] the type of one value cannot excuse another's (1 != true).
            alternatives = []
            for value in condition.values:
                types = _json_types([value])
                alternatives.append(f"({extract} = ? AND json_type({column}, ?) IN ({', '.join('?' * len(types))}))")
                params += [path, _sql_value(value), path, *types]
            clauses.append(f"({' OR '.join(alternatives)})")
        else:
            parts = [f"{extract} {RANGE_OPERATORS[op]} ?" for op, _ in condition.bounds]
            clauses.append(f"(json_type({column}, ?) IN ('integer', 'real') AND {' AND '.join(parts)})")
            params.append(path)
            for _, bound in condition.bounds:
                params += [path, bound]
    return (" AND ".join(clauses) or "1"), params


def _sql_value(value: Scalar) -> Any:
    return int(value) if isinstance(value, bool) else value


def _json_types(values: Iterable[Scalar]) -> list[str]:
    types = set()
    for value in values:
        if isinstance(value, bool):
            types.add("true" if value else "false")
        elif isinstance(value, int | float):
            types.update(("integer", "real"))
        else:
            types.add("text")
    return sorted(types)


def matches(metadata: Mapping[str, Any], conditions: Iterable[Condition]) -> bool:
    """The same test in Python: the reference the SQL and engine translations must agree with."""
    for condition in conditions:
        if condition.field not in metadata:
            return False
        value = metadata[condition.field]
        if condition.kind in ("eq", "in"):
            if not any(_same(value, wanted) for wanted in condition.values):
                return False
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            for operator, bound in condition.bounds:
                if not _compare(value, operator, bound):
                    return False
    return True


def _same(value: Any, wanted: Scalar) -> bool:
    """Equal and of the same JSON type, except that 1 and 1.0 are the same number."""
    if isinstance(value, bool | str) or isinstance(wanted, bool | str):
        return type(value) is type(wanted) and value == wanted
    return value == wanted


def _compare(value: float, operator: str, bound: float) -> bool:
    return {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[operator]


def parse_expressions(expressions: Iterable[str], infer: Any = None) -> dict[str, Any]:
    """``["label=Dress,Skirt", "price>=10"]`` to a filter; ``infer`` turns text into typed values."""
    infer = infer or _infer
    result: dict[str, Any] = {}
    for expression in expressions:
        match = _EXPRESSION.match(expression)
        if not match or not match.group(3):
            raise FilterError(f"bad filter {expression!r}: use field=value, field=a,b or field>=number")
        field, operator, text = match.groups()
        if operator == "=":
            values = [infer(part.strip()) for part in text.split(",")]
            result[field] = values[0] if len(values) == 1 else values
        else:
            bound = infer(text)
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise FilterError(f"bad filter {expression!r}: {operator} needs a number")
            key = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[operator]
            existing = result.get(field)
            result[field] = {**(existing if isinstance(existing, dict) else {}), key: bound}
    normalize(result)
    return result


def _infer(text: str) -> Scalar:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
