"""Checking whole columns: vectorized and value-by-value checks, normalized cells, dtypes, and row errors."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from zapnb import SchemaValidationError, v
from zapnb.columns import check_column, validate_column
from zapnb.errors import InvalidValueError
from zapnb.ids import Id, new_ids
from zapnb.validators import INT64_MAX, TableNumbers, Validator

PROJECT = Id.encode(10001, bytes(range(16)))
USER = Id.encode(10002, bytes(range(16)))
NUMBERS = TableNumbers({"projects": 10001, "users": 10002})
FRAMEWORK = v.union(v.literal("NEXTJS"), v.literal("ANGULAR"))


def column_error(validator: Validator, column: Any, **kwargs: Any) -> str:
    with pytest.raises(SchemaValidationError) as info:
        validator.validate_column(column, **kwargs)
    return str(info.value)


COLUMNS: list[tuple[Validator, Any, list[Any], pl.DataType]] = [
    (v.string(), pl.Series(["a", "b"]), ["a", "b"], pl.String()),
    (v.string(), pl.Series(["a"], dtype=pl.Categorical), ["a"], pl.String()),
    (v.number(), pl.Series([1, 2]), [1.0, 2.0], pl.Float64()),
    (v.number(), pa.array([1.5, None]).fill_null(2.0), [1.5, 2.0], pl.Float64()),
    (v.int64(), pl.Series([1, INT64_MAX], dtype=pl.UInt64), [1, INT64_MAX], pl.Int64()),
    (v.int64(), pl.Series([1], dtype=pl.Int8), [1], pl.Int64()),
    (v.boolean(), pl.Series([True, False]), [True, False], pl.Boolean()),
    (v.bytes(), pl.Series([b"x"]), [b"x"], pl.Binary()),
    (v.null(), pl.Series([None, None]), [None, None], pl.Null()),
    (v.literal("a"), pl.Series(["a"]), ["a"], pl.Enum(["a"])),
    (v.literal(3), pl.Series([3]), [3], pl.Int64()),
    (v.nullable(FRAMEWORK), pl.Series(["NEXTJS", None]), ["NEXTJS", None], pl.Enum(["NEXTJS", "ANGULAR"])),
    (v.nullable(v.number()), pl.Series([1, None]), [1.0, None], pl.Float64()),
    (v.id("projects"), pl.Series([str(PROJECT)]), [str(PROJECT)], pl.String()),
    (v.array(v.number()), pl.Series([[1], []]), [[1.0], []], pl.List(pl.Float64())),
    (v.any(), pl.Series([[1, 2], None]), ["[1,2]", "null"], pl.String()),
    (v.record(v.string(), v.int64()), pl.Series([{"k": 1}]), ['{"k":1}'], pl.String()),
    (
        v.object({"a": v.int64(), "b": v.optional(v.string())}),
        pl.Series([{"a": 1, "b": None}, {"a": 2, "b": "x"}]),
        [{"a": 1, "b": None}, {"a": 2, "b": "x"}],
        pl.Struct({"a": pl.Int64(), "b": pl.String()}),
    ),
]


@pytest.mark.parametrize(("validator", "column", "expected", "dtype"), COLUMNS, ids=repr)
def test_validate_column(validator: Validator, column: Any, expected: list[Any], dtype: pl.DataType) -> None:
    result = validator.validate_column(column)
    assert result.dtype == dtype
    assert result.to_list() == expected


def test_validate_column_keeps_the_name_and_takes_arrow() -> None:
    assert v.string().validate_column(pl.Series("title", ["a"])).name == "title"
    assert v.number().validate_column(pa.chunked_array([[1], [2]])).to_list() == [1.0, 2.0]


def test_validate_column_errors_name_the_row() -> None:
    assert column_error(v.string(), pl.Series(["a", None]), path=".name") == (
        "Value does not match validator.\nPath: [1].name\nValue: null\nValidator: v.string()"
    )
    assert column_error(FRAMEWORK, pl.Series(["NEXTJS", "VUE"]), table="projects", path=".framework") == (
        'Failed to insert or update a document in table "projects" because it does not match the schema: '
        'Value does not match validator.\nPath: [1].framework\nValue: "VUE"\n'
        'Validator: v.union(v.literal("NEXTJS"), v.literal("ANGULAR"))'
    )
    assert "Path: [1]\nValue: 9223372036854775808\n" in column_error(
        v.int64(), pl.Series([1, 2**63], dtype=pl.UInt64)
    )
    assert "Path: [0]\nValue: 1.5\n" in column_error(v.int64(), pl.Series([1.5]))
    assert "Path: [0]\nValue: true\n" in column_error(v.number(), pl.Series([True]))
    assert "Path: [2]\nValue: 4\n" in column_error(v.literal(3), pl.Series([3, 3, 4]))
    assert "Path: [1][0]\n" in column_error(v.array(v.string()), pl.Series([["a"], [None]]))
    assert "Found ID" in column_error(v.id("projects"), pl.Series([str(USER)]), ids=NUMBERS)
    assert "extra field `b`" in column_error(v.object({"a": v.int64()}), pl.Series([{"a": 1, "b": 2}]))


def test_validate_column_optional_means_nulls_are_missing() -> None:
    assert v.string().validate_column(pl.Series(["a", None]), optional=True).to_list() == ["a", None]
    assert v.optional(v.string()).validate_column(pl.Series(["a", None])).to_list() == ["a", None]
    assert v.any().validate_column(pl.Series([1, None]), optional=True).to_list() == ["1", None]
    assert v.any().validate_column(pl.Series([1, None])).to_list() == ["1", "null"]


def test_validate_column_refuses_other_inputs() -> None:
    with pytest.raises(InvalidValueError, match="polars Series or a pyarrow Array"):
        v.string().validate_column(["a"])


def test_the_function_is_the_method_and_optional_means_missing() -> None:
    column = pl.Series("k", ["NEXTJS", None])
    assert validate_column(v.nullable(FRAMEWORK), column).equals(
        v.nullable(FRAMEWORK).validate_column(column)
    )
    assert validate_column(v.optional(v.string()), pl.Series(["a", None]), optional=False).to_list() == [
        "a",
        None,
    ]
    assert "Path: [1]\nValue: null\n" in column_error(v.string(), pl.Series(["a", None]), optional=False)


def test_struct_rows_read_null_fields_by_what_the_field_allows() -> None:
    assert "Path: [0].a\nValue: null\n" in column_error(v.object({"a": v.string()}), pl.Series([{"a": None}]))
    assert v.object({"a": v.int64()}).validate_column(pl.Series([{"a": 1, "b": None}])).to_list() == [
        {"a": 1}
    ]
    nested = v.object({"o": v.object({"x": v.optional(v.int64())})})
    assert nested.validate_column(pl.Series([{"o": {"x": None}}])).to_list() == [{"o": {"x": None}}]


def test_a_null_inside_an_optional_object_field_reads_as_missing() -> None:
    validator = v.object({"a": v.optional(v.object({"b": v.optional(v.string())}))})
    assert validator.validate({"a": {}}) == {"a": {}}
    column = validator.validate_column(pl.Series([{"a": {"b": None}}, {"a": None}]))
    assert column.to_list() == [{"a": {"b": None}}, {"a": None}]


@pytest.mark.parametrize("bad", [0, 65_535, 65_536, 140_000])
def test_id_columns_longer_than_a_slice_find_their_first_bad_row(bad: int) -> None:
    ids = [str(i) for i in new_ids(10001, 150_000)]
    assert check_column(v.id("projects"), pl.Series(ids), ids=NUMBERS).to_list() == ids  # type: ignore[union-attr]
    ids[bad] = ids[bad][:-1] + ("0" if ids[bad][-1] != "0" else "1")  # a checksum that does not match
    ids[bad + 3] = None  # type: ignore[call-overload]
    assert check_column(v.id("projects"), pl.Series(ids), ids=NUMBERS) == bad
    assert check_column(v.optional(v.id("projects")), pl.Series(ids), ids=NUMBERS) == bad
