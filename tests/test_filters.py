"""Metadata filters: validation, the textual form, and agreement of the SQL translation with ``matches``."""

from __future__ import annotations

import json
import random
import sqlite3
from typing import Any

import pytest

from lookalike.errors import FilterError
from lookalike.index.filters import Condition, matches, normalize, parse_expressions, to_sql

# ----------------------------------------------------------------------------------------- normalize


def test_normalize_none_is_no_condition() -> None:
    assert normalize(None) == []
    assert normalize({}) == []


def test_normalize_accepts_the_three_forms() -> None:
    conditions = normalize({"label": "Dress", "colour": ["red", "blue"], "price": {"gte": 10, "lt": 50}})
    assert conditions == [
        Condition("label", "eq", ("Dress",)),
        Condition("colour", "in", ("red", "blue")),
        Condition("price", "range", bounds=(("gte", 10.0), ("lt", 50.0))),
    ]


@pytest.mark.parametrize("value", [True, False, 0, 3, -2.5, "", "Dress", "1"])
def test_normalize_scalars_are_equality_and_keep_their_type(value: Any) -> None:
    [condition] = normalize({"f": value})
    assert condition.kind == "eq"
    assert condition.values == (value,)
    assert type(condition.values[0]) is type(value)


def test_normalize_one_of_accepts_tuples_and_mixed_scalars() -> None:
    [condition] = normalize({"f": ("a", 1, True, 2.5)})
    assert condition == Condition("f", "in", ("a", 1, True, 2.5))


def test_normalize_range_accepts_every_operator() -> None:
    [condition] = normalize({"f": {"gt": 1, "gte": 2.5, "lt": 10, "lte": -1}})
    assert condition.kind == "range"
    assert dict(condition.bounds) == {"gt": 1.0, "gte": 2.5, "lt": 10.0, "lte": -1.0}


@pytest.mark.parametrize(
    "bad",
    [
        "label=Dress",  # not a mapping
        ["label", "Dress"],
        3,
        {"label": []},  # empty one-of
        {"label": [["Dress"]]},  # nested list
        {"label": ["Dress", {"gte": 1}]},
        {"label": ["Dress", None]},
        {"label": ["Dress", float("nan")]},
        {"label": None},
        {"label": {"Dress"}},  # a set is no condition
        {"label": float("nan")},
        {"price": {}},  # empty range
        {"price": {"gte": 1, "between": 3}},  # unknown operator
        {"price": {"ge": 1}},
        {"price": {"gte": "10"}},  # non-numeric bound
        {"price": {"lt": None}},
        {"price": {"gte": True}},  # bool bound
        {"price": {"lt": False}},
        {"price": {"gte": float("nan")}},  # NaN bound
        {'a"b': 1},  # bad field names
        {"": 1},
        {" label": 1},
        {"a;b": 1},
        {"$.label": 1},
        {"a'b": 1},
        {"x" * 129: 1},
        {3: 1},
    ],
)
def test_normalize_rejects_bad_filters(bad: Any) -> None:
    with pytest.raises(FilterError):
        normalize(bad)


@pytest.mark.parametrize("field", ["label", "a.b", "with space", "x-y", "_private", "0", "x" * 128])
def test_normalize_accepts_reasonable_field_names(field: str) -> None:
    assert normalize({field: 1}) == [Condition(field, "eq", (1,))]


# ----------------------------------------------------------------------------------------- parse_expressions


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        ([], {}),
        (["label=Dress"], {"label": "Dress"}),
        (["  label = Dress  "], {"label": "Dress"}),
        (["label=Dress,Skirt"], {"label": ["Dress", "Skirt"]}),
        (["label=Dress, Skirt"], {"label": ["Dress", "Skirt"]}),
        (["price>=10", "price<50"], {"price": {"gte": 10, "lt": 50}}),
        (["price>1.5", "price<=9.25"], {"price": {"gt": 1.5, "lte": 9.25}}),
        (["kids=false"], {"kids": False}),
        (["kids=True"], {"kids": True}),
        (["n=3"], {"n": 3}),
        (["n=3.5"], {"n": 3.5}),
        (["label=Dress", "price>=10", "kids=false"], {"label": "Dress", "price": {"gte": 10}, "kids": False}),
        (["sizes=1,2,x"], {"sizes": [1, 2, "x"]}),
    ],
)
def test_parse_expressions(expressions: list[str], expected: dict[str, Any]) -> None:
    parsed = parse_expressions(expressions)
    assert parsed == expected
    # Types matter: 3 must stay an int and false a bool, not 0 or "false".
    for key, value in expected.items():
        assert type(parsed[key]) is type(value)
        if isinstance(value, list):
            assert [type(v) for v in parsed[key]] == [type(v) for v in value]
    normalize(parsed)  # the result is a valid filter


def test_parse_expressions_types_survive() -> None:
    parsed = parse_expressions(["kids=false", "n=3", "label=Dress,Skirt"])
    assert parsed["kids"] is False
    assert type(parsed["n"]) is int
    assert parsed["label"] == ["Dress", "Skirt"]


def test_parse_expressions_custom_infer() -> None:
    assert parse_expressions(["sku=007"], infer=str) == {"sku": "007"}
    assert parse_expressions(["sku=007"]) == {"sku": 7}


@pytest.mark.parametrize(
    "expression",
    ["label", "=x", "price>=abc", "label=", "price>=", "price>=true", "a!=b", "", "   ", "price>=nan", "a<b<c"],
)
def test_parse_expressions_rejects_malformed(expression: str) -> None:
    with pytest.raises(FilterError):
        parse_expressions([expression])


# ----------------------------------------------------------------------------------------- matches


@pytest.mark.parametrize(
    ("metadata", "filter", "expected"),
    [
        ({"label": "Dress"}, {"label": "Dress"}, True),
        ({"label": "Dress"}, {"label": "dress"}, False),
        ({"label": "Dress"}, {"label": ["Skirt", "Dress"]}, True),
        ({"kids": True}, {"kids": True}, True),
        ({"kids": True}, {"kids": 1}, False),  # True must not match 1
        ({"kids": 1}, {"kids": True}, False),
        ({"kids": False}, {"kids": 0}, False),
        ({"n": 1}, {"n": "1"}, False),  # "1" must not match 1
        ({"n": "1"}, {"n": 1}, False),
        ({"n": 1.0}, {"n": 1}, True),  # 1 and 1.0 are the same number
        ({"n": 1}, {"n": [True, 0]}, False),
        ({"n": 0}, {"n": [True, 0]}, True),
        ({"price": 10}, {"price": {"gte": 10, "lt": 50}}, True),
        ({"price": 50}, {"price": {"gte": 10, "lt": 50}}, False),
        ({"price": 50}, {"price": {"lte": 50}}, True),
        ({"price": 10}, {"price": {"gt": 10}}, False),
        ({"price": "20"}, {"price": {"gte": 10}}, False),  # text is not a number
        ({"price": True}, {"price": {"gte": 0}}, False),  # nor is a boolean
        ({"price": None}, {"price": {"gte": 0}}, False),
        ({}, {"price": {"gte": 0}}, False),  # missing field
        ({"label": "Dress"}, {"colour": "red"}, False),
        ({"label": "Dress", "price": 20}, {"label": "Dress", "price": {"lt": 10}}, False),  # all must hold
        ({"label": "Dress", "price": 5}, {"label": "Dress", "price": {"lt": 10}}, True),
        ({"tags": ["a"]}, {"tags": "a"}, False),
        ({"x": 1}, {}, True),
    ],
)
def test_matches(metadata: dict[str, Any], filter: dict[str, Any], expected: bool) -> None:
    assert matches(metadata, normalize(filter)) is expected


# ----------------------------------------------------------------------------------------- SQL agrees with matches

FIELDS = ["label", "n", "flag", "price", "a.b", "with space", "x-y"]
VALUES: list[Any] = ["a", "b", "c", "1", "0", "true", "", "Dress", 0, 1, 2, 5, -3, 0.5, 1.0, 2.5, True, False]


def _random_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.85:
        return rng.choice(VALUES)
    if roll < 0.90:
        return rng.randint(-10, 10) / 4  # exact binary fractions: no float-parsing noise between JSON and SQLite
    return rng.choice([None, ["a", 1], {"k": 1}, [], 'ünï "quoted"'])


def _random_metadata(rng: random.Random) -> dict[str, Any]:
    return {field: _random_value(rng) for field in FIELDS if rng.random() < 0.7}


def _random_condition(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(VALUES)
    if roll < 0.65:
        return rng.sample(VALUES, rng.randint(1, 4))
    operators = rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 2))
    return {op: rng.choice([0, 1, 2, 0.5, 2.5, -1, rng.randint(-10, 10) / 4]) for op in operators}


def _random_filter(rng: random.Random) -> dict[str, Any]:
    fields = rng.sample([*FIELDS, "missing"], rng.randint(1, 3))
    return {field: _random_condition(rng) for field in fields}


def test_sql_translation_agrees_with_matches() -> None:
    rng = random.Random(1234)
    rows = [_random_metadata(rng) for _ in range(400)]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (rid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    db.executemany(
        "INSERT INTO items VALUES (?, ?)",
        [(i, json.dumps(row, ensure_ascii=False, sort_keys=True)) for i, row in enumerate(rows)],
    )
    non_trivial = 0
    for _ in range(600):
        filter = _random_filter(rng)
        conditions = normalize(filter)
        where, params = to_sql(conditions)
        from_sql = {r[0] for r in db.execute(f"SELECT rid FROM items WHERE {where}", params)}
        from_python = {i for i, row in enumerate(rows) if matches(row, conditions)}
        assert from_sql == from_python, (filter, sorted(from_sql ^ from_python)[:5])
        non_trivial += 0 < len(from_python) < len(rows)
    assert non_trivial > 100  # the random filters actually discriminate


@pytest.mark.parametrize(
    "filter",
    [
        {"flag": [True, 0]},  # json_extract turns true into 1: a mixed list must still tell them apart
        {"flag": [False, 1]},
        {"flag": [True, 5]},
        {"flag": ["1", True]},
        {"flag": [1, "true"]},
        {"flag": True},
        {"flag": 1},
        {"flag": "1"},
    ],
)
def test_sql_keeps_booleans_numbers_and_text_apart(filter: dict[str, Any]) -> None:
    rows = [{"flag": v} for v in (True, False, 1, 0, 1.0, 5, "1", "true", "0")]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (rid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, json.dumps(row)) for i, row in enumerate(rows)])
    conditions = normalize(filter)
    where, params = to_sql(conditions)
    from_sql = {r[0] for r in db.execute(f"SELECT rid FROM items WHERE {where}", params)}
    wanted = filter["flag"] if isinstance(filter["flag"], list) else [filter["flag"]]

    def same(value: Any, target: Any) -> bool:
        if isinstance(value, bool | str) or isinstance(target, bool | str):
            return type(value) is type(target) and value == target
        return value == target

    expected = {i for i, row in enumerate(rows) if any(same(row["flag"], w) for w in wanted)}
    assert from_sql == expected


def test_to_sql_without_conditions_selects_everything() -> None:
    where, params = to_sql([])
    assert params == []
    db = sqlite3.connect(":memory:")
    assert db.execute(f"SELECT 5 WHERE {where}", params).fetchall() == [(5,)]


# ----------------------------------------------------------------------------------------- bounds every engine takes


@pytest.mark.parametrize(
    ("filter", "words"),
    [
        ({"n": 2**63}, "64-bit"),  # equality beyond int64
        ({"n": -(2**63)}, "64-bit"),
        ({"n": [1, 2**64]}, "64-bit"),  # one-of
        ({"n": 10**5000}, "64-bit"),  # more digits than Python will even print
        ({"price": {"gte": 10**400}}, "finite"),  # no float value
        ({"price": {"lt": 10**5000}}, "finite"),
        ({"price": {"lt": float("inf")}}, "finite"),
        ({"price": {"gt": float("-inf"), "lt": 1}}, "finite"),
        ({"price": {"lte": float("nan")}}, "number"),
        ({"n": float("inf")}, "finite"),
        ({"n": [1.5, float("-inf")]}, "finite"),
        ({"label": "\ud800"}, "Unicode"),  # a lone surrogate
        ({"label": ["ok", "x\udfffy"]}, "Unicode"),
    ],
)
def test_normalize_refuses_what_no_engine_can_compare(filter: dict[str, Any], words: str) -> None:
    with pytest.raises(FilterError) as raised:
        normalize(filter)
    message = str(raised.value)
    assert repr(next(iter(filter))) in message  # names the field
    assert words in message
    assert len(message) < 300  # a huge value is not copied into the message


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63) + 1, 2**53 + 1, 1.7976931348623157e308, "😀 é", "a\nb"])
def test_normalize_accepts_the_edges_of_what_engines_take(value: Any) -> None:
    assert normalize({"f": value}) == [Condition("f", "eq", (value,))]
    assert normalize({"f": [value, 1]})[0].values == (value, 1)


def test_normalize_accepts_a_large_integer_range_bound_as_a_float() -> None:
    assert normalize({"f": {"lt": 10**30}}) == [Condition("f", "range", bounds=(("lt", 1e30),))]


def test_one_of_limit_message_gives_the_count() -> None:
    with pytest.raises(FilterError, match="at most 1,000 values, got 1,001"):
        normalize({"f": list(range(1001))})
    assert len(normalize({"f": list(range(1000))})[0].values) == 1000


@pytest.mark.parametrize(
    ("expression", "value"), [("label=inf", "inf"), ("label=NaN", "NaN"), ("n=-infinity", "-infinity")]
)
def test_parse_expressions_keeps_non_finite_words_as_text(expression: str, value: str) -> None:
    assert parse_expressions([expression]) == {expression.split("=")[0]: value}


def test_parse_expressions_refuses_an_infinite_bound() -> None:
    with pytest.raises(FilterError):
        parse_expressions(["price<inf"])


# ----------------------------------------------------------------------------------------- SQL cost


def _big_filter(fields: int, values: int) -> dict[str, Any]:
    return {f"f{j}": [f"v{v}" for v in range(values)] for j in range(fields)}


@pytest.mark.parametrize(
    ("make", "least"),
    [
        (lambda n: [f"v{i}" for i in range(n)], 1),  # text
        (lambda n: list(range(n)), 1),  # integers
        (lambda n: [i / 4 for i in range(n)], 1),  # reals
        (lambda n: [f"v{i}" if i % 2 else i for i in range(n)], 2),  # text and numbers
        (lambda n: [True, False, "1", *range(n - 3)], 4),  # every type
    ],
    ids=["text", "int", "real", "text+number", "all-types"],
)
def test_sql_statement_size_does_not_grow_with_the_values(make: Any, least: int) -> None:
    few = to_sql(normalize({"f": make(least)}))
    thousand = to_sql(normalize({"f": make(1000)}))
    assert thousand[0] == few[0]  # the same statement, whatever the number of values
    assert len(thousand[1]) == len(few[1]) <= 7
    assert len(thousand[0]) < 400


def test_sql_statement_grows_with_the_fields_only() -> None:
    one = to_sql(normalize(_big_filter(1, 1)))
    widest = to_sql(normalize(_big_filter(64, 1000)))
    assert widest[0] == " AND ".join([one[0]] * 64)  # field names and values are parameters, not SQL text
    assert len(widest[1]) == 64 * len(one[1])


def _table(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (rid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    db.executemany(
        "INSERT INTO items VALUES (?, ?)",
        [(i, json.dumps(row, ensure_ascii=False, sort_keys=True)) for i, row in enumerate(rows)],
    )
    return db


def _sql_answer(db: sqlite3.Connection, conditions: list[Condition]) -> set[int]:
    where, params = to_sql(conditions)
    return {r[0] for r in db.execute(f"SELECT rid FROM items WHERE {where}", params)}


def test_sql_values_are_looked_up_once_per_query() -> None:
    """The one-of test is a list subquery (a temporary index built once), not one comparison per value."""
    db = _table([{"f": 1}])
    where, params = to_sql(normalize({"f": list(range(1000))}))
    plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN SELECT rid FROM items WHERE {where}", params))
    assert "LIST SUBQUERY" in plan and "CORRELATED" not in plan, plan
    opcodes = [row[1] for row in db.execute(f"EXPLAIN SELECT rid FROM items WHERE {where}", params)]
    assert "Once" in opcodes and "OpenEphemeral" in opcodes


def test_a_one_of_list_of_exactly_max_values_answers() -> None:
    rows = [{"f": i} for i in range(0, 3000, 3)] + [{"f": f"{i}"} for i in range(100)] + [{"f": True}]
    conditions = normalize({"f": list(range(1000))})  # was "Expression tree is too large (maximum depth 1000)"
    assert _sql_answer(_table(rows), conditions) == {i for i, row in enumerate(rows) if matches(row, conditions)}
    assert len(_sql_answer(_table(rows), conditions)) == 334


def test_the_largest_filter_allowed_answers_like_matches() -> None:
    rng = random.Random(5)
    rows = [{f"f{j}": f"v{rng.randint(0, 1200)}" for j in range(64) if rng.random() < 0.97} for _ in range(300)]
    rows += [{f"f{j}": f"v{j}" for j in range(64)}]  # passes every condition
    conditions = normalize(_big_filter(64, 1000))
    answer = _sql_answer(_table(rows), conditions)
    assert answer == {i for i, row in enumerate(rows) if matches(row, conditions)}
    assert len(rows) - 1 in answer


EDGE_VALUES: list[Any] = [
    True, False, 0, 1, -1, 1.0, 0.5, -0.0, 2, 2.0, 2**53, 2**53 + 1, 2**63 - 1, -(2**63) + 1, 1e300,
    "1", "1.0", "true", "false", "0", "", " ", "a", "A", "é", "😀", 'qu"ote', "back\\slash", "new\nline", "[1]",
]  # fmt: skip
ODD_METADATA: list[Any] = [None, [1], ["a"], {"a": 1}, [], {}]


def test_sql_agrees_with_matches_on_large_mixed_lists() -> None:
    """1 vs 1.0 vs "1" vs true, 2**53 + 1 vs 2**53, huge and tiny numbers, in lists of up to 1,000 values."""
    rng = random.Random(99)
    pool = EDGE_VALUES + [f"w{i}" for i in range(1500)] + list(range(-500, 1500)) + [i / 8 for i in range(800)]
    rows = [{"f": value} for value in EDGE_VALUES + ODD_METADATA]
    rows += [{"f": rng.choice(pool), "g": rng.choice(pool)} for _ in range(600)]
    rows += [{}, {"g": 1}]
    db = _table(rows)
    non_trivial = 0
    for _ in range(150):
        filter: dict[str, Any] = {}
        for field in rng.sample(["f", "g"], rng.randint(1, 2)):
            roll = rng.random()
            if roll < 0.2:
                filter[field] = rng.choice(EDGE_VALUES)
            elif roll < 0.85:
                filter[field] = rng.sample(pool, rng.choice([1, 2, 5, 50, 400, 1000]))
            else:
                filter[field] = {rng.choice(["gt", "gte"]): rng.choice([-1, 0, 0.5, 2**53]), "lte": 1e300}
        conditions = normalize(filter)
        expected = {i for i, row in enumerate(rows) if matches(row, conditions)}
        assert _sql_answer(db, conditions) == expected, filter
        non_trivial += 0 < len(expected) < len(rows)
    assert non_trivial > 50


@pytest.mark.parametrize("value", EDGE_VALUES)
def test_sql_agrees_with_matches_on_each_edge_value(value: Any) -> None:
    rows = [{"f": v} for v in EDGE_VALUES + ODD_METADATA]
    db = _table(rows)
    for filter in ({"f": value}, {"f": [value, "zz"]}, {"f": [value, 12345]}, {"f": [value, False]}):
        conditions = normalize(filter)
        assert _sql_answer(db, conditions) == {i for i, row in enumerate(rows) if matches(row, conditions)}, filter


@pytest.mark.parametrize(
    "bounds",
    [
        {"gt": 1, "gte": 1},
        {"gt": 1, "gte": 2},
        {"gt": 2, "gte": 1},
        {"lt": 1, "lte": 1},
        {"lt": 1, "lte": 0.5},
        {"lt": 0.5, "lte": 1},
        {"gt": 0, "gte": 0, "lt": 2, "lte": 2},
        {"gte": 2, "lte": 1},
        {"gte": 2**53, "lt": 2**63},
    ],
)
def test_sql_ranges_with_several_bounds_agree_with_matches(bounds: dict[str, Any]) -> None:
    rows = [{"f": v} for v in [0, 0.5, 1, 1.0, 1.5, 2, 2.5, 3, 2**53, 2**53 + 1, 2**63 - 1, True, "1", None]]
    conditions = normalize({"f": bounds})
    assert _sql_answer(_table(rows), conditions) == {i for i, row in enumerate(rows) if matches(row, conditions)}
    where, _ = to_sql(conditions)
    assert where.count("json_extract") <= 2  # a lower and an upper bound at most: one parse of the row each
