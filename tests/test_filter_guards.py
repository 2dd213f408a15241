"""Filters that could silently answer wrong: Python operators on expressions, field names that Polars reads as
patterns, and ``int`` literals against fields that store floats."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest

import zapnb
from zapnb import v
from zapnb.errors import FilterExpressionError, InvalidQueryError
from zapnb.filters import Expr, FilterBuilder
from zapnb.ranges import field_validators
from zapnb.schema import Schema
from zapnb.vectorfilter import vector_filter

Open = Callable[[Schema], zapnb.Database]
q = FilterBuilder()


def _counts(query: zapnb.Query) -> tuple[int, int, int]:
    """What ``count()``, ``collect()`` and iteration (documents one by one) find."""
    return query.count(), query.collect().height, sum(1 for _ in query)


# --- Python operators ---------------------------------------------------------------------------------------


@pytest.fixture
def numbers(tmp_path: Any) -> Any:
    with zapnb.connect(tmp_path / "data") as db:
        db.insert_many("s", [{"i": 7}, {"i": 8}])
        yield db.query("s")


@pytest.mark.parametrize(
    "predicate",
    [
        lambda f: f.eq(f.field("i"), 8) and f.eq(f.field("i"), 7),
        lambda f: f.eq(f.field("i"), 8) or f.eq(f.field("i"), 7),
        lambda f: not f.eq(f.field("i"), 7),
        lambda f: f.eq(f.field("i"), 7) if f.field("i") else f.eq(f.field("i"), 8),
    ],
    ids=["and", "or", "not", "if"],
)
def test_truth_tests_on_expressions_raise(numbers: zapnb.Query, predicate: Callable[[Any], Any]) -> None:
    with pytest.raises(FilterExpressionError, match=r"no Python truth value.*q\.and_") as info:
        numbers.filter(predicate)
    assert info.value.operation == "bool"


@pytest.mark.parametrize(
    ("compare", "method"),
    [
        (operator.eq, "eq"),
        (operator.ne, "neq"),
        (operator.lt, "lt"),
        (operator.le, "lte"),
        (operator.gt, "gt"),
        (operator.ge, "gte"),
    ],
)
def test_python_comparisons_point_to_the_builder(
    numbers: zapnb.Query, compare: Callable[[Any, Any], Any], method: str
) -> None:
    with pytest.raises(FilterExpressionError, match=rf"field\(\"i\"\) \S+ 7 itself.*q\.{method}\(") as info:
        numbers.filter(lambda f: compare(f.field("i"), 7))
    assert info.value.operation == method
    with pytest.raises(FilterExpressionError):  # the literal on the left: Python asks the expression
        compare(7, q.field("i"))
    with pytest.raises(FilterExpressionError, match=r'eq\(field\("a"\), 1\) \S+ field\("b"\)'):
        compare(q.eq(q.field("a"), 1), q.field("b"))


@pytest.mark.parametrize(
    ("predicate", "shown"),
    [
        (lambda f: f.field("i") is None, "bool False (Python decided it"),
        (lambda f: f.field("i") is not None, "bool True (Python decided it"),
        (lambda f: "yes", "str 'yes', not"),
        (lambda f: 1, "int 1, not"),
    ],
)
def test_a_filter_function_must_return_an_expression(
    numbers: zapnb.Query, predicate: Callable[[Any], Any], shown: str
) -> None:
    with pytest.raises(InvalidQueryError, match="return an expression") as info:
        numbers.filter(predicate)
    assert f"returned {shown}" in str(info.value)
    assert info.value.method == "filter"


def test_expressions_still_work_as_values(numbers: zapnb.Query) -> None:
    expr = q.and_(True, q.eq(q.field("i"), 7))
    assert len({expr, expr, q.field("i")}) == 2  # hashable, by identity
    assert repr(expr) == 'and_(true, eq(field("i"), 7))'
    assert _counts(numbers.filter(lambda f: expr)) == (1, 1, 1)
    assert _counts(numbers.filter(lambda f: f.or_())) == (0, 0, 0)
    # a cursor names its filters by their text: an equal query built again continues it
    page = numbers.filter(lambda f: f.gte(f.field("i"), 7)).paginate(num_items=1)
    rest = numbers.filter(lambda f: f.gte(f.field("i"), 7)).paginate(num_items=5, cursor=page.continue_cursor)
    assert page.page["i"].to_list() + rest.page["i"].to_list() == [7, 8]


# --- field names that Polars reads as patterns --------------------------------------------------------------


@pytest.mark.parametrize("name", ["*", "^a$", "a*", "^b", "b$"])
def test_filters_read_the_column_named_exactly(deployed: Open, name: str) -> None:
    table = zapnb.define_table({name: v.string(), "a": v.string(), "b": v.string(), "n": v.int64()})
    db = deployed(zapnb.define_schema({"t": table}))
    db.insert_many("t", [{name: "p", "a": "q", "b": "q", "n": 1}, {name: "q", "a": "p", "b": "p", "n": 2}])
    query = db.query("t")
    validators_of = field_validators(table)
    builds: list[Callable[[FilterBuilder], Expr]] = [
        lambda f: f.eq(f.field(name), "p"),
        lambda f: f.lt(f.field(name), "q"),
    ]
    for build in builds:
        assert vector_filter(build(q), validators_of) is not None  # the column path answers
        assert _counts(query.filter(build)) == (1, 1, 1)
    both = query.filter(lambda f: f.and_(f.neq(f.field(name), "p"), f.eq(f.field("n"), 2)))
    assert _counts(both) == (1, 1, 1)


def test_a_dot_names_a_path_not_a_column() -> None:
    validators_of = field_validators(zapnb.define_table({".": v.string()}))
    assert vector_filter(q.eq(q.field("."), "p"), validators_of) is None  # documents answer, as in Convex


# --- int literals against fields that store floats ----------------------------------------------------------


NUMBERS = zapnb.define_table(
    {
        "r": v.record(v.string(), v.number()),
        "rr": v.optional(v.record(v.string(), v.object({"x": v.float64()}))),
        "ns": v.union(v.number(), v.string()),
        "ni": v.optional(v.union(v.number(), v.int64())),
        "a": v.optional(v.any()),
    }
).index("by_ns", ["ns"])


@pytest.fixture
def stored(deployed: Open) -> zapnb.Database:
    db = deployed(zapnb.define_schema({"t": NUMBERS}))
    db.insert("t", {"r": {"k": 5}, "rr": {"k": {"x": 5}}, "ns": 5, "ni": 5, "a": 5.0})
    return db


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("r.k", 5.0),  # the values of a record of numbers
        ("rr.k.x", 5.0),  # a field of an object in a record
        ("ns", 5.0),  # a union whose only numeric member is v.number()
        ("a", 5.0),  # inserted as 5.0: under v.any() an int would stay an int64
    ],
)
def test_what_each_field_stores(stored: zapnb.Database, path: str, found: float) -> None:
    doc = stored.query("t").first()
    assert doc is not None
    value: Any = doc
    for part in path.split("."):
        value = value[part]
    assert type(value) is float
    assert value == found


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("r.k", 1),
        ("rr.k.x", 1),
        ("ns", 1),
        ("ni", 0),  # a union with v.int64() keeps an int an int64
        ("a", 0),  # so does v.any()
    ],
)
def test_an_int_is_taken_as_the_float_the_field_stores(
    stored: zapnb.Database, path: str, matches: int
) -> None:
    query = stored.query("t")
    assert _counts(query.filter(lambda f: f.eq(f.field(path), 5))) == (matches,) * 3
    assert _counts(query.filter(lambda f: f.lt(f.field(path), 6))) == (matches,) * 3  # floats sort after ints
    assert _counts(query.filter(lambda f: f.eq(f.field(path), 5.0))) == (1, 1, 1)


def test_an_index_range_takes_the_same_rule(stored: zapnb.Database) -> None:
    assert stored.query("t").with_index("by_ns", lambda r: r.eq("ns", 5)).count() == 1


@pytest.mark.parametrize("path", ["r.k", "n"])
def test_without_a_schema_ints_and_floats_differ(tmp_path: Any, path: str) -> None:
    with zapnb.connect(tmp_path / "data") as db:
        db.insert("t", {"r": {"k": 5.0}, "n": 5.0})
        query = db.query("t")
        assert _counts(query.filter(lambda f: f.eq(f.field(path), 5))) == (0, 0, 0)
        assert _counts(query.filter(lambda f: f.eq(f.field(path), 5.0))) == (1, 1, 1)
