"""Filters as Milvus boolean expressions over the JSON metadata field, and safe string literals."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from lookalike.errors import FilterError, IndexError_
from lookalike.index import filters

_INT64 = (filters.INT64_MIN, filters.INT64_MAX)


def to_expression(conditions: Iterable[filters.Condition], column: str = "metadata") -> str | None:
    """A Milvus boolean expression equivalent to ``filters.matches``; "" for no condition, None when no item can
    match (an infinite bound, or a value no JSON document holds).

    Milvus 2.3 compares JSON values by type, as ``matches`` does: ``== 1`` matches 1 and 1.0 but neither true
    nor "1"; ``== true`` matches only true; ``== "1"`` only the string; ranges only numbers (never booleans or
    strings); a missing field matches nothing. A one-of list mixing types is split into one ``in`` per type
    (Milvus refuses a mixed list), so the expression grows linearly with the filter.

    The fields' clauses are combined in pairs, ``((a and b) and (c and d))``: Milvus 2.3 nests a plain chain
    ``a and b and c ...`` one level per clause and fails past 49 (measured on 2.3.5: "unsupported expr proto
    node"); paired, the 64 fields a filter may test nest 6 levels deep.
    """
    clauses = []
    for condition in conditions:
        path = f"{column}[{_quote(condition.field)}]"
        if condition.kind in ("eq", "in"):
            groups: dict[str, list[str]] = {}
            for value in condition.values:
                literal = _literal(value)
                if literal is not None:
                    groups.setdefault(_type_group(value), []).append(literal)
            if not groups:
                return None
            alternatives = [
                f"{path} == {literals[0]}" if len(literals) == 1 else f"{path} in [{', '.join(literals)}]"
                for literals in groups.values()
            ]
            clauses.append("(" + " or ".join(alternatives) + ")")
        else:
            parts = []
            for operator, bound in condition.bounds:
                if math.isinf(bound):
                    if (bound > 0) == (operator in ("gt", "gte")):
                        return None  # above +inf or below -inf: nothing
                    continue  # below +inf or above -inf: any number
                parts.append(f"{path} {filters.RANGE_OPERATORS[operator]} {_float(bound)}")
            if not parts:  # only infinite bounds that every number meets: "is a number"
                parts = [f"({path} >= 0 or {path} < 0)"]
            clauses.append("(" + " and ".join(parts) + ")")
    while len(clauses) > 2:
        pairs = [clauses[i : i + 2] for i in range(0, len(clauses), 2)]
        clauses = [f"({pair[0]} and {pair[1]})" if len(pair) == 2 else pair[0] for pair in pairs]
    return " and ".join(clauses)


def _literal(value: filters.Scalar) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return str(value)
        return _float(float(value))
    if isinstance(value, float):
        return None if math.isinf(value) else _float(value)  # JSON holds no infinity
    return _quote(value, FilterError)


def _type_group(value: filters.Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return "int"
    if isinstance(value, int | float):
        return "float"
    return "str"


def _float(value: float) -> str:
    text = repr(float(value))
    return text if ("." in text or "e" in text) else text + ".0"


def _quote(text: str, error: type[Exception] = IndexError_) -> str:
    """A double-quoted Milvus string literal: backslash and quote escaped, anything not printable ASCII as a
    \\u or \\U escape, so no value can end the literal or change the expression."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif 0xD800 <= code <= 0xDFFF:
            raise error(f"{text[:40]!r} is not valid Unicode (a lone surrogate)")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _id_in(ids: Sequence[str]) -> str:
    return f"item_id in [{', '.join(_quote(i) for i in ids)}]"
