"""Metadata filters: one validated form, compiled to SQL here and to each engine's query by its backend.

A filter maps a metadata field to a condition:

* ``"Dress"`` or ``True`` or ``3``: equality;
* ``["Dress", "Skirt"]``: one of;
* ``{"gte": 10, "lt": 50}``: numeric range (``gt``, ``gte``, ``lt``, ``lte``).

All fields must hold. The textual form used by the CLI and query strings is ``label=Dress``,
``label=Dress,Skirt``, ``price>=10``, ``price<50``.

What a filter may hold (a FilterError, HTTP 400, names the field otherwise), chosen so that every backend
answers the largest filter allowed:

* at most ``MAX_FIELDS`` (64) fields, each with at most ``MAX_VALUES`` (1,000) values in a one-of list:
  64,000 values in all. The embedded index's SQL has a fixed size per field, whatever the number of values
  (each type's values go in as one JSON array, looked up through a temporary index built once per query),
  so its cost is linear in the filter's size; Milvus gets a balanced expression (Milvus 2.3 fails on more
  than 49 conditions chained one after another), OpenSearch one ``terms`` query per field;
* integers within the signed 64-bit range: SQLite, Milvus and OpenSearch hold no larger integer, so they
  could not compare one exactly;
* finite numbers: range bounds too (a bound such as ``10**400`` has no float value);
* text that is valid Unicode (no lone surrogate such as ``"\\ud800"``, which no engine can store or compare).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lookalike.errors import FilterError

Scalar = str | int | float | bool
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_FIELD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,127}")
_EXPRESSION = re.compile(r"^\s*([^=<>!]+?)\s*(>=|<=|>|<|=)\s*(.*?)\s*$")
# Bounds on what a client can ask for (see the module docstring). Measured with 64 x 1,000 values on an
# embedded index of 20,000 items: ~50 ms for items of five fields (the statement is the same as for 64 values);
# ~1.3 s when every item holds all 64 fields and passes them all (SQLite 3.40 parses the JSON once per test).
# Milvus 2.3.5 answers it in ~1 s per request.
MAX_FIELDS = 64
MAX_VALUES = 1000
# Signed 64-bit, but symmetric: Milvus parses "-9223372036854775808" as minus 2**63, which overflows.
INT64_MIN, INT64_MAX = -(2**63 - 1), 2**63 - 1


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
        if not isinstance(field, str) or not _FIELD.fullmatch(field):
            raise FilterError(f"bad filter field name {_show(field)}")
        conditions.append(_condition(field, condition))
    return conditions


def _condition(field: str, condition: Any) -> Condition:
    if _is_scalar(condition):
        return Condition(field, "eq", (_checked(field, condition),))
    if isinstance(condition, list | tuple):
        if not condition or not all(_is_scalar(value) for value in condition):
            raise FilterError(f"filter on {field!r}: a one-of list needs one or more plain values")
        if len(condition) > MAX_VALUES:
            raise FilterError(
                f"filter on {field!r}: a one-of list may hold at most {MAX_VALUES:,} values, got {len(condition):,}"
            )
        return Condition(field, "in", tuple(_checked(field, value) for value in condition))
    if isinstance(condition, Mapping):
        unknown = set(condition) - set(RANGE_OPERATORS)
        if unknown or not condition:
            got = ", ".join(sorted(map(_show, unknown))) or "nothing"
            raise FilterError(f"filter on {field!r}: a range takes {', '.join(RANGE_OPERATORS)}, got {got}")
        return Condition(field, "range", bounds=tuple(_bound(field, op, bound) for op, bound in condition.items()))
    raise FilterError(f"filter on {field!r}: unsupported condition {_show(condition)}")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value == value  # rejects NaN


def _checked(field: str, value: Scalar) -> Scalar:
    """A value every backend can compare exactly, or a FilterError naming the field."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise FilterError(
                f"filter on {field!r}: {_show(value)} is outside the signed 64-bit integer range"
                f" ({INT64_MIN} to {INT64_MAX}); SQLite and the search engines cannot compare larger integers"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"filter on {field!r}: {value!r} is not a finite number (JSON holds no infinity)")
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FilterError(f"filter on {field!r}: {_show(value)} is not valid Unicode (a lone surrogate)") from None
    return value


def _bound(field: str, operator: str, bound: Any) -> tuple[str, float]:
    if isinstance(bound, bool) or not isinstance(bound, int | float) or bound != bound:  # NaN too
        raise FilterError(f"filter on {field!r}: range bound {operator} must be a number, got {_show(bound)}")
    try:
        number = float(bound)
    except OverflowError:  # an int beyond the largest float, like 10**400
        number = math.inf
    if not math.isfinite(number):
        raise FilterError(f"filter on {field!r}: range bound {operator} must be a finite number, got {_show(bound)}")
    return operator, number


def _show(value: Any, limit: int = 60) -> str:
    """A short repr for an error message: never huge, and never failing (an int of over 4,300 digits has no
    repr in Python 3.11)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length():,} bits"
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_sql(conditions: Iterable[Condition], column: str = "metadata") -> tuple[str, list[Any]]:
    """SQLite WHERE clause over a JSON column, with the same answers as :func:`matches`.

    The statement's size depends on the number of fields, never on the number of values: a field's values are
    grouped by JSON type and each group is one JSON-array parameter, tested with ``IN (SELECT value FROM
    json_each(?))``, which SQLite evaluates once per query into a temporary index (a lookup per row costs the
    log of the number of values). ``json_type`` keeps "1" (text) from matching 1 (number) and true from
    matching 1 (``json_extract`` returns true as 1); 1 and 1.0 are the same number, as in ``matches``.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for condition in conditions:
        path = f'$."{condition.field}"'
        if condition.kind in ("eq", "in"):
            texts, numbers, booleans = _groups(condition.values)
            alternatives = []
            for values, types in ((texts, "= 'text'"), (numbers, "IN ('integer', 'real')")):
                if values:
                    alternatives.append(
                        f"(json_type({column}, ?) {types} AND json_extract({column}, ?) IN"
                        " (SELECT value FROM json_each(?)))"
                    )
                    params += [path, path, json.dumps(values, ensure_ascii=False, allow_nan=False)]
            if booleans:
                names = ", ".join(f"'{name}'" for name in booleans)
                alternatives.append(f"json_type({column}, ?) IN ({names})")
                params.append(path)
            clauses.append(f"({' OR '.join(alternatives)})")
        else:
            bounds = _tightest(condition.bounds)
            parts = [f"json_extract({column}, ?) {RANGE_OPERATORS[op]} ?" for op, _ in bounds]
            clauses.append(f"(json_type({column}, ?) IN ('integer', 'real') AND {' AND '.join(parts)})")
            params.append(path)
            for _, bound in bounds:
                params += [path, bound]
    return (" AND ".join(clauses) or "1"), params


def _tightest(bounds: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The bounds that imply all the others: at most one lower and one upper (each costs SQLite a parse of the
    document per row). ``x > 2 and x >= 2`` is ``x > 2``; ``x > 1 and x >= 2`` is ``x >= 2``."""
    lower: tuple[str, float] | None = None
    upper: tuple[str, float] | None = None
    for operator, bound in bounds:
        if operator in ("gt", "gte"):
            if lower is None or bound > lower[1] or (bound == lower[1] and operator == "gt"):
                lower = (operator, bound)
        elif upper is None or bound < upper[1] or (bound == upper[1] and operator == "lt"):
            upper = (operator, bound)
    return [bound for bound in (lower, upper) if bound is not None]


def _groups(values: Iterable[Scalar]) -> tuple[list[str], list[int | float], list[str]]:
    """(texts, numbers, JSON types of the booleans), each without repeats, in the order given."""
    texts: dict[str, None] = {}
    numbers: dict[int | float, None] = {}
    booleans: dict[str, None] = {}
    for value in values:
        if isinstance(value, bool):
            booleans["true" if value else "false"] = None
        elif isinstance(value, int | float):
            numbers[value] = None  # 1 and 1.0 are one key: the same number
        else:
            texts[value] = None
    return list(texts), list(numbers), list(booleans)


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
            value = kind(text)
        except ValueError:  # not a number (or an int of over 4,300 digits, which Python refuses to read)
            continue
        if isinstance(value, int) or math.isfinite(value):  # "inf" and "nan" stay text
            return value
    return text
