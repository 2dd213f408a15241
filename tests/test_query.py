"""Queries end to end: typed frames, order, first/unique, iteration, count, pages, explain, transactions."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import scan, v
from zapnb.errors import (
    ClosedError,
    ConflictError,
    FilterScanWarning,
    InvalidCursorError,
    InvalidQueryError,
    NotUniqueError,
)
from zapnb.queries import Order, Query
from zapnb.schema import Schema
from zapnb.values import MISSING

KINDS = zapnb.define_schema(
    {
        "things": zapnb.define_table(
            {
                "name": v.string(),
                "n": v.optional(v.int64()),
                "x": v.optional(v.number()),
                "flag": v.optional(v.boolean()),
                "blob": v.optional(v.bytes()),
                "tags": v.optional(v.array(v.string())),
                "point": v.optional(v.object({"lat": v.number(), "label": v.optional(v.string())})),
                "kind": v.optional(v.union(v.literal("a"), v.literal("b"))),
                "ref": v.optional(v.id("things")),
                "any": v.optional(v.any()),
                "maybe": v.optional(v.nullable(v.int64())),
                "meta": v.optional(v.record(v.string(), v.int64())),
            }
        )
        .index("by_name", ["name"])
        .index("by_n", ["n"]),
        "counters": zapnb.define_table({"group": v.string(), "n": v.int64()}).index(
            "by_group_n", ["group", "n"]
        ),
    }
)


@pytest.fixture
def db(deployed: Callable[[Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(KINDS)


def _names(frame: pl.DataFrame) -> list[Any]:
    return frame["name"].to_list()


def _user(doc: dict[str, Any] | None) -> dict[str, Any]:
    assert doc is not None
    return {k: val for k, val in doc.items() if not k.startswith("_")}


RICH = [
    {
        "name": "full",
        "n": 3,
        "x": -0.0,
        "flag": True,
        "blob": b"\x00\x01",
        "tags": ["a", "b"],
        "point": {"lat": 1.5, "label": "here"},
        "kind": "b",
        "any": {"nested": [1, 2.0, None]},
        "maybe": None,
        "meta": {"k": 1},
    },
    {"name": "bare"},
    {"name": "some", "n": 1, "x": math.nan, "point": {"lat": 2.0}, "any": 5, "maybe": 7, "tags": []},
]

EXPECTED_SCHEMA = {
    "_id": pl.String(),
    "_creationTime": pl.Float64(),
    "name": pl.String(),
    "n": pl.Int64(),
    "x": pl.Float64(),
    "flag": pl.Boolean(),
    "blob": pl.Binary(),
    "tags": pl.List(pl.String()),
    "point": pl.Struct({"lat": pl.Float64(), "label": pl.String()}),
    "kind": pl.Enum(["a", "b"]),
    "ref": pl.String(),
    "any": pl.String(),
    "maybe": pl.Int64(),
    "meta": pl.String(),
}


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: val for k, val in row.items() if k not in ("_id", "_creationTime")} for row in frame.to_dicts()
    ]


EXPECTED_ROWS = [
    {
        "name": "full",
        "n": 3,
        "x": -0.0,
        "flag": True,
        "blob": b"\x00\x01",
        "tags": ["a", "b"],
        "point": {"lat": 1.5, "label": "here"},
        "kind": "b",
        "ref": None,
        "any": '{"nested":[1,2.0,null]}',
        "maybe": None,
        "meta": '{"k":1}',
    },
    dict.fromkeys(EXPECTED_SCHEMA, None) | {"name": "bare"},
    dict.fromkeys(EXPECTED_SCHEMA, None)
    | {"name": "some", "n": 1, "x": math.nan, "point": {"lat": 2.0, "label": None}, "any": "5", "maybe": 7}
    | {"tags": []},
]
for _row in EXPECTED_ROWS:
    _row.pop("_id", None)
    _row.pop("_creationTime", None)


def _same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key in e:
            if isinstance(e[key], float) and math.isnan(e[key]):
                assert math.isnan(g[key])
            else:
                assert g[key] == e[key], key
                if isinstance(e[key], float):
                    assert math.copysign(1, g[key]) == math.copysign(1, e[key])


# --- typed frames -------------------------------------------------------------------------------------------


def test_frames_are_typed_by_the_validators_before_and_after_a_checkpoint(db: zapnb.Database) -> None:
    ids = db.insert_many("things", RICH)
    db.patch(ids[1], {"ref": ids[0]})
    expected = [dict(row) for row in EXPECTED_ROWS]
    expected[1]["ref"] = str(ids[0])
    memory = db.query("things").collect()
    assert dict(memory.schema) == EXPECTED_SCHEMA
    _same_rows(_rows(memory), expected)
    db._engine.checkpoint()
    based = db.query("things").collect()
    assert based.schema == memory.schema
    _same_rows(_rows(based), expected)
    assert based["_id"].to_list() == [str(i) for i in ids]
    db.patch(ids[2], {"name": "some2"})  # one row from the base, one written since, in order
    mixed = db.query("things").collect()
    assert _names(mixed) == ["full", "bare", "some2"]
    assert mixed.schema == memory.schema


def test_an_empty_result_has_the_full_schema(db: zapnb.Database) -> None:
    empty = db.query("things").collect()
    assert empty.height == 0
    assert dict(empty.schema) == EXPECTED_SCHEMA
    assert (
        db.query("things").with_index("by_name", lambda q: q.eq("name", "none")).take(5).schema
        == empty.schema
    )


def test_documents_from_first_unique_and_iteration_are_exact(db: zapnb.Database) -> None:
    ids = db.insert_many("things", RICH)
    db._engine.checkpoint()
    first = db.query("things").first()
    assert first is not None
    assert isinstance(first["_id"], zapnb.Id)
    assert first["_id"].table == "things"
    assert _user(first) == RICH[0]
    assert math.copysign(1, first["x"]) == -1
    docs = list(db.query("things"))
    assert [d["_id"] for d in docs] == ids
    assert "n" not in docs[1]
    assert docs[0]["maybe"] is None
    assert type(docs[2]["any"]) is int
    docs[0]["name"] = "changed"
    assert db.query("things").first()["name"] == "full"  # type: ignore[index]  # results are copies


def test_tables_without_a_schema_get_inferred_frames(db: zapnb.Database) -> None:
    db.insert_many(
        "loose",
        [
            {"i": 1, "mixed": 1, "s": "a", "arr": [1, 2], "obj": {"k": 1}, "nul": None},
            {"i": 2, "mixed": 1.0, "arr": [None], "obj": {"k": 2}, "nul": None, "late": b"x"},
        ],
    )
    frame = db.query("loose").collect()
    assert dict(frame.schema) == {
        "_id": pl.String(),
        "_creationTime": pl.Float64(),
        "i": pl.Int64(),
        "mixed": pl.String(),
        "s": pl.String(),
        "arr": pl.List(pl.Int64()),
        "obj": pl.String(),
        "nul": pl.Null(),
        "late": pl.Binary(),
    }
    assert frame["mixed"].to_list() == ["1", "1.0"]
    assert frame["obj"].to_list() == ['{"k":1}', '{"k":2}']
    assert frame["s"].to_list() == ["a", None]
    assert db.query("nothing").collect().columns == ["_id", "_creationTime"]


# --- order, first, unique -----------------------------------------------------------------------------------


def test_default_order_is_creation_time_and_desc_reverses(db: zapnb.Database) -> None:
    db.insert_many("things", [{"name": name} for name in "cab"])
    assert _names(db.query("things").collect()) == ["c", "a", "b"]
    assert _names(db.query("things").order("desc").collect()) == ["b", "a", "c"]
    assert _names(db.query("things").with_index("by_name").collect()) == ["a", "b", "c"]
    assert _names(db.query("things").with_index("by_name").order("desc").take(2)) == ["c", "b"]
    with pytest.raises(InvalidQueryError):
        db.query("things").order("up")  # type: ignore[arg-type]


def test_first_and_unique(db: zapnb.Database) -> None:
    a, b = db.insert_many("things", [{"name": "same"}, {"name": "same"}])
    db.insert("things", {"name": "other"})
    by = db.query("things").with_index("by_name", lambda q: q.eq("name", "other"))
    assert by.unique()["name"] == "other"  # type: ignore[index]
    assert db.query("things").with_index("by_name", lambda q: q.eq("name", "none")).unique() is None
    assert db.query("things").with_index("by_name", lambda q: q.eq("name", "none")).first() is None
    with pytest.raises(NotUniqueError) as info:
        db.query("things").with_index("by_name", lambda q: q.eq("name", "same")).unique()
    assert str(info.value).startswith(
        f"unique() query returned more than one result from table things:\n [{a}, {b}, ...]\n"
    )
    assert info.value.ids == (a, b)


def test_take_counts_rows(db: zapnb.Database) -> None:
    db.insert_many("things", [{"name": str(i)} for i in range(5)])
    assert db.query("things").take(0).height == 0
    assert db.query("things").take(3).height == 3
    assert db.query("things").take(10).height == 5
    for bad in (-1, 1.5, True):
        with pytest.raises(InvalidQueryError, match="take"):
            db.query("things").take(bad)  # type: ignore[arg-type]


def test_queries_are_immutable_builders(db: zapnb.Database) -> None:
    db.insert_many("things", [{"name": "a", "n": 1}, {"name": "b", "n": 2}])
    base = db.query("things")
    ordered = base.order("desc")
    filtered = ordered.filter(lambda q: q.gt(q.field("n"), 1))
    assert _names(base.collect()) == ["a", "b"]
    assert _names(ordered.collect()) == ["b", "a"]
    assert _names(filtered.collect()) == ["b"]
    indexed = base.with_index("by_n")
    with pytest.raises(InvalidQueryError, match="already reads index"):
        indexed.with_index("by_name")
    assert "with_index('by_n'" in repr(indexed)
    with pytest.raises(InvalidQueryError, match="return an expression"):
        base.filter(lambda q: "yes")


def test_a_db_query_reads_the_newest_snapshot_each_time(db: zapnb.Database) -> None:
    query = db.query("things").with_index("by_name")
    assert query.count() == 0
    db.insert("things", {"name": "new"})
    assert query.count() == 1
    assert _names(query.collect()) == ["new"]


# --- count --------------------------------------------------------------------------------------------------


def test_count_uses_the_index_without_reading_documents(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": g, "n": n} for g in "ab" for n in range(50)])
    db._engine.checkpoint()
    state = db._engine.snapshot().tables["counters"]

    def refuse(position: int) -> dict[str, Any]:
        raise AssertionError("count() read a document")

    state.read_row = refuse
    ranged = db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a").gte("n", 10))
    assert ranged.count() == 40
    assert db.query("counters").count() == 100
    with pytest.raises(AssertionError, match="read a document"):  # arithmetic needs the documents
        ranged.filter(lambda q: q.eq(q.add(q.field("n"), 0), 11)).count()


def test_count_sees_a_transactions_own_writes(db: zapnb.Database) -> None:
    ids = db.insert_many("counters", [{"group": "a", "n": n} for n in range(5)])
    db._engine.checkpoint()
    with db.transaction() as tx:
        tx.insert("counters", {"group": "a", "n": 100})
        tx.delete(ids[0])
        tx.patch(ids[1], {"group": "b"})
        in_a = tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a"))
        assert in_a.count() == 4
        assert in_a.collect()["n"].to_list() == [2, 3, 4, 100]
        assert tx.query("counters").count() == 5


# --- transactions -------------------------------------------------------------------------------------------


def test_queries_in_a_transaction_see_its_own_writes_in_index_order(db: zapnb.Database) -> None:
    ids = db.insert_many("things", [{"name": name} for name in ("b", "d", "f")])
    db._engine.checkpoint()
    db.patch(ids[2], {"name": "f2"})  # an overlay version on top of the base
    with db.transaction() as tx:
        tx.insert("things", {"name": "a"})
        tx.insert("things", {"name": "e"})
        tx.patch(ids[0], {"name": "g"})  # moves b to the end
        tx.delete(ids[1])
        by_name = tx.query("things").with_index("by_name")
        assert _names(by_name.collect()) == ["a", "e", "f2", "g"]
        assert _names(by_name.order("desc").take(3)) == ["g", "f2", "e"]
        assert by_name.first()["name"] == "a"  # type: ignore[index]
        assert [doc["name"] for doc in by_name.order("desc")] == ["g", "f2", "e", "a"]
        page = by_name.paginate(2)
        assert _names(page.page) == ["a", "e"]
        assert _names(by_name.paginate(2, page.continue_cursor).page) == ["f2", "g"]
        assert _names(tx.query("things").collect()) == ["g", "f2", "a", "e"]
    assert _names(db.query("things").with_index("by_name").collect()) == ["a", "e", "f2", "g"]


def test_a_finished_transaction_refuses_queries(db: zapnb.Database) -> None:
    tx = db.transaction()
    query = tx.query("things")
    tx.commit()
    with pytest.raises(ClosedError):
        query.collect()
    with pytest.raises(ClosedError):
        tx.query("things")


def _counters(db: zapnb.Database) -> list[zapnb.Id]:
    return db.insert_many("counters", [{"group": "a", "n": n * 10} for n in range(5)])


def test_a_take_only_reads_up_to_its_last_key(db: zapnb.Database) -> None:
    _counters(db)
    with db.transaction() as tx:
        seen = tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).take(2)
        assert seen["n"].to_list() == [0, 10]
        db.insert("counters", {"group": "a", "n": 25})  # beyond the last key read: no conflict
        db.insert("counters", {"group": "b", "n": 0})
        tx.insert("counters", {"group": "log", "n": 1})
    assert db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "log")).count() == 1


def test_an_insert_inside_what_a_take_read_conflicts(db: zapnb.Database) -> None:
    _counters(db)
    tx = db.transaction()
    tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).take(2)
    db.insert("counters", {"group": "a", "n": 5})
    tx.insert("counters", {"group": "log", "n": 1})
    with pytest.raises(ConflictError):
        tx.commit()


def test_a_desc_take_reads_down_to_its_last_key(db: zapnb.Database) -> None:
    _counters(db)
    with db.transaction() as tx:
        tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).order("desc").first()
        db.insert("counters", {"group": "a", "n": 15})
        tx.insert("counters", {"group": "log", "n": 1})
    tx = db.transaction()
    tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).order("desc").first()
    db.insert("counters", {"group": "a", "n": 99})
    tx.insert("counters", {"group": "log", "n": 1})
    with pytest.raises(ConflictError):
        tx.commit()


def test_collect_and_filters_read_their_whole_range(db: zapnb.Database) -> None:
    _counters(db)
    reads: list[Callable[[zapnb.Transaction], Any]] = [
        lambda tx: tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).collect(),
        lambda tx: tx.query("counters").filter(lambda q: q.eq(q.field("n"), -1)).take(1),
        lambda tx: tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).count(),
    ]
    for read in reads:
        tx = db.transaction()
        read(tx)
        db.insert("counters", {"group": "a", "n": 1000})
        tx.insert("counters", {"group": "log", "n": 1})
        with pytest.raises(ConflictError):
            tx.commit()


# --- pagination ---------------------------------------------------------------------------------------------


def _all_pages(query: Query, size: int, between: Any = None) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        result = query.paginate(size, cursor)
        pages.append(result.page["n"].to_list())
        if result.is_done:
            return pages
        if between is not None:
            between(len(pages))
        cursor = result.continue_cursor


def test_pages_end_exactly_after_num_items(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": "a", "n": n} for n in range(7)])
    query = db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a"))
    assert _all_pages(query, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _all_pages(query.order("desc"), 7) == [[6, 5, 4, 3, 2, 1, 0], []]
    first = query.paginate(7)
    assert not first.is_done
    assert first.page_status is None
    assert first.split_cursor is None


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pages_never_repeat_or_skip_rows_across_writes(db: zapnb.Database, order: str) -> None:
    ids = db.insert_many("counters", [{"group": "a", "n": n} for n in range(0, 100, 2)])
    db._engine.checkpoint()
    query = db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).order(order)  # type: ignore[arg-type]
    deleted: set[int] = set()

    def write(page: int) -> None:
        db.insert_many("counters", [{"group": "a", "n": 2 * page + 1}, {"group": "a", "n": 99 - 2 * page}])
        victim = 40 + page * 2 if order == "asc" else 58 - page * 2
        db.delete(ids[victim // 2])
        deleted.add(victim)

    seen = [n for page in _all_pages(query, 7, write) for n in page]
    assert len(seen) == len(set(seen))
    survivors = set(range(0, 100, 2)) - deleted
    assert survivors <= set(seen)
    assert seen == sorted(seen, reverse=order == "desc")


def test_a_cursor_belongs_to_its_query(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": "a", "n": n} for n in range(4)])
    query = db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a"))
    cursor = query.paginate(2).continue_cursor
    assert query.paginate(2, cursor).page["n"].to_list() == [2, 3]
    others = [
        query.order("desc"),
        db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "b")),
        query.filter(lambda q: q.gt(q.field("n"), 0)),
        db.query("counters"),
        db.query("things"),
    ]
    for other in others:
        with pytest.raises(InvalidCursorError) as info:
            other.paginate(2, cursor)
        assert info.value.reason == "other query"
    for bad in ("nonsense", "zc1!!", cursor[:-3] + "zzz"):
        with pytest.raises(InvalidCursorError):
            query.paginate(2, bad)
    with pytest.raises(InvalidQueryError):
        query.paginate(0)


def test_several_paginated_queries_in_one_transaction(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": g, "n": n} for g in "ab" for n in range(3)])
    with db.transaction() as tx:
        a = tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).paginate(2)
        b = tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "b")).paginate(2)
        a2 = (
            tx.query("counters")
            .with_index("by_group_n", lambda q: q.eq("group", "a"))
            .paginate(2, a.continue_cursor)
        )
    assert (a.page["n"].to_list(), b.page["n"].to_list(), a2.page["n"].to_list()) == ([0, 1], [0, 1], [2])


def test_a_page_up_to_an_end_cursor_and_a_read_limit(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": "a", "n": n} for n in range(20)])
    query = db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a"))
    first = query.paginate(5)
    second = query.paginate(5, first.continue_cursor)
    replay = query.paginate(0, first.continue_cursor, end_cursor=second.continue_cursor)
    assert replay.page["n"].to_list() == [5, 6, 7, 8, 9]
    assert replay.continue_cursor == second.continue_cursor
    odd = query.filter(lambda q: q.eq(q.mod(q.field("n"), 2), 1))
    short = odd.paginate(5, maximum_rows_read=6)
    assert short.page["n"].to_list() == [1, 3, 5]
    assert (short.is_done, short.page_status) == (False, "SplitRecommended")
    assert short.split_cursor is not None
    rest = odd.paginate(100, short.continue_cursor)
    assert rest.page["n"].to_list() == [7, 9, 11, 13, 15, 17, 19]
    assert rest.is_done
    halves = odd.paginate(0, None, end_cursor=short.continue_cursor, maximum_rows_read=4)
    assert halves.page_status == "SplitRequired"
    assert odd.paginate(0, None, end_cursor=short.split_cursor).page["n"].to_list() == [1, 3]
    assert odd.paginate(0, short.split_cursor, end_cursor=short.continue_cursor).page["n"].to_list() == [5]


# --- explain and the filter warning -------------------------------------------------------------------------


def test_explain_reports_the_plan_and_what_it_read(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": g, "n": n} for g in "ab" for n in range(10)])
    explained = (
        db.query("counters")
        .with_index("by_group_n", lambda q: q.eq("group", "a").gt("n", 2))
        .order("desc")
        .filter(lambda q: q.neq(q.field("n"), 5))
        .explain()
    )
    assert explained.index == "by_group_n"
    assert explained.index_fields == ("group", "n", "_creationTime")
    assert explained.range == 'q.eq("group", "a").gt("n", 2)'
    assert explained.order == "desc"
    assert explained.filters == ('neq(field("n"), 5)',)
    assert (explained.scanned, explained.returned, explained.advice) == (7, 6, None)
    assert "scanned 7 documents, returned 6" in str(explained)


def test_a_filter_that_reads_far_more_than_it_returns_warns(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": "a", "n": n} for n in range(2_002)])
    needle = db.query("counters").filter(lambda q: q.eq(q.field("n"), 7))
    with pytest.warns(FilterScanWarning, match="Never use .filter\\(\\) on large tables") as record:
        assert needle.count() == 1
    warning = record[0].message
    assert isinstance(warning, FilterScanWarning)
    assert (warning.table, warning.index, warning.scanned, warning.returned) == (
        "counters",
        "by_creation_time",
        2002,
        1,
    )
    with pytest.warns(FilterScanWarning):
        explained = needle.explain()
    assert explained.advice is not None
    assert "with_index" in explained.advice
    indexed = db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a").eq("n", 7))
    assert indexed.explain().advice is None
    assert indexed.count() == 1
    cheap = db.query("counters").filter(lambda q: q.lt(q.field("n"), 10))
    assert cheap.explain().advice is None  # 2,002 read for 10 returned


def test_a_filter_over_a_whole_large_table_warns(db: zapnb.Database) -> None:
    db.insert_many("counters", [{"group": "a", "n": n} for n in range(10_001)])
    with pytest.warns(FilterScanWarning) as record:
        db.query("counters").filter(lambda q: q.gte(q.field("n"), 100)).count()
    assert record[0].filename == __file__  # points at the line that ran the query
    with pytest.warns(FilterScanWarning) as record:
        db.query("counters").filter(lambda q: q.gte(q.field("n"), 100)).take(20_000)
    assert record[0].filename == __file__


def test_missing_optional_fields_are_null_cells_but_missing_in_documents(db: zapnb.Database) -> None:
    doc_id = db.insert("things", {"name": "x"})
    assert db.query("things").collect()["n"].to_list() == [None]
    assert "n" not in db.get(doc_id)  # type: ignore[operator]
    assert db.query("things").with_index("by_n", lambda q: q.eq("n", MISSING)).count() == 1


def test_unusual_columns_agree_between_written_and_checkpointed_rows(tmp_path: Path) -> None:
    schema = zapnb.define_schema(
        {
            "t": zapnb.define_table(
                {
                    "empty": v.optional(v.object({})),
                    "uobj": v.optional(v.union(v.object({"a": v.int64()}), v.object({"b": v.string()}))),
                    "onull": v.optional(v.nullable(v.string())),
                    "arrn": v.optional(v.array(v.nullable(v.int64()))),
                    "arrany": v.optional(v.array(v.any())),
                    "num": v.optional(v.union(v.int64(), v.number())),
                    "ids": v.optional(v.array(v.id("t"))),
                    "nested": v.optional(
                        v.object({"inner": v.optional(v.nullable(v.int64())), "any": v.any()})
                    ),
                    "null": v.optional(v.null()),
                }
            )
        }
    )
    with zapnb.connect(tmp_path) as db:
        db.deploy(schema, progress=False)
        first = db.insert("t", {})
        docs = [
            {"empty": {}, "uobj": {"a": 1}, "onull": None, "arrn": [1, None], "arrany": [1, "x", None]}
            | {"num": 1, "ids": [first], "nested": {"inner": None, "any": [1]}, "null": None},
            {"uobj": {"b": "s"}, "onull": "x", "arrn": [], "arrany": [], "num": 1.0, "nested": {"any": None}},
        ]
        db.insert_many("t", docs)
        written = db.query("t").collect()
        assert written.row(1, named=True) | {"_id": None, "_creationTime": None} == {
            "_id": None,
            "_creationTime": None,
            "empty": {},
            "uobj": '{"a":1}',
            "onull": None,
            "arrn": [1, None],
            "arrany": ["1", '"x"', "null"],
            "num": "1",
            "ids": [str(first)],
            "nested": {"inner": None, "any": "[1]"},
            "null": None,
        }
        db._engine.checkpoint()
        based = db.query("t").collect()
        assert based.schema == written.schema
        assert based.to_dicts() == written.to_dicts()
        assert [_user(doc) for doc in db.query("t")][1:] == docs
        db.patch(first, {"num": 2.5})  # rows from the base and rows written since, in one frame
        mixed = db.query("t").collect()
        assert mixed.schema == written.schema
        assert mixed["num"].to_list() == ["2.5", "1", "1.0"]
        assert mixed.drop("num").to_dicts() == written.drop("num").to_dicts()


def test_readers_see_consistent_snapshots_while_another_thread_writes(db: zapnb.Database) -> None:
    import threading

    ids = db.insert_many("counters", [{"group": "a", "n": n} for n in range(200)])
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for step in range(60):
                db.insert("counters", {"group": "a", "n": 1000 + step})
                db.patch(ids[step], {"n": -step})
                if step == 30:
                    db._engine.checkpoint()
        except BaseException as err:  # pragma: no cover - reported below
            failures.append(err)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    previous = 0
    while not done.is_set():
        with db.transaction() as tx:
            query = tx.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a"))
            frame = query.collect()
            assert frame.height == query.count() == len(list(query))
            assert frame["n"].to_list() == sorted(frame["n"].to_list())
            assert frame.height >= previous
            previous = frame.height
    writer.join()
    assert not failures
    assert db.query("counters").count() == 260


def _group_a(db: zapnb.Database | zapnb.Transaction, order: Order) -> Query:
    return db.query("counters").with_index("by_group_n", lambda q: q.eq("group", "a")).order(order)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 7])
def test_take_reads_the_same_rows_and_range_from_the_base_as_row_by_row(
    db: zapnb.Database, monkeypatch: pytest.MonkeyPatch, order: Order, n: int
) -> None:
    """After a checkpoint, take(n) gathers an index slice of the base (scan.base_prefix) instead of walking
    its entries; its frame and its read set (up to the last key returned) are those of the per-row path."""
    _counters(db)
    db.insert_many("counters", [{"group": "b", "n": k} for k in range(3)])
    row_by_row = _group_a(db, order).take(n)
    assert db.checkpoint()
    slices: list[bool] = []
    original = scan.base_prefix

    def spied(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        slices.append(result is not None)
        return result

    monkeypatch.setattr(scan, "base_prefix", spied)
    gathered = _group_a(db, order).take(n)
    assert slices == [True]
    assert gathered.equals(row_by_row)
    assert gathered.schema == row_by_row.schema
    values = [k * 10 for k in range(5)]
    expected = (values if order == "asc" else values[::-1])[:n]
    assert gathered["n"].to_list() == expected
    if not expected:
        return
    # what it read: an insert past the last row returned conflicts only if the take read everything
    step = 1 if order == "asc" else -1
    for value, conflicts in ((expected[-1] + step, n > len(values)), (expected[-1] - step, True)):
        tx = db.transaction()
        _group_a(tx, order).take(n)
        inserted = db.insert("counters", {"group": "a", "n": value})
        tx.insert("counters", {"group": "log", "n": 1})
        if conflicts:
            with pytest.raises(ConflictError):
                tx.commit()
        else:
            tx.commit()
        db.delete(inserted)
        assert db.checkpoint()
