"""Validators: what each accepts and refuses, its exact messages, its source text, dtype and JSON."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import SchemaDefinitionError, SchemaValidationError, v
from zapnb.ids import Id
from zapnb.validators import (
    INT64_MAX,
    INT64_MIN,
    TableNumbers,
    Validator,
    validator_from_json,
    validators_at,
)

PROJECT = Id.encode(10001, bytes(range(16)))
USER = Id.encode(10002, bytes(range(16)))
NUMBERS = TableNumbers({"projects": 10001, "users": 10002})
FRAMEWORK = v.union(v.literal("NEXTJS"), v.literal("ANGULAR"))
NAN = float("nan")


def error_of(validator: Validator, value: Any, **kwargs: Any) -> SchemaValidationError:
    with pytest.raises(SchemaValidationError) as info:
        validator.validate(value, **kwargs)
    return info.value


# --- exact messages -----------------------------------------------------------------------------------------


def test_no_match_in_a_table_has_convex_message_and_attributes() -> None:
    doc = v.object({"name": v.string(), "framework": FRAMEWORK})
    err = error_of(doc, {"name": "x", "framework": "React"}, table="projects")
    assert str(err) == (
        'Failed to insert or update a document in table "projects" because it does not match the schema: '
        "Value does not match validator.\n"
        "Path: .framework\n"
        'Value: "React"\n'
        'Validator: v.union(v.literal("NEXTJS"), v.literal("ANGULAR"))'
    )
    assert (err.table, err.path, err.value) == ("projects", ".framework", "React")
    assert err.validator == 'v.union(v.literal("NEXTJS"), v.literal("ANGULAR"))'
    assert isinstance(err, zapnb.ZapError)


def test_no_match_without_table_or_path_is_only_the_cause() -> None:
    err = error_of(v.string(), 1)
    assert str(err) == "Value does not match validator.\nValue: 1\nValidator: v.string()"
    assert (err.table, err.path, err.value, err.validator) == (None, "", 1, "v.string()")


def test_path_argument_prefixes_the_inner_path() -> None:
    err = error_of(v.array(v.object({"n": v.int64()})), [{"n": 1}, {"n": 1.5}], path=".args.items")
    assert err.path == ".args.items[1].n"
    assert (
        str(err)
        == "Value does not match validator.\nPath: .args.items[1].n\nValue: 1.5\nValidator: v.int64()"
    )


def test_missing_field_suggests_optional() -> None:
    doc = v.object({"name": v.string(), "age": v.optional(v.number())})
    err = error_of(doc, {"age": 3}, table="users")
    assert str(err) == (
        'Failed to insert or update a document in table "users" because it does not match the schema: '
        "Object is missing the required field `name`. Consider wrapping the field validator in "
        "`v.optional(...)` if this is expected.\n"
        'Object: {"age":3}\n'
        "Validator: v.object({name: v.string(), age: v.optional(v.number())})"
    )
    assert (err.path, err.value) == ("", {"age": 3})


def test_missing_nested_field_names_the_object_path() -> None:
    err = error_of(v.object({"meta": v.object({"a": v.string()})}), {"meta": {}})
    assert str(err) == (
        "Object is missing the required field `a`. Consider wrapping the field validator in "
        "`v.optional(...)` if this is expected.\nPath: .meta\nObject: {}\n"
        "Validator: v.object({a: v.string()})"
    )


def test_extra_field_has_its_own_message() -> None:
    err = error_of(v.object({"name": v.string()}), {"name": "a", "nick": "b"}, table="users")
    assert str(err) == (
        'Failed to insert or update a document in table "users" because it does not match the schema: '
        "Object contains extra field `nick` that is not in the validator.\n"
        'Object: {"name":"a","nick":"b"}\n'
        "Validator: v.object({name: v.string()})"
    )


def test_id_labelled_with_another_table_is_refused() -> None:
    err = error_of(v.object({"p": v.id("projects")}), {"p": PROJECT.with_table("users")}, table="messages")
    assert str(err) == (
        'Failed to insert or update a document in table "messages" because it does not match the schema: '
        f'Found ID "{PROJECT}" from table `users`, which does not match the table name in validator '
        '`v.id("projects")`.\nPath: .p'
    )
    assert err.value == PROJECT


def test_id_of_another_table_number_is_refused_with_a_resolver() -> None:
    err = error_of(v.id("projects"), str(USER), ids=NUMBERS)
    assert str(err) == (
        f'Found ID "{USER}" from table `users`, which does not match the table name in validator '
        '`v.id("projects")`.'
    )
    plain_mapping = error_of(v.id("projects"), str(USER), ids={"projects": 10001, "users": 10002})
    assert str(plain_mapping) == str(err)


def test_id_of_an_unknown_table_number_does_not_match() -> None:
    err = error_of(v.id("projects"), str(USER), ids={"projects": 10001})
    assert str(err) == f'Value does not match validator.\nValue: "{USER}"\nValidator: v.id("projects")'


def test_long_values_are_cut_in_messages() -> None:
    err = error_of(v.int64(), "x" * 5000)
    assert '..." (5002 characters)' not in str(err)
    assert "... (5002 characters)\nValidator: v.int64()" in str(err)
    assert err.value == "x" * 5000


def test_values_json_cannot_hold_are_shown_with_repr() -> None:
    assert "Value: {1}\n" in str(error_of(v.string(), {1}))
    assert "Value: 18446744073709551616\n" in str(error_of(v.int64(), 2**64))
    assert "Value: '\\ud800'\n" in str(error_of(v.string(), "\ud800"))


# --- each validator, one step from valid --------------------------------------------------------------------

ACCEPTS: list[tuple[Validator, Any, Any]] = [
    (v.string(), "", ""),
    (v.string(), "héllo 😀", "héllo 😀"),
    (v.number(), 1, 1.0),
    (v.number(), 2**63, float(2**63)),
    (v.number(), 1.5, 1.5),
    (v.float64(), -7, -7.0),
    (v.number(), float("inf"), float("inf")),
    (v.int64(), 0, 0),
    (v.int64(), INT64_MAX, INT64_MAX),
    (v.int64(), INT64_MIN, INT64_MIN),
    (v.boolean(), True, True),
    (v.boolean(), False, False),
    (v.null(), None, None),
    (v.bytes(), b"", b""),
    (v.bytes(), bytearray(b"ab"), b"ab"),
    (v.bytes(), memoryview(b"ab"), b"ab"),
    (v.literal("a"), "a", "a"),
    (v.literal(3), 3, 3),
    (v.literal(1.0), 1, 1.0),
    (v.literal(1.5), 1.5, 1.5),
    (v.literal(True), True, True),
    (v.literal(False), False, False),
    (v.array(v.number()), (1, 2.5), [1.0, 2.5]),
    (v.array(v.string()), [], []),
    (v.array(v.array(v.int64())), ((1,), [2]), [[1], [2]]),
    (v.object({}), {}, {}),
    (v.object({"a": v.optional(v.string())}), {}, {}),
    (v.object({"a": v.optional(v.string())}), {"a": "x"}, {"a": "x"}),
    (v.record(v.string(), v.number()), {"a": 1, "b": 2.0}, {"a": 1.0, "b": 2.0}),
    (v.record(v.literal("a"), v.null()), {"a": None}, {"a": None}),
    (v.union(v.int64(), v.number()), 1, 1),
    (v.union(v.number(), v.int64()), 1, 1.0),
    (v.nullable(v.string()), None, None),
    (v.nullable(v.string()), "x", "x"),
    (v.union(v.string()), "x", "x"),
    (v.any(), (1, [2.5, None], {"k": b"x"}), [1, [2.5, None], {"k": b"x"}]),
    (v.any(), "s", "s"),
    (v.any(), INT64_MIN, INT64_MIN),
]


@pytest.mark.parametrize(("validator", "value", "expected"), ACCEPTS, ids=repr)
def test_accepts_and_normalizes(validator: Validator, value: Any, expected: Any) -> None:
    result = validator.validate(value)
    assert result == expected
    assert type(result) is type(expected)


REFUSES: list[tuple[Validator, Any]] = [
    (v.string(), "\ud800"),
    (v.string(), "a\udfffb"),
    (v.string(), b"a"),
    (v.string(), None),
    (v.string(), 1),
    (v.number(), True),
    (v.number(), "1"),
    (v.number(), None),
    (v.number(), 10**400),
    (v.float64(), [1.0]),
    (v.int64(), True),
    (v.int64(), False),
    (v.int64(), 1.0),
    (v.int64(), INT64_MAX + 1),
    (v.int64(), INT64_MIN - 1),
    (v.int64(), "1"),
    (v.boolean(), 1),
    (v.boolean(), 0),
    (v.boolean(), None),
    (v.null(), 0),
    (v.null(), False),
    (v.null(), ""),
    (v.bytes(), "ab"),
    (v.bytes(), [1]),
    (v.id("projects"), "not an id"),
    (v.id("projects"), str(PROJECT)[:-1] + ("k" if str(PROJECT)[-1] != "k" else "m")),
    (v.id("projects"), 10001),
    (v.literal("a"), "b"),
    (v.literal("a"), "A"),
    (v.literal(1), 1.0),
    (v.literal(1), True),
    (v.literal(1), 2),
    (v.literal(1.0), True),
    (v.literal(-0.0), 0.0),
    (v.literal(0.0), -0.0),
    (v.literal(True), 1),
    (v.literal(False), 0),
    (v.literal(False), None),
    (v.array(v.string()), "abc"),
    (v.array(v.string()), {"a": "b"}),
    (v.array(v.string()), ["a", 1]),
    (v.object({}), []),
    (v.object({"a": v.string()}), {}),
    (v.object({"a": v.optional(v.number())}), {"a": None}),
    (v.object({"a": v.string()}), {"a": "x", "b": "y"}),
    (v.object({"a": v.string()}), {"a": "x", 1: "y"}),
    (v.record(v.string(), v.number()), {"a": "1"}),
    (v.record(v.string(), v.number()), [("a", 1)]),
    (v.record(v.literal("a"), v.number()), {"b": 1}),
    (v.union(v.literal("A"), v.literal("B")), "C"),
    (v.nullable(v.string()), 0),
    (v.union(v.int64(), v.string()), 1.5),
    (v.any(), {1, 2}),
    (v.any(), 2**64),
    (v.any(), {"a": object()}),
    (v.any(), "\ud800"),
    (v.any(), zapnb.UNSET),
]


@pytest.mark.parametrize(("validator", "value"), REFUSES, ids=repr)
def test_refuses(validator: Validator, value: Any) -> None:
    err = error_of(validator, value)
    assert err.table is None
    assert str(err).startswith(("Value does not match validator.", "Object "))


def test_number_keeps_nan_and_negative_zero() -> None:
    assert math.isnan(v.number().validate(NAN))
    negative_zero = v.number().validate(-0.0)
    assert negative_zero == 0.0
    assert math.copysign(1.0, negative_zero) == -1.0
    assert math.copysign(1.0, v.number().validate(-NAN)) == -1.0
    assert math.isnan(v.literal(NAN).validate(NAN))
    assert math.copysign(1.0, v.literal(-0.0).validate(-0.0)) == -1.0


def test_huge_int_for_number_is_a_validation_error_not_overflow() -> None:
    err = error_of(v.number(), 10**400)
    assert err.validator == "v.number()"
    with pytest.raises(SchemaValidationError):
        v.literal(1.0).validate(10**400)


def test_int_subclasses_and_str_subclasses_are_plain_after_validation() -> None:
    import enum

    class Color(enum.StrEnum):
        RED = "RED"

    class Count(enum.IntEnum):
        ONE = 1

    assert type(v.string().validate(Color.RED)) is str
    assert type(v.literal("RED").validate(Color.RED)) is str
    assert type(v.int64().validate(Count.ONE)) is int
    assert v.number().validate(Count.ONE) == 1.0


def test_id_is_normalized_to_an_id_of_its_table() -> None:
    result = v.id("projects").validate(str(PROJECT))
    assert isinstance(result, Id)
    assert (result, result.table, result.table_number) == (PROJECT, "projects", 10001)
    assert v.id("projects").validate(PROJECT).table == "projects"
    assert v.id("projects").validate(PROJECT.with_table("projects"), ids=NUMBERS).table == "projects"
    nested = v.object({"ids": v.array(v.id("users"))}).validate({"ids": [str(USER)]}, ids=NUMBERS)
    assert nested["ids"][0].table == "users"


def test_record_keys_can_be_ids() -> None:
    result = v.record(v.id("users"), v.boolean()).validate({str(USER): True})
    key = next(iter(result))
    assert isinstance(key, Id)
    assert key.table == "users"
    err = error_of(v.record(v.id("users"), v.boolean()), {"nope": True})
    assert err.path == ".keys()"
    assert error_of(v.record(v.string(), v.int64()), {"k": "x"}).path == ".k"


def test_object_output_follows_the_validator_and_is_a_new_dict() -> None:
    doc = {"b": 1, "a": "x"}
    result = v.object({"a": v.string(), "b": v.number()}).validate(doc)
    assert list(result) == ["a", "b"]
    assert result is not doc
    assert doc == {"b": 1, "a": "x"}


def test_union_reports_the_whole_union_and_one_member_unions_report_the_member() -> None:
    err = error_of(v.union(v.object({"a": v.string()}), v.null()), {"a": 1}, path=".x")
    assert str(err) == (
        'Value does not match validator.\nPath: .x\nValue: {"a":1}\n'
        "Validator: v.union(v.object({a: v.string()}), v.null())"
    )
    single = error_of(v.union(v.object({"a": v.string()})), {"a": 1})
    assert single.path == ".a"


def test_any_reports_the_inner_path() -> None:
    err = error_of(v.object({"files": v.any()}), {"files": {"a": [1, {2}]}})
    assert err.path == ".files.a[1]"
    assert err.validator == "v.any()"


# --- describing, equality, misuse ---------------------------------------------------------------------------

DESCRIBED: list[tuple[Validator, str]] = [
    (v.string(), "v.string()"),
    (v.number(), "v.number()"),
    (v.float64(), "v.float64()"),
    (v.int64(), "v.int64()"),
    (v.boolean(), "v.boolean()"),
    (v.null(), "v.null()"),
    (v.bytes(), "v.bytes()"),
    (v.any(), "v.any()"),
    (v.id("projects"), 'v.id("projects")'),
    (v.literal("NEXTJS"), 'v.literal("NEXTJS")'),
    (v.literal('a"b'), 'v.literal("a\\"b")'),
    (v.literal(3), "v.literal(3)"),
    (v.literal(2.5), "v.literal(2.5)"),
    (v.literal(True), "v.literal(True)"),
    (v.literal(NAN), 'v.literal(float("nan"))'),
    (v.literal(float("-inf")), 'v.literal(-float("inf"))'),
    (v.array(v.int64()), "v.array(v.int64())"),
    (v.optional(v.string()), "v.optional(v.string())"),
    (v.nullable(v.string()), "v.union(v.string(), v.null())"),
    (v.record(v.string(), v.any()), "v.record(v.string(), v.any())"),
    (
        v.object({"name": v.string(), "age": v.optional(v.number())}),
        "v.object({name: v.string(), age: v.optional(v.number())})",
    ),
    (v.object({}), "v.object({})"),
]


@pytest.mark.parametrize(("validator", "text"), DESCRIBED, ids=lambda x: str(x))
def test_describe_and_repr_are_convex_style_source(validator: Validator, text: str) -> None:
    assert validator.describe() == text
    assert repr(validator) == text
    assert str(validator) == text


def test_equality_and_hashing() -> None:
    assert v.number() == v.float64()
    assert hash(v.number()) == hash(v.float64())
    assert v.literal(1) != v.literal(1.0)
    assert v.literal(1) != v.literal(True)
    assert v.literal(0.0) != v.literal(-0.0)
    assert v.literal(NAN) == v.literal(NAN)
    assert hash(v.literal(NAN)) == hash(v.literal(NAN))
    assert v.id("a") != v.id("b")
    assert v.object({"a": v.string(), "b": v.int64()}) == v.object({"b": v.int64(), "a": v.string()})
    assert v.object({"a": v.string()}) != v.object({"a": v.optional(v.string())})
    assert v.union(v.string(), v.null()) == v.nullable(v.string())
    assert v.union(v.string(), v.null()) != v.union(v.null(), v.string())
    assert len({v.array(v.string()), v.array(v.string()), v.array(v.bytes())}) == 2
    assert v.string() != v.literal("v.string()")


def test_validators_are_immutable() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        v.id("a").table = "b"  # type: ignore[misc]


@pytest.mark.parametrize(
    "build",
    [
        lambda: v.array(v.optional(v.string())),
        lambda: v.union(v.string(), v.optional(v.string())),
        lambda: v.nullable(v.optional(v.string())),
        lambda: v.optional(v.optional(v.string())),
        lambda: v.record(v.string(), v.optional(v.string())),
    ],
)
def test_optional_outside_an_object_field_is_refused(build: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match=r"only valid as a field of v\.object"):
        build()


def test_optional_cannot_validate_a_value_on_its_own() -> None:
    with pytest.raises(SchemaDefinitionError) as info:
        v.optional(v.string()).validate("x")
    assert str(info.value) == (
        "v.optional(v.string()) cannot check a value on its own: v.optional(...) is only valid as a field of "
        "v.object({...}) or define_table({...}). Validate with v.string() instead."
    )


@pytest.mark.parametrize("keys", [v.number(), v.any(), v.union(v.string(), v.int64()), v.literal(1)])
def test_record_keys_must_be_string_like(keys: Validator) -> None:
    with pytest.raises(SchemaDefinitionError, match=r"cannot be the keys of v\.record"):
        v.record(keys, v.string())


def test_record_accepts_string_like_keys() -> None:
    assert v.record(v.union(v.literal("a"), v.id("users"), v.string()), v.int64()).validate({"a": 1}) == {
        "a": 1
    }


@pytest.mark.parametrize("value", [[1], {"a": 1}, b"x", None, 2**63, "\ud800"])
def test_literal_values_are_checked(value: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match="is not a literal"):
        v.literal(value)


def test_bad_builder_arguments() -> None:
    with pytest.raises(SchemaDefinitionError, match="at least one member"):
        v.union()
    with pytest.raises(SchemaDefinitionError, match="takes validators"):
        v.array("string")  # type: ignore[arg-type]
    with pytest.raises(SchemaDefinitionError, match="takes a table name"):
        v.id("")
    with pytest.raises(SchemaDefinitionError, match="not a validator"):
        v.object({"a": str})  # type: ignore[dict-item]
    with pytest.raises(SchemaDefinitionError, match="invalid field name '\\$x'"):
        v.object({"$x": v.string()})
    assert v.object({"_private": v.string()}).validate({"_private": "ok"}) == {"_private": "ok"}


def test_zapnb_exports_the_builder() -> None:
    assert zapnb.v is v


# --- Polars dtypes ------------------------------------------------------------------------------------------

DTYPES: list[tuple[Validator, pl.DataType, bool]] = [
    (v.string(), pl.String(), False),
    (v.number(), pl.Float64(), False),
    (v.float64(), pl.Float64(), False),
    (v.int64(), pl.Int64(), False),
    (v.boolean(), pl.Boolean(), False),
    (v.bytes(), pl.Binary(), False),
    (v.null(), pl.Null(), False),
    (v.id("users"), pl.String(), False),
    (v.any(), pl.String(), True),
    (v.literal("a"), pl.Enum(["a"]), False),
    (v.literal(1), pl.Int64(), False),
    (v.literal(1.5), pl.Float64(), False),
    (v.literal(True), pl.Boolean(), False),
    (v.array(v.number()), pl.List(pl.Float64()), False),
    (v.array(v.any()), pl.List(pl.String()), False),
    (
        v.object({"a": v.int64(), "b": v.optional(v.string())}),
        pl.Struct({"a": pl.Int64(), "b": pl.String()}),
        False,
    ),
    (v.record(v.string(), v.number()), pl.String(), True),
    (v.optional(v.int64()), pl.Int64(), False),
    (FRAMEWORK, pl.Enum(["NEXTJS", "ANGULAR"]), False),
    (v.union(v.literal("b"), v.literal("a"), v.literal("b")), pl.Enum(["b", "a"]), False),
    (v.nullable(FRAMEWORK), pl.Enum(["NEXTJS", "ANGULAR"]), False),
    (v.union(v.literal("x"), v.null(), v.literal("y")), pl.Enum(["x", "y"]), False),
    (v.optional(FRAMEWORK), pl.Enum(["NEXTJS", "ANGULAR"]), False),
    (v.nullable(v.int64()), pl.Int64(), False),
    (v.nullable(v.object({"a": v.bytes()})), pl.Struct({"a": pl.Binary()}), False),
    (v.union(v.literal(1), v.literal(2)), pl.Int64(), False),
    (v.union(v.literal(True), v.boolean()), pl.Boolean(), False),
    (v.union(v.null()), pl.Null(), False),
    (v.union(v.string(), v.literal("a")), pl.String(), False),
    (v.union(v.id("a"), v.id("b")), pl.String(), False),
    (v.union(v.int64(), v.number()), pl.String(), True),
    (v.union(v.string(), v.int64()), pl.String(), True),
    (v.union(v.object({"a": v.string()}), v.object({"b": v.string()})), pl.String(), True),
    (v.nullable(v.any()), pl.String(), True),
]


@pytest.mark.parametrize(("validator", "dtype", "json_text"), DTYPES, ids=repr)
def test_polars_dtype(validator: Validator, dtype: pl.DataType, json_text: bool) -> None:
    assert validator.polars_dtype() == dtype
    assert validator.stores_json() is json_text
    frame = pl.DataFrame(schema={"c": validator.polars_dtype()})
    assert frame.schema["c"] == dtype


def test_importing_validators_does_not_import_polars() -> None:
    import subprocess
    import sys

    code = "import sys, zapnb.validators, zapnb.columns, zapnb.schema; print('polars' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- JSON ---------------------------------------------------------------------------------------------------


def test_json_round_trip_of_every_kind() -> None:
    everything = v.object(
        {
            "s": v.string(),
            "n": v.number(),
            "f": v.float64(),
            "i": v.int64(),
            "b": v.boolean(),
            "z": v.null(),
            "raw": v.bytes(),
            "id": v.id("users"),
            "lit": v.union(v.literal("a"), v.literal(1), v.literal(-0.0), v.literal(NAN), v.literal(True)),
            "arr": v.array(v.nullable(v.int64())),
            "rec": v.record(v.id("users"), v.any()),
            "opt": v.optional(v.object({"deep": v.optional(v.array(v.string()))})),
        }
    )
    data = everything.to_json()
    again = validator_from_json(data)
    assert again == everything
    assert again.describe() == everything.describe()
    assert data["value"]["opt"]["optional"] is True
    assert validator_from_json(v.optional(v.string()).to_json()) == v.optional(v.string())


@pytest.mark.parametrize(
    "data", [{"type": "nope"}, {}, "string", {"type": "id"}, {"type": "array", "value": 1}]
)
def test_bad_validator_json(data: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match="Cannot read a validator"):
        validator_from_json(data)


# --- paths --------------------------------------------------------------------------------------------------


def test_validators_at() -> None:
    doc = v.object({"a": v.optional(v.object({"b": v.nullable(v.string())})), "c": v.any()})
    assert validators_at(doc, "a.b") == [v.string(), v.null()]
    assert validators_at(doc, "c.anything.below") == [v.any()]
    assert validators_at(doc, "a.x") == []
    assert validators_at(doc, "") == [doc]
