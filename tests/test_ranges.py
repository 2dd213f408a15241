"""Index ranges: the eq-then-bounds rule, its errors, the keys of a range, null vs missing, int/float."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zapnb
from zapnb import v
from zapnb.errors import IndexNotFoundError, IndexStagedError, InvalidIndexRangeError, InvalidQueryError
from zapnb.index import IndexSpec
from zapnb.keys import encode_key
from zapnb.ranges import IndexRangeBuilder, coerce_value, compile_range, literal_coercer
from zapnb.schema import Schema
from zapnb.values import MISSING, compare, values_equal

AB = IndexSpec("by_a_b", ("a", "b"))


def q() -> IndexRangeBuilder:
    return IndexRangeBuilder()


def range_error(builder: IndexRangeBuilder, spec: IndexSpec = AB) -> InvalidIndexRangeError:
    with pytest.raises(InvalidIndexRangeError) as info:
        compile_range("items", spec, builder)
    return info.value


# --- the rule and its messages ------------------------------------------------------------------------------


def test_fields_out_of_order_name_the_index_fields_query_fields_and_first_wrong_field() -> None:
    err = range_error(q().eq("b", 1))
    assert str(err).startswith(
        "Tried to query index items.by_a_b but the query didn't use the index fields in order.\n"
        'Index fields: ["a", "b", "_creationTime"]\n'
        'Query fields: ["b"]\n'
        'First incorrect field: "b"\n'
    )
    assert (err.reason, err.field, err.query_fields) == ("InvalidIndexRange", "b", ("b",))
    assert err.index == "items.by_a_b"
    assert err.index_fields == ("a", "b", "_creationTime", "_id")
    assert "eq() on the first ones" in str(err)  # says what to do


def test_a_bound_before_an_equality_is_out_of_order() -> None:
    err = range_error(q().gt("a", 1).eq("b", 2))
    assert err.reason == "InvalidIndexRange"
    assert err.query_fields == ("b", "a")
    assert 'First incorrect field: "b"' in str(err)


def test_skipping_a_field_is_out_of_order() -> None:
    err = range_error(q().eq("a", 1).eq("_creationTime", 2.0))
    assert 'Query fields: ["a", "_creationTime"]' in str(err)
    assert 'First incorrect field: "_creationTime"' in str(err)


def test_a_field_outside_the_index() -> None:
    err = range_error(q().eq("wrong", 1))
    assert str(err).startswith(
        'The index range included a comparison with "wrong", but items.by_a_b with fields '
        '["a", "b", "_creationTime"] doesn\'t index this field.'
    )
    assert (err.reason, err.field) == ("FieldNotInIndex", "wrong")


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (q().eq("a", 1).eq("a", 2), 'Already defined equality bound in index range. Can\'t add "a" == 2.'),
        (q().gt("a", 1).gte("a", 2), 'Already defined lower bound in index range. Can\'t add "a" >= 2.'),
        (q().lt("a", 1).lte("a", 2), 'Already defined upper bound in index range. Can\'t add "a" <= 2.'),
        (q().eq("a", 1).gt("a", 0), 'Already defined inequality bound in index range. Can\'t add "a" == 1.'),
    ],
)
def test_a_second_bound_of_one_kind(builder: IndexRangeBuilder, expected: str) -> None:
    err = range_error(builder)
    assert str(err).startswith(expected)
    assert (err.reason, err.field) == ("AlreadyDefinedBound", "a")


def test_bounds_on_two_fields() -> None:
    err = range_error(q().eq("a", 1).gt("b", 1).lt("_creationTime", 5))
    assert "This query against index items.by_a_b attempted to set a range bound on both " in str(err)
    assert '"b" and "_creationTime"' in str(err)
    assert (err.reason, err.field) == ("BoundsOnMultipleFields", "_creationTime")


def test_equalities_may_come_in_any_order_and_creation_time_and_id_follow_the_fields() -> None:
    one = compile_range("items", AB, q().eq("b", 2).eq("a", 1))
    other = compile_range("items", AB, q().eq("a", 1).eq("b", 2))
    assert (one.lo, one.hi) == (other.lo, other.hi)
    assert one.equalities == (("a", 1), ("b", 2))
    tail = compile_range("items", AB, q().eq("a", 1).eq("b", 2).eq("_creationTime", 3.0).gt("_id", "x"))
    assert tail.field == "_id"
    assert tail.contains(encode_key([1, 2, 3.0, "y"]))
    assert not tail.contains(encode_key([1, 2, 3.0, "x"]))


def test_system_indexes_take_their_own_fields() -> None:
    by_id = compile_range("items", IndexSpec.by_id(), q().eq("_id", "abc"))
    assert by_id.contains(encode_key(["abc"]))
    assert str(range_error(q().eq("_creationTime", 1.0), IndexSpec.by_id())).startswith(
        'The index range included a comparison with "_creationTime", but items.by_id with fields ["_id"]'
    )
    by_time = compile_range("items", IndexSpec.by_creation_time(), q().gte("_creationTime", 2.0))
    assert by_time.contains(encode_key([2.0, "a"]))
    assert not by_time.contains(encode_key([1.5, "a"]))


def test_a_builder_needs_field_names() -> None:
    with pytest.raises(InvalidQueryError, match="takes a field name"):
        q().eq(3, 1)  # type: ignore[arg-type]


def test_describe_shows_the_range_as_compared() -> None:
    keys = compile_range("items", AB, q().lt("b", 9).eq("a", 1).gte("b", 2), literal_coercer(None))
    assert keys.describe() == 'q.eq("a", 1).gte("b", 2).lt("b", 9)'
    assert compile_range("items", AB, q()).describe() == "all"
    assert compile_range("items", AB, q()).is_full


# --- the keys of a range ------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([-1.5, -0.0, 0.0, 1.0, 2.5, math.inf, -math.inf, math.nan]),
    st.sampled_from(["", "a", "b", "ab"]),
    st.sampled_from([b"", b"\x00", b"a"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.sampled_from("xy"), SCALARS))
FIELD_VALUES = st.one_of(st.just(MISSING), VALUES)
OPS = st.sampled_from(["gt", "gte", "lt", "lte"])


def _passes(value: Any, op: str, bound: Any) -> bool:
    order = compare(value, bound)
    return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[op]


@given(
    a=FIELD_VALUES,
    b=FIELD_VALUES,
    eq_a=st.one_of(st.none(), FIELD_VALUES),
    bounds=st.lists(st.tuples(OPS, VALUES), max_size=2, unique_by=lambda t: t[0] in ("lt", "lte")),
)
def test_a_range_holds_exactly_the_keys_whose_values_pass_it(
    a: Any, b: Any, eq_a: Any, bounds: list[tuple[str, Any]]
) -> None:
    builder = q()
    if eq_a is not None:
        builder = builder.eq("a", MISSING if eq_a is MISSING else eq_a)
    field = "b" if eq_a is not None else "a"
    for op, bound in bounds:
        builder = getattr(builder, op)(field, bound)
    keys = compile_range("items", AB, builder)
    expected = eq_a is None or values_equal(a, eq_a)
    bounded = b if eq_a is not None else a
    expected = expected and all(_passes(bounded, op, bound) for op, bound in bounds)
    assert keys.contains(encode_key([a, b, 1.5, "jx73xh1f86gz7s9zgchp6wzbed7ec7aj"])) == expected


def test_open_bounds_cover_every_kind_on_their_side() -> None:
    kinds = [MISSING, None, -5, 7, -1.0, 2.0, False, True, "s", b"b", [1], {"k": 1}]
    above = compile_range("items", AB, q().gt("a", 5))
    below = compile_range("items", AB, q().lte("a", 5))
    inside = [x for x in kinds if above.contains(encode_key([x, MISSING, 1.0, "i"]))]
    outside = [x for x in kinds if below.contains(encode_key([x, MISSING, 1.0, "i"]))]
    assert inside == [7, -1.0, 2.0, False, True, "s", b"b", [1], {"k": 1}]
    assert outside == [MISSING, None, -5]


# --- the int/float rule -------------------------------------------------------------------------------------


def test_ints_become_floats_only_against_float_only_validators() -> None:
    assert coerce_value(1, [v.number()]) == 1.0
    assert type(coerce_value(1, [v.number()])) is float
    assert type(coerce_value(1, [v.union(v.number(), v.null())])) is float
    assert type(coerce_value(1, [v.union(v.number(), v.int64())])) is int
    assert type(coerce_value(1, [v.any()])) is int
    assert type(coerce_value(1, [])) is int
    assert type(coerce_value(True, [v.number()])) is bool
    assert coerce_value({"n": [1]}, [v.object({"n": v.array(v.float64())})]) == {"n": [1.0]}
    assert coerce_value({"k": 2}, [v.record(v.string(), v.number())]) == {"k": 2.0}


# --- through a database -------------------------------------------------------------------------------------

SCHEMA = zapnb.define_schema(
    {
        "items": zapnb.define_table(
            {"n": v.optional(v.number()), "x": v.optional(v.any()), "tag": v.optional(v.string())}
        )
        .index("by_n", ["n"])
        .index("by_x", ["x"])
        .index("by_tag", ["tag"], staged=True),
    }
)


@pytest.fixture
def db(deployed: Callable[[Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(SCHEMA)


def _xs(frame_or_docs: Any) -> list[Any]:
    return [doc.get("x", MISSING) for doc in frame_or_docs]


def test_eq_none_matches_null_and_missing_matches_absent_fields(db: zapnb.Database) -> None:
    db.insert_many("items", [{"x": None}, {}, {"x": 0}, {"x": "s"}])
    null = db.query("items").with_index("by_x", lambda r: r.eq("x", None))
    absent = db.query("items").with_index("by_x", lambda r: r.eq("x", zapnb.MISSING))
    assert _xs(null) == [None]
    assert _xs(absent) == [MISSING]
    assert null.count() == 1
    assert absent.count() == 1


def test_against_a_number_field_an_int_is_a_float(db: zapnb.Database) -> None:
    db.insert_many("items", [{"n": 1}, {"n": 2.5}])
    found = db.query("items").with_index("by_n", lambda r: r.eq("n", 1)).collect()
    assert found["n"].to_list() == [1.0]
    assert db.query("items").with_index("by_n", lambda r: r.gt("n", 1)).collect()["n"].to_list() == [2.5]


def test_against_any_or_no_schema_an_int_stays_an_int64(db: zapnb.Database) -> None:
    db.insert_many("items", [{"x": 1}, {"x": 1.0}])
    assert _xs(db.query("items").with_index("by_x", lambda r: r.eq("x", 1))) == [1]
    assert _xs(db.query("items").with_index("by_x", lambda r: r.eq("x", 1.0))) == [1.0]
    db.insert_many("loose", [{"x": 1}, {"x": 1.0}])
    loose = db.query("loose").filter(lambda f: f.eq(f.field("x"), 1))
    assert [type(doc["x"]) for doc in loose] == [int]


def test_every_kind_sorts_in_the_total_order_in_an_index(db: zapnb.Database) -> None:
    values = [{"k": 1}, [1], b"b", "s", True, False, 2.0, -1.0, 7, -5, None]
    db.insert_many("items", [{"x": value} for value in values] + [{}])
    got = _xs(db.query("items").with_index("by_x"))
    expected = sorted([*values, MISSING], key=functools.cmp_to_key(compare))
    assert [type(x) for x in got] == [type(x) for x in expected]
    assert got == expected
    above = _xs(db.query("items").with_index("by_x", lambda r: r.gt("x", 5)))
    assert above == [7, -1.0, 2.0, False, True, "s", b"b", [1], {"k": 1}]


def test_unknown_and_staged_indexes(db: zapnb.Database) -> None:
    with pytest.raises(IndexNotFoundError) as info:
        db.query("items").with_index("by_y")
    assert str(info.value) == "Index items.by_y not found."
    assert info.value.available == ("by_creation_time", "by_id", "by_n", "by_tag", "by_x")
    with pytest.raises(IndexNotFoundError, match=r"^Index projects\.by_x not found\.$"):
        db.query("projects").with_index("by_x")
    with pytest.raises(IndexStagedError, match="is currently staged and not available to query"):
        db.query("items").with_index("by_tag")


def test_range_errors_are_raised_where_the_range_is_written(db: zapnb.Database) -> None:
    with pytest.raises(InvalidIndexRangeError, match='First incorrect field: "_creationTime"'):
        db.query("items").with_index("by_n", lambda r: r.eq("_creationTime", 1.0))
    with pytest.raises(InvalidQueryError, match="return the builder"):
        db.query("items").with_index("by_n", lambda r: None)  # type: ignore[arg-type,return-value]
