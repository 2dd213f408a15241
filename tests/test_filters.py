"""Filter expressions: the total order across kinds, checked arithmetic, booleans, the int/float rule."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zapnb
from zapnb import v
from zapnb.errors import FilterExpressionError
from zapnb.filters import FilterBuilder, compile_filter
from zapnb.ranges import field_validators
from zapnb.values import MISSING, compare, values_equal

q = FilterBuilder()
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def run(expr: Any, doc: dict[str, Any] | None = None, validators: Any = None) -> bool:
    return compile_filter(expr, validators)(doc or {})


def value_of(expr: Any, doc: dict[str, Any] | None = None) -> Any:
    """The value of an arithmetic expression, read back through an equality with itself."""
    from zapnb.filters import _closure

    return _closure(expr)(doc or {})


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.binary(max_size=3),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=5,
)


# --- comparisons --------------------------------------------------------------------------------------------


@given(a=st.one_of(st.just(MISSING), VALUES), b=VALUES)
def test_comparisons_follow_the_total_order_and_never_raise(a: Any, b: Any) -> None:
    doc = {} if a is MISSING else {"a": a}
    order = compare(a, b)
    field = q.field("a")
    assert run(q.eq(field, b), doc) == (order == 0)
    assert run(q.neq(field, b), doc) == (order != 0)
    assert run(q.lt(field, b), doc) == (order < 0)
    assert run(q.lte(field, b), doc) == (order <= 0)
    assert run(q.gt(field, b), doc) == (order > 0)
    assert run(q.gte(b, field), doc) == (order <= 0)


def test_kinds_differ_as_zapnb_says() -> None:
    assert not run(q.eq(1, 1.0))
    assert run(q.lt(1, 1.0))
    assert run(q.lt(2**62, -math.inf))
    assert not run(q.eq(-0.0, 0.0))
    assert run(q.lt(-0.0, 0.0))
    assert run(q.eq(math.nan, math.nan))
    assert not run(q.eq(True, 1))
    assert run(q.lt(None, 0))
    assert run(q.lt(q.field("missing"), None))
    assert run(q.lt("z", b""))
    assert run(q.lt([1], [1, 0]))
    assert run(q.eq({"b": 1, "a": 2}, {"a": 2, "b": 1}))


def test_fields_reach_into_objects_and_are_missing_otherwise() -> None:
    doc = {"a": {"b": {"c": 3}}, "s": "text"}
    assert run(q.eq(q.field("a.b.c"), 3), doc)
    assert run(q.eq(q.field("a.x"), MISSING), doc)
    assert run(q.eq(q.field("s.length"), MISSING), doc)
    assert not run(q.eq(q.field("a.x"), None), doc)


# --- booleans -----------------------------------------------------------------------------------------------


def test_and_or_not_take_booleans_and_stop_early() -> None:
    assert run(q.and_())
    assert not run(q.or_())
    assert run(q.or_(q.eq(1, 1), q.field("nope")))  # the second operand is never evaluated
    assert not run(q.and_(q.eq(1, 2), q.field("nope")))
    assert run(q.not_(q.eq(1, 2)))
    with pytest.raises(FilterExpressionError, match=r"and_\(\) needs a boolean, but got 1 \(type int64\)"):
        run(q.and_(q.eq(1, 1), 1))
    with pytest.raises(FilterExpressionError, match=r"not_\(\) needs a boolean"):
        run(q.not_(q.field("x")), {"x": "yes"})


def test_a_filter_must_be_a_boolean() -> None:
    assert run(q.field("done"), {"done": True})
    with pytest.raises(FilterExpressionError, match=r"filter\(\) needs a boolean, but got undefined") as info:
        run(q.field("done"), {})
    assert info.value.operation == "filter"
    assert info.value.values == (MISSING,)


# --- arithmetic ---------------------------------------------------------------------------------------------


def test_arithmetic_on_two_ints_or_two_floats() -> None:
    assert value_of(q.add(2, 3)) == 5
    assert type(value_of(q.add(2, 3))) is int
    assert value_of(q.sub(0.5, 2.0)) == -1.5
    assert value_of(q.mul(q.field("n"), 4), {"n": 3}) == 12
    assert value_of(q.neg(5)) == -5
    assert value_of(q.neg(-0.0)) == 0.0
    assert value_of(q.div(-7, 2)) == -3  # truncated toward zero
    assert value_of(q.mod(-7, 2)) == -1  # the sign of the dividend
    assert value_of(q.mod(7, -2)) == 1
    assert value_of(q.div(7.0, 2.0)) == 3.5
    assert value_of(q.mod(-7.5, 2.0)) == -1.5


def test_float_arithmetic_is_ieee() -> None:
    assert value_of(q.div(1.0, 0.0)) == math.inf
    assert value_of(q.div(1.0, -0.0)) == -math.inf
    assert math.isnan(value_of(q.div(0.0, 0.0)))
    assert math.isnan(value_of(q.mod(1.0, 0.0)))
    assert math.isnan(value_of(q.mod(math.inf, 2.0)))
    assert value_of(q.mod(1.5, math.inf)) == 1.5
    assert value_of(q.mul(1e308, 10.0)) == math.inf


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (q.add(1, 1.5), r"Cannot add 1 \(type int64\) and 1.5 \(type float64\): arithmetic takes two int64"),
        (q.sub("a", 1), r"Cannot subtract \"a\" \(type string\) and 1 \(type int64\)"),
        (q.mul(True, 2), r"Cannot multiply true \(type boolean\)"),
        (q.div(q.field("n"), 2), r"Cannot divide undefined \(type missing\) and 2"),
        (q.mod(None, 2), r"Cannot mod null \(type null\)"),
        (q.neg("x"), r"Cannot negate \"x\" \(type string\)"),
    ],
)
def test_arithmetic_on_mixed_kinds_or_non_numbers_raises(expr: Any, message: str) -> None:
    with pytest.raises(FilterExpressionError, match=message):
        run(q.eq(expr, 0))


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        (q.add(INT64_MAX, 1), "outside int64"),
        (q.sub(INT64_MIN, 1), "outside int64"),
        (q.mul(2**32, 2**32), "outside int64"),
        (q.neg(INT64_MIN), "outside int64"),
        (q.div(INT64_MIN, -1), "outside int64"),
        (q.mod(INT64_MIN, -1), "outside int64"),
        (q.div(1, 0), "division by zero"),
        (q.mod(1, 0), "division by zero"),
    ],
)
def test_int64_arithmetic_is_checked(expr: Any, why: str) -> None:
    with pytest.raises(FilterExpressionError, match=why):
        run(q.eq(expr, 0))


@given(a=st.integers(INT64_MIN, INT64_MAX), b=st.integers(INT64_MIN, INT64_MAX).filter(bool))
def test_int64_division_matches_truncation(a: int, b: int) -> None:
    if a == INT64_MIN and b == -1:
        return
    quotient, remainder = value_of(q.div(a, b)), value_of(q.mod(a, b))
    assert quotient * b + remainder == a
    assert abs(remainder) < abs(b)
    assert remainder == 0 or (remainder < 0) == (a < 0)


# --- building -----------------------------------------------------------------------------------------------


def test_expressions_print_as_their_source() -> None:
    expr = q.and_(q.eq(q.field("a.b"), 1.0), q.or_(q.not_(q.lt(q.field("c"), b"x")), q.gte(q.neg(2), None)))
    assert repr(expr) == (
        'and_(eq(field("a.b"), 1.0), or_(not_(lt(field("c"), {"$bytes":"eA=="})), gte(neg(2), null)))'
    )
    assert repr(q.eq(q.field("x"), MISSING)) == 'eq(field("x"), zapnb.MISSING)'


def test_arguments_must_be_expressions_or_values() -> None:
    with pytest.raises(FilterExpressionError, match=r"q.eq\(...\) takes expressions .* not set"):
        q.eq(q.field("a"), {1, 2})
    with pytest.raises(FilterExpressionError, match="field path"):
        q.field("")


# --- the int/float rule -------------------------------------------------------------------------------------


def test_int_literals_beside_float_fields_are_floats() -> None:
    validators = field_validators(zapnb.define_table({"n": v.number(), "a": v.any(), "i": v.int64()}))
    assert run(q.eq(q.field("n"), 1), {"n": 1.0}, validators)
    assert run(q.eq(q.add(q.field("n"), 1), 3), {"n": 2.0}, validators)
    assert run(q.lt(q.field("_creationTime"), 2), {"_creationTime": 1.5}, validators)
    assert not run(q.eq(q.field("a"), 1), {"a": 1.0}, validators)
    assert run(q.eq(q.field("i"), 1), {"i": 1}, validators)
    assert not run(q.eq(q.field("n"), 1), {"n": 1.0})  # no schema: 1 and 1.0 differ
    with pytest.raises(FilterExpressionError, match="Cannot add"):
        run(q.eq(q.add(q.field("i"), 1.5), 0.0), {"i": 1}, validators)


def test_a_nan_from_arithmetic_compares_in_the_total_order() -> None:
    nan = value_of(q.div(0.0, 0.0))
    negative = struct.pack(">d", nan)[0] & 0x80
    assert run(q.eq(q.div(0.0, 0.0), nan))
    assert values_equal(nan, -math.nan if negative else math.nan)


# --- through a database -------------------------------------------------------------------------------------


def test_filters_in_queries(tmp_path: Path) -> None:
    schema = zapnb.define_schema({"t": zapnb.define_table({"n": v.number(), "tags": v.array(v.string())})})
    with zapnb.connect(tmp_path) as db:
        db.deploy(schema, progress=False)
        db.insert_many("t", [{"n": n, "tags": ["even" if n % 2 == 0 else "odd"]} for n in range(10)])
        odd_big = (
            db.query("t")
            .filter(lambda f: f.eq(f.field("tags"), ["odd"]))
            .filter(lambda f: f.gt(f.field("n"), 4))
        )
        assert odd_big.collect()["n"].to_list() == [5.0, 7.0, 9.0]
        assert odd_big.count() == 3
        assert db.query("t").filter(lambda f: f.eq(f.mod(f.field("n"), 3), 0)).count() == 4
        with pytest.raises(FilterExpressionError, match="Cannot add"):
            db.query("t").filter(lambda f: f.eq(f.add(f.field("n"), "x"), 0)).collect()
