"""The kernel side of live tables: results as frames, display rules, sorting, windows as Arrow IPC, diffs."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from zapnb.errors import InvalidQueryError
from zapnb.tableview import (
    MAX_CHANGED,
    MAX_TEXT,
    TableSnapshot,
    as_frame,
    cell_text,
    changed_keys,
    count_text,
    display_frame,
    encode_ipc,
    parse_sort,
    sort_text,
)

#: The Arrow types a window may hold: what livetable.js decodes.
DECODED = (
    pa.types.is_null,
    pa.types.is_boolean,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_large_string,
)


def decode(data: bytes) -> pa.Table:
    table = pa.ipc.open_stream(data).read_all()
    for arrow_field in table.schema:
        assert any(is_type(arrow_field.type) for is_type in DECODED), arrow_field
    return table


def people(n: int = 5) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_id": [f"id{i}" for i in range(n)],
            "_creationTime": [1000.0 + i for i in range(n)],
            "name": [f"p{(i * 7) % n}" for i in range(n)],
            "age": [None if i == 2 else 30 + (i * 3) % n for i in range(n)],
        }
    )


# --- results as frames --------------------------------------------------------------------------------------


def test_a_frame_is_taken_as_it_is() -> None:
    frame = people()
    assert as_frame(frame, "q") is frame


def test_documents_use_zapnbs_inference() -> None:
    docs = [
        {"_id": "a", "_creationTime": 1.0, "n": 1, "meta": {"k": 1}},
        {"_id": "b", "_creationTime": 2.0, "n": 2.5},
    ]
    frame = as_frame(docs, "q")
    assert frame.schema == pl.Schema(
        {"_id": pl.String, "_creationTime": pl.Float64, "n": pl.String, "meta": pl.String}
    )
    assert frame["n"].to_list() == ["1", "2.5"]  # 1 and 2.5 are different kinds: zapnb JSON text


def test_other_dicts_go_through_polars() -> None:
    frame = as_frame([{"day": datetime.date(2024, 1, 2), "n": 1}, {"day": None, "n": 2}], "q")
    assert frame.schema == pl.Schema({"day": pl.Date, "n": pl.Int64})
    assert as_frame([], "q").shape == (0, 0)


@pytest.mark.parametrize(
    ("result", "what"), [(3, "an int"), ("text", "a str"), ({"a": 1}, "a dict"), ([1, 2], "a list")]
)
def test_anything_else_is_refused_with_what_to_return(result: Any, what: str) -> None:
    with pytest.raises(InvalidQueryError, match=f"'count' returned {what}. Return a query's .collect") as err:
        as_frame(result, "count")
    assert err.value.method == "LiveTable"


# --- display rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (-12, "-12"),
        (2**63 - 1, "9223372036854775807"),
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (1e16, "1e+16"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        ("plain <b>", "plain <b>"),
        (b"\x00a", "b'\\x00a'"),
        ([1, "a", None, [2.5]], '[1, "a", null, [2.5]]'),
        ({"k": True, "é": b"x"}, '{"k": true, "é": b\'x\'}'),
        (datetime.date(2024, 1, 2), "2024-01-02"),
    ],
)
def test_cell_text(value: Any, text: str) -> None:
    assert cell_text(value) == text


def test_float32_shows_its_shortest_digits() -> None:
    value = pl.Series([0.1], dtype=pl.Float32).to_list()[0]
    assert value != 0.1
    assert cell_text(value, float32=True) == "0.1"


def test_display_frame_keeps_typed_columns_and_turns_the_rest_into_text() -> None:
    frame = pl.DataFrame(
        {
            "i8": pl.Series([1, None], dtype=pl.Int8),
            "u64": pl.Series([2**64 - 1, 0], dtype=pl.UInt64),
            "f32": pl.Series([0.5, None], dtype=pl.Float32),
            "f": [1.5, float("nan")],
            "b": [True, None],
            "s": ["x" * (MAX_TEXT + 5), "short"],
            "n": pl.Series([None, None], dtype=pl.Null),
            "tags": [["a"], None],
            "obj": [{"x": 1}, {"x": None}],
            "raw": [b"\x01", None],
            "when": [datetime.datetime(2024, 1, 2, 3, 4, 5), None],
            "kind": pl.Series(["a", "b"], dtype=pl.Enum(["a", "b"])),
            "cat": pl.Series(["c", None], dtype=pl.Categorical),
            "money": pl.Series([decimal.Decimal("1.50"), None], dtype=pl.Decimal(10, 2)),
        }
    )
    table = decode(encode_ipc(display_frame(frame)))
    assert table.schema.types == [
        pa.int8(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.bool_(),
        pa.large_string(),
        pa.null(),
        *[pa.large_string()] * 7,
    ]
    rows = table.to_pylist()
    assert rows[0] == {
        "i8": 1,
        "u64": 2**64 - 1,
        "f32": 0.5,
        "f": 1.5,
        "b": True,
        "s": "x" * (MAX_TEXT - 1) + "…",
        "n": None,
        "tags": '["a"]',
        "obj": '{"x": 1}',
        "raw": "b'\\x01'",
        "when": "2024-01-02 03:04:05",
        "kind": "a",
        "cat": "c",
        "money": "1.50",
    }
    assert rows[1]["s"] == "short"
    assert rows[1]["obj"] == '{"x": null}'
    assert [rows[1][c] for c in ("i8", "f32", "b", "tags", "raw", "when", "cat", "money")] == [None] * 8


# --- sorting and windows ------------------------------------------------------------------------------------


def test_parse_sort_checks_shape_and_column() -> None:
    assert parse_sort(["age", "asc"], ["age"]) == ("age", "asc")
    with pytest.raises(InvalidQueryError, match=r"no column 'nope' to sort by; its columns are \['age'\]"):
        parse_sort(["nope", "asc"], ["age"])
    with pytest.raises(InvalidQueryError, match=r"\[\] or \[column, 'asc' \| 'desc'\], not \['age', 'up'\]"):
        parse_sort(["age", "up"], ["age"])
    assert (sort_text(None), sort_text(("a", "asc")), sort_text(("a", "desc"))) == ("none", "a ↑", "a ↓")
    assert [count_text(n) for n in (0, 1, 3, 1_000_000)] == ["0 rows", "1 row", "3 rows", "1,000,000 rows"]


def test_sorts_put_nulls_first_ascending_and_last_descending_and_keep_ties_in_order() -> None:
    snapshot = TableSnapshot(1, people(5))  # ages: 30, 33, null, 34, 32 ... computed below
    ages = people(5)["age"].to_list()
    ascending = snapshot.rows(0, 5, ("age", "asc"))["age"].to_list()
    assert ascending == [None, *sorted(a for a in ages if a is not None)]
    descending = snapshot.rows(0, 5, ("age", "desc"))["age"].to_list()
    assert descending == [*sorted((a for a in ages if a is not None), reverse=True), None]
    ties = TableSnapshot(1, pl.DataFrame({"_id": ["a", "b", "c"], "k": [1, 1, 0]}))
    assert ties.rows(0, 3, ("k", "asc"))["_id"].to_list() == ["c", "a", "b"]
    assert ties.rows(0, 3, ("k", "desc"))["_id"].to_list() == ["a", "b", "c"]


def test_window_is_a_slice_in_sort_order_with_its_description() -> None:
    frame = pl.DataFrame({"_id": [f"id{i:03}" for i in range(300)], "n": list(range(300))})
    window = TableSnapshot(4, frame).window(100, 3, ("n", "desc"))
    assert window.content == {
        "version": 4,
        "row_count": 300,
        "offset": 100,
        "count": 3,
        "columns": [{"name": "_id", "dtype": "String"}, {"name": "n", "dtype": "Int64"}],
        "key": "_id",
        "sort": ["n", "desc"],
        "error": None,
    }
    assert decode(window.data).to_pydict() == {"_id": ["id199", "id198", "id197"], "n": [199, 198, 197]}


def test_a_frame_without_ids_is_keyed_by_position() -> None:
    snapshot = TableSnapshot(1, pl.DataFrame({"word": ["b", "a", "c"], "_row": [9, 8, 7]}))
    assert snapshot.key == "__row"
    assert snapshot.columns == ["word", "_row"]
    window = snapshot.window(0, 10, ("word", "asc"))
    assert window.content["key"] == "__row"
    assert [c["name"] for c in window.content["columns"]] == ["word", "_row"]
    assert decode(window.data).to_pydict() == {"word": ["a", "b", "c"], "_row": [8, 9, 7], "__row": [1, 0, 2]}
    assert snapshot.keys(0, 1, ("word", "desc")) == ["2", "0"]


def test_window_is_capped_at_one_thousand_rows() -> None:
    frame = pl.DataFrame({"_id": [str(i) for i in range(1500)]})
    assert TableSnapshot(1, frame).window(0, 5000, None).content["count"] == 1000


def test_keys_and_existing() -> None:
    snapshot = TableSnapshot(1, people(5))
    assert snapshot.keys(3, 1, None) == ["id1", "id2", "id3"]
    assert snapshot.existing(["id4", "gone", "id0"]) == ["id4", "id0"]


def test_html_fallback_leaves_out_system_fields_and_escapes() -> None:
    frame = pl.DataFrame(
        {"_id": ["a", "b"], "_creationTime": [1.0, 2.0], "text": ["<b>hi</b>", None], "n": [2, 1]}
    )
    assert TableSnapshot(1, frame).html(("n", "asc")) == (
        '<table class="zapnb-livetable-static"><thead><tr><th>text</th><th>n</th></tr></thead><tbody>'
        "<tr><td>null</td><td>1</td></tr><tr><td>&lt;b&gt;hi&lt;/b&gt;</td><td>2</td></tr>"
        "</tbody></table><p>2 rows · sorted by n ↑</p>"
    )


# --- what changed -------------------------------------------------------------------------------------------


def test_changed_keys_finds_updates_and_inserts() -> None:
    old = TableSnapshot(1, people(5))
    updated = people(5).with_columns(
        pl.when(pl.col("_id") == "id3").then(pl.lit("renamed")).otherwise(pl.col("name")).alias("name")
    )
    assert changed_keys(old, TableSnapshot(2, updated)) == (["id3"], False)
    appended = pl.concat([people(5), people(7).slice(5)])
    assert changed_keys(old, TableSnapshot(2, appended)) == (["id5", "id6"], False)
    reordered = pl.concat([people(7).slice(6), people(5).reverse()])  # inserted first, order changed
    assert changed_keys(old, TableSnapshot(2, reordered)) == (["id6"], False)
    assert changed_keys(old, TableSnapshot(2, people(5).slice(1))) == ([], False)  # deleted: nothing to mark


def test_a_change_of_columns_changes_every_row() -> None:
    old = TableSnapshot(1, people(3))
    new = TableSnapshot(2, people(3).with_columns(pl.lit(None, dtype=pl.String).alias("extra")))
    assert changed_keys(old, new) == (["id0", "id1", "id2"], False)


def test_changed_keys_are_capped() -> None:
    many = MAX_CHANGED + 5
    frame = pl.DataFrame({"_id": [str(i) for i in range(many)], "n": list(range(many))})
    listed, truncated = changed_keys(TableSnapshot(1, frame.head(0)), TableSnapshot(2, frame))
    assert (len(listed), truncated) == (MAX_CHANGED, True)
    assert listed[:2] == ["0", "1"]
