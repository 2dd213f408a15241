"""Filters on whole columns (zapnb.vectorfilter) give exactly what the per-document evaluation gives."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zapnb
from zapnb import v
from zapnb.filters import Expr, FilterBuilder
from zapnb.ranges import field_validators
from zapnb.vectorfilter import vector_filter

TABLE = zapnb.define_table(
    {
        "s": v.optional(v.string()),
        "n": v.optional(v.int64()),
        "b": v.union(v.boolean(), v.null()),
        "role": v.union(v.literal("USER"), v.literal("ASSISTANT")),
        "x": v.optional(v.number()),
        "mixed": v.optional(v.union(v.string(), v.int64())),
    }
)
SCHEMA = zapnb.define_schema({"t": TABLE})

q = FilterBuilder()
strings = st.sampled_from(["", "a", "USER", "ASSISTANT", "b", "é", "zz"])
ints = st.integers(-3, 3)
docs = st.fixed_dictionaries(
    {"role": st.sampled_from(["USER", "ASSISTANT"]), "b": st.none() | st.booleans()},
    optional={"s": strings, "n": ints, "x": st.floats(allow_nan=True), "mixed": strings | ints},
)
fields = st.sampled_from(["s", "n", "b", "role", "x", "mixed", "missing", "_id"])
literals = strings | ints | st.booleans() | st.none() | st.floats(-2, 2)
ops = st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte"])


@st.composite
def comparisons(draw: st.DrawFn) -> Expr:
    op, field, literal = draw(ops), q.field(draw(fields)), draw(literals)
    left, right = (field, literal) if draw(st.booleans()) else (literal, field)
    built: Expr = getattr(q, op)(left, right)
    return built


expressions = st.recursive(
    comparisons() | st.sampled_from([True, False]).map(lambda b: q.and_(b)),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: q.and_(*xs))
        | st.lists(inner, max_size=3).map(lambda xs: q.or_(*xs))
        | inner.map(q.not_)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with zapnb.connect(tmp_path_factory.mktemp("vector")) as database:
        database.deploy(SCHEMA, progress=False)
        yield database


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(docs, max_size=12), expressions)
def test_the_column_path_agrees_with_the_document_path(
    db: Any, rows: list[dict[str, Any]], expr: Expr
) -> None:
    with db.transaction() as tx:  # written in the transaction, read back through its own writes
        tx.insert_many("t", rows)
        query = tx.query("t").filter(lambda _: expr)
        by_documents = [doc["_id"] for doc in query]  # iteration always evaluates documents
        frame = query.collect()
        assert frame["_id"].to_list() == by_documents
        assert query.count() == len(by_documents)
        tx.discard()


def test_only_exact_translations_are_made() -> None:
    validators_of = field_validators(TABLE)
    exact = [
        q.eq(q.field("s"), "a"),
        q.lt(3, q.field("n")),
        q.and_(q.neq(q.field("role"), "USER"), q.not_(q.eq(q.field("b"), True))),
        q.or_(),
    ]
    inexact = [
        q.eq(q.field("x"), 1.0),  # floats: -0.0 and NaN order differently in Polars
        q.eq(q.field("mixed"), "a"),  # two kinds in one field
        q.eq(q.field("s"), None),  # null and missing differ, and both are null in the frame
        q.eq(q.field("s"), 1),  # another kind than the field's
        q.eq(q.field("a.b"), 1),  # nested path
        q.eq(q.field("s"), q.field("role")),  # two fields
        q.gt(q.add(q.field("n"), 1), 2),  # arithmetic
        q.and_(q.eq(q.field("s"), "a"), q.eq(q.field("x"), 0.0)),  # one inexact part
    ]
    assert all(vector_filter(expr, validators_of) is not None for expr in exact)
    assert all(vector_filter(expr, validators_of) is None for expr in inexact)


def test_a_column_filter_still_warns_where_the_caller_is(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert_many("t", [{"role": "USER", "b": None}] * 10_001)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = db.query("t").filter(lambda q: q.eq(q.field("role"), "ASSISTANT")).collect()
            count = db.query("t").filter(lambda q: q.eq(q.field("role"), "USER")).count()
    assert (frame.height, count) == (0, 10_001)
    assert [(type(w.message).__name__, Path(w.filename).name) for w in caught] == [
        ("FilterScanWarning", "test_vectorfilter.py"),
        ("FilterScanWarning", "test_vectorfilter.py"),
    ]
