"""Errors of ``insert_many``: each names its row (``[3].name``), whatever the rows came as and however many
there are, keeps its class and attributes, and leaves nothing inserted; a frame's integers outside int64 are
refused as a list of dicts refuses them."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import v
from zapnb.bulk import in_row
from zapnb.errors import DocumentLimitError, InvalidFieldNameError, InvalidValueError
from zapnb.schema import Schema
from zapnb.transaction import BULK_ROWS

FLAT = zapnb.define_table({"s": v.string(), "n": v.number(), "i": v.optional(v.int64())})
SCHEMA = zapnb.define_schema({"flat": FLAT, "loose": zapnb.define_table({"a": v.any()})})
SIZES = [3, BULK_ROWS + 5]
TOO_LONG = "x" * (1 << 20)


@pytest.fixture
def db(deployed: Callable[[Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(SCHEMA)


def rows_with(size: int, row: int, bad: dict[str, Any]) -> list[dict[str, Any]]:
    """``size`` good rows of table ``loose`` (or of a table with no definition), but ``row`` is ``bad``."""
    rows: list[dict[str, Any]] = [{"a": k} for k in range(size)]
    rows[row] = bad
    return rows


def refused(db: zapnb.Database, table: str, rows: Any) -> InvalidValueError:
    """The error ``insert_many`` raises, once it is checked that nothing was written."""
    before = db._engine.log.last_lsn()
    with pytest.raises(InvalidValueError) as caught:
        db.insert_many(table, rows)
    assert db._engine.log.last_lsn() == before
    return caught.value


# --- each value error names its row -------------------------------------------------------------------------

VALUE_ERRORS: list[tuple[str, dict[str, Any], type[InvalidValueError], str]] = [
    ("array too long", {"a": [0] * 8193}, DocumentLimitError, ".a"),
    ("reserved field name", {"a": 1, "$a": 1}, InvalidFieldNameError, '["$a"]'),
    ("system field", {"a": 1, "_id": "x"}, InvalidFieldNameError, "._id"),
    ("a set", {"a": {1, 2}}, InvalidValueError, ".a"),
    ("an int outside int64", {"a": 2**64}, InvalidValueError, ".a"),
    ("a date", {"a": datetime.date(2024, 1, 2)}, InvalidValueError, ".a"),
    ("a lone surrogate", {"a": "\ud800"}, InvalidValueError, ".a"),
    ("too deep", {"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}, DocumentLimitError, ".a" + "[0]" * 15),
]


@pytest.mark.parametrize("table", ["free", "loose"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("why", "bad", "kind", "path"), VALUE_ERRORS, ids=[e[0] for e in VALUE_ERRORS])
def test_a_value_error_of_a_list_names_its_row(
    db: zapnb.Database,
    table: str,
    size: int,
    why: str,
    bad: dict[str, Any],
    kind: type[InvalidValueError],
    path: str,
) -> None:
    row = size - 2
    error = refused(db, table, rows_with(size, row, bad))
    assert type(error) is kind, why
    assert error.path == f"[{row}]{path}"
    assert f" at [{row}]{path}: " in str(error)


def test_the_error_keeps_its_other_attributes(db: zapnb.Database) -> None:
    error = refused(db, "free", rows_with(5, 4, {"a": [0] * 8193}))
    assert isinstance(error, DocumentLimitError)
    assert (error.limit, error.maximum, error.actual, error.value) == ("array_length", 8192, 8193, None)
    assert str(error).startswith("Array too long at [4].a: 8193, more than the maximum of 8192; split")
    error = refused(db, "free", rows_with(5, 1, {"a": {1, 2}}))
    assert error.value == {1, 2}


@pytest.mark.parametrize("table", ["free", "loose", "flat"])
@pytest.mark.parametrize("size", SIZES)
def test_a_document_over_the_size_limit_names_its_row(db: zapnb.Database, table: str, size: int) -> None:
    rows = [{"s": "a", "n": 1.0} if table == "flat" else {"a": str(k)} for k in range(size)]
    row = size - 1
    rows[row] = {"s": TOO_LONG, "n": 1.0} if table == "flat" else {"a": TOO_LONG}
    for given in (rows, pl.DataFrame(rows)):
        error = refused(db, table, given)
        assert isinstance(error, DocumentLimitError)
        assert (error.path, error.limit) == (f"[{row}]", "size")
        assert str(error).startswith(f"Document too large at [{row}]: ")


@pytest.mark.parametrize("size", SIZES)
def test_a_frame_names_the_row_of_a_value_error(db: zapnb.Database, size: int) -> None:
    dates = [datetime.date(2024, 1, 1)] * size
    frame = pl.DataFrame({"s": ["a"] * size, "n": pl.Series(dates).cast(pl.Date)})
    for table in ("flat", "free"):
        error = refused(db, table, frame)
        assert error.path == "[0].n"
        assert str(error).startswith("Invalid value at [0].n: a datetime.date is not a value")
    frame = pl.DataFrame({"a": [[0]] * size}).with_columns(
        pl.when(pl.int_range(size) == size - 1).then(pl.lit([0] * 8193)).otherwise(pl.col("a")).alias("a")
    )
    error = refused(db, "free", frame)
    assert isinstance(error, DocumentLimitError)
    assert error.path == f"[{size - 1}].a"
    error = refused(db, "free", pl.DataFrame({"a": [1] * size, "$a": [1] * size}))
    assert isinstance(error, InvalidFieldNameError)
    assert error.path == '[0]["$a"]'


def test_a_row_that_is_not_a_dict_is_refused_naming_it(db: zapnb.Database) -> None:
    for bad in (5, None, "text", [("a", 1)]):
        error = refused(db, "free", [{"a": 1}, bad])
        assert (error.path, error.value) == ("[1]", bad)
        assert str(error).startswith("Invalid value at [1]: each row of insert_many is a dict")


def test_a_transaction_s_insert_many_names_the_row_and_a_single_insert_none(db: zapnb.Database) -> None:
    with db.transaction() as tx, pytest.raises(InvalidValueError) as caught:
        tx.insert_many("free", rows_with(4, 2, {"a": {1}}))
    assert caught.value.path == "[2].a"
    with pytest.raises(InvalidValueError) as single:
        db.insert("free", {"a": {1}})
    assert single.value.path == ".a"
    assert str(single.value).startswith("Invalid value at .a: ")


def test_a_message_of_another_shape_says_the_row_first() -> None:
    error = in_row(InvalidValueError("Something odd: see here.", path=".x", value=1), 7)
    assert (str(error), error.path, error.value) == ("Row [7]: Something odd: see here.", "[7].x", 1)


# --- integers outside int64 in a frame ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["n", "i"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("arrow", [False, True], ids=["polars", "arrow"])
def test_a_frame_s_uint64_above_int64_is_refused_like_a_list_of_dicts(
    db: zapnb.Database, field: str, size: int, arrow: bool
) -> None:
    row = size - 2
    values = list(range(size))
    values[row] = 2**64 - 1
    frame = pl.DataFrame({"s": ["a"] * size, "n": [1.0] * size}).with_columns(
        pl.Series(field, values, dtype=pl.UInt64)
    )
    error = refused(db, "flat", frame.to_arrow() if arrow else frame)
    assert type(error) is InvalidValueError
    assert (error.path, error.value) == (f"[{row}].{field}", 2**64 - 1)
    dicts_error = refused(db, "flat", frame.to_dicts())
    assert (type(dicts_error), str(dicts_error)) == (type(error), str(error))
    assert "outside the int64 range" in str(error)


@pytest.mark.parametrize("size", SIZES)
def test_a_frame_s_uint64_within_int64_is_stored(db: zapnb.Database, size: int) -> None:
    big = 2**63 - 1
    frame = pl.DataFrame(
        {
            "s": ["a"] * size,
            "n": pl.Series([big] * size, dtype=pl.UInt64),
            "i": pl.Series([big, None] * (size // 2) + [big] * (size % 2), dtype=pl.UInt64),
        }
    )
    ids = db.insert_many("flat", frame)
    first, second = db.get(ids[0]), db.get(ids[1])
    assert first is not None
    assert second is not None
    assert (first["n"], first["i"]) == (float(big), big)
    assert "i" not in second


def test_an_int128_column_outside_int64_is_refused(db: zapnb.Database) -> None:
    frame = pl.DataFrame({"s": ["a", "b"], "n": pl.Series([1, -(2**70)], dtype=pl.Int128)})
    error = refused(db, "flat", frame)
    assert (error.path, error.value) == ("[1].n", -(2**70))
