"""Table layouts: typed columns from definitions, exact round trips, columnar input, and layout changes."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zapnb import SchemaValidationError, define_table, v
from zapnb.documents import check_document
from zapnb.errors import InvalidValueError
from zapnb.examples.zapdev import schema as zapdev
from zapnb.ids import Id
from zapnb.layout import JSON_COLUMN, Layout, _row_of
from zapnb.schema import TableDefinition
from zapnb.validators import (
    INT64_MAX,
    INT64_MIN,
    AnyValidator,
    ArrayValidator,
    IdValidator,
    LiteralValidator,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    RecordValidator,
    UnionValidator,
    Validator,
)

NAN = struct.unpack("<d", bytes.fromhex("000000000000f87f"))[0]
NEG_NAN = struct.unpack("<d", bytes.fromhex("000000000000f8ff"))[0]
TABLES = {name: 10001 + i for i, name in enumerate(["projects", "users", *sorted(zapdev.tables)])}
ID = "jx73xh1f86gz7s9zgchp6wzbed7ec7aj"


def same(expected: Any, got: Any, path: str = "") -> None:
    """Assert ``got`` is exactly ``expected``: kinds, float bits, missing fields and ``Id`` labels."""
    if isinstance(expected, str):
        assert isinstance(got, str), path
        assert str(got) == str(expected), path
        if isinstance(expected, Id) and isinstance(got, Id):
            assert got.table == expected.table, path
        return
    assert type(got) is type(expected), f"{path}: {got!r} is not {expected!r}"
    if isinstance(expected, float):
        assert struct.pack("<d", got) == struct.pack("<d", expected), f"{path}: {got!r} != {expected!r}"
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            same(a, b, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert set(got) == set(expected), f"{path}: fields {set(got)} != {set(expected)}"
        for key in expected:
            same(expected[key], got[key], f"{path}.{key}")
    else:
        assert got == expected, path


# --- strategies: validators, and documents that match them -------------------------------------------------

names = st.from_regex(r"[a-z][a-zA-Z0-9]{0,4}", fullmatch=True)
text = st.text(st.characters(codec="utf-8"), max_size=6)
floats = st.one_of(st.floats(), st.sampled_from([NAN, NEG_NAN, 0.0, -0.0, math.inf, -math.inf, 5e-324]))
literals = st.one_of(
    st.builds(v.literal, text),
    st.builds(v.literal, st.integers(-3, 3)),
    st.builds(v.literal, st.sampled_from([1.5, -0.0, NAN, NEG_NAN])),
    st.builds(v.literal, st.booleans()),
)
leaves = st.one_of(
    st.sampled_from(
        [
            *(v.string(), v.number(), v.float64(), v.int64(), v.boolean(), v.bytes(), v.null(), v.any()),
            *(v.id("projects"), v.id("users")),
        ]
    ),
    literals,
)


def _containers(children: st.SearchStrategy[Validator]) -> st.SearchStrategy[Validator]:
    fields = st.dictionaries(names, st.one_of(children, st.builds(v.optional, children)), max_size=3)
    return st.one_of(
        st.builds(v.array, children),
        st.builds(v.object, fields),
        st.builds(v.record, st.just(v.string()), children),
        st.builds(v.nullable, children),
        st.lists(children, min_size=1, max_size=3).map(lambda members: v.union(*members)),
    )


validators = st.recursive(leaves, _containers, max_leaves=5)
zapnb_values = st.recursive(
    st.one_of(
        st.none(), st.integers(INT64_MIN, INT64_MAX), floats, st.booleans(), text, st.binary(max_size=4)
    ),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(names, children, max_size=3)),
    max_leaves=6,
)


def ids_of(table: str) -> st.SearchStrategy[Id]:
    return st.binary(min_size=16, max_size=16).map(lambda raw: Id.encode(TABLES[table], raw, table))


def values_of(validator: Validator) -> st.SearchStrategy[Any]:
    """Values that ``validator`` accepts (raw: validating them normalizes them)."""
    simple: dict[str, st.SearchStrategy[Any]] = {
        "string": text,
        "float64": st.one_of(floats, st.integers(-5, 5)),
        "int64": st.integers(INT64_MIN, INT64_MAX),
        "boolean": st.booleans(),
        "bytes": st.binary(max_size=4),
        "null": st.none(),
    }
    if validator.type_name in simple:
        return simple[validator.type_name]
    if isinstance(validator, AnyValidator):
        return zapnb_values
    if isinstance(validator, IdValidator):
        return ids_of(validator.table)
    if isinstance(validator, LiteralValidator):
        return st.just(validator.value)
    if isinstance(validator, ArrayValidator):
        return st.lists(values_of(validator.element), max_size=3)
    if isinstance(validator, RecordValidator):
        return st.dictionaries(names, values_of(validator.values), max_size=3)
    if isinstance(validator, UnionValidator):
        return st.one_of([values_of(member) for member in validator.members])
    assert isinstance(validator, ObjectValidator), validator
    required = {n: values_of(f) for n, f in validator.fields if not isinstance(f, OptionalValidator)}
    optional = {n: values_of(f.inner) for n, f in validator.fields if isinstance(f, OptionalValidator)}
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def tables(draw: st.DrawFn) -> TableDefinition:
    fields = draw(
        st.dictionaries(names, st.one_of(validators, st.builds(v.optional, validators)), max_size=4)
    )
    return define_table(fields)


def documents(
    definition: TableDefinition, table: str = "users", max_size: int = 5
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Normalized documents of ``definition`` in ``table``, with system fields."""

    def finish(raw: list[tuple[Id, float, dict[str, Any]]]) -> list[dict[str, Any]]:
        docs = []
        for doc_id, created, fields in raw:
            docs.append({"_id": doc_id, "_creationTime": created, **definition.validate_document(fields)})
        return docs

    one = st.tuples(ids_of(table), st.floats(0, 2e12), values_of(definition.document))
    return st.lists(one, max_size=max_size).map(finish)


def round_trips(layout: Layout, docs: list[dict[str, Any]]) -> None:
    table = layout.to_arrow(docs)
    assert table.schema.equals(layout.arrow_schema, check_metadata=True)
    back = layout.to_documents(table)
    read = layout.row_reader(table)
    for i, doc in enumerate(docs):
        same(doc, back[i])
        same(doc, read(i))
    assert len(back) == len(docs)


# --- exact round trips --------------------------------------------------------------------------------------


@given(st.data())
@settings(max_examples=300)
def test_documents_of_any_definition_round_trip_exactly(data: st.DataObject) -> None:
    definition = data.draw(tables())
    docs = data.draw(documents(definition))
    round_trips(Layout.for_table(definition), docs)


@pytest.mark.parametrize("name", sorted(zapdev.tables))
@given(data=st.data())
@settings(max_examples=25)
def test_zapdev_tables_round_trip_exactly(name: str, data: st.DataObject) -> None:
    definition = zapdev.tables[name]
    round_trips(Layout.for_table(definition, table=name), data.draw(documents(definition, name)))


@given(st.lists(st.tuples(ids_of("users"), st.dictionaries(names, zapnb_values, max_size=4)), max_size=5))
def test_the_generic_layout_round_trips_any_document(raw: list[tuple[Id, dict[str, Any]]]) -> None:
    docs = [{"_id": doc_id, "_creationTime": 1.0, **check_document(fields)} for doc_id, fields in raw]
    layout = Layout.for_table(None)
    assert layout.arrow_schema.names == ["_id", "_creationTime", JSON_COLUMN]
    round_trips(layout, docs)


@given(st.data())
def test_a_union_of_objects_as_the_table_validator_round_trips(data: st.DataObject) -> None:
    a = v.object({"kind": v.literal("a"), "n": v.int64(), "tags": v.array(v.string())})
    b = v.object({"kind": v.literal("b"), "n": v.number(), "note": v.optional(v.string())})
    definition = define_table(v.union(a, b))
    layout = Layout.for_table(definition)
    assert repr(layout).endswith("kind: string, n: json, tags: list<string>?, note: string?)")
    round_trips(layout, data.draw(documents(definition)))


def test_missing_and_null_stay_apart_where_both_are_possible() -> None:
    layout = Layout.for_table(
        define_table({"a": v.optional(v.nullable(v.string())), "o": v.object({"b": v.optional(v.any())})})
    )
    assert repr(layout) == "Layout(_id: string, _creationTime: float64, a: json?, o: struct<b: json?>)"
    docs = [
        {"_id": ID, "_creationTime": 1.0, "a": None, "o": {"b": None}},
        {"_id": ID, "_creationTime": 2.0, "o": {}},
        {"_id": ID, "_creationTime": 3.0, "a": "x", "o": {"b": [1, 1.0]}},
    ]
    table = layout.to_arrow(docs)
    assert table.column("a").to_pylist() == ["null", None, '"x"']
    assert layout.arrow_schema.field("a").metadata == {b"zapnb.encoding": b"json"}
    round_trips(layout, docs)


def test_floats_keep_their_bits() -> None:
    layout = Layout.for_table(define_table({"x": v.array(v.number())}))
    xs = [-0.0, 0.0, NAN, NEG_NAN, math.inf, -math.inf, 5e-324]
    round_trips(layout, [{"_id": ID, "_creationTime": -0.0, "x": xs}])


def test_ids_come_back_labelled_with_their_table() -> None:
    project = Id.encode(10001, bytes(16), "projects")
    layout = Layout.for_table(
        define_table(
            {
                "p": v.id("projects"),
                "q": v.optional(v.nullable(v.id("projects"))),
                "many": v.array(v.nullable(v.id("projects"))),
                "o": v.object({"p": v.optional(v.id("projects"))}),
                "mixed": v.union(v.id("projects"), v.id("users")),
            }
        ),
        table="tasks",
    )
    doc = {"_id": ID, "_creationTime": 1.0, "p": project, "q": project, "many": [project, None]}
    [back] = layout.to_documents(layout.to_arrow([doc | {"o": {"p": project}, "mixed": project}]))
    for value in (back["p"], back["q"], back["many"][0], back["o"]["p"]):
        assert isinstance(value, Id)
        assert value.table == "projects"
    assert isinstance(back["_id"], Id)
    assert back["_id"].table == "tasks"
    assert type(back["mixed"]) is str  # a union of tables: plain text
    assert back["mixed"] == project


# --- layouts of definitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "described", "arrow_type"),
    [
        (v.string(), "string", pa.string()),
        (v.union(v.literal("A"), v.literal("B")), "string", pa.string()),
        (v.union(v.literal("A"), v.id("users")), "string", pa.string()),
        (v.number(), "float64", pa.float64()),
        (v.literal(2), "int64", pa.int64()),
        (v.nullable(v.boolean()), "boolean | null", pa.bool_()),
        (v.optional(v.bytes()), "bytes?", pa.binary()),
        (v.null(), "null", pa.null()),
        (v.optional(v.null()), "json?", pa.string()),
        (v.union(v.int64(), v.number()), "json", pa.string()),
        (v.record(v.string(), v.number()), "json", pa.string()),
        (v.object({}), "json", pa.string()),
        (v.array(v.any()), "list<json>", pa.list_(pa.field("item", pa.string()))),
        (
            v.nullable(v.object({"n": v.optional(v.int64())})),
            "struct<n: int64?> | null",
            pa.struct([pa.field("n", pa.int64())]),
        ),
    ],
    ids=repr,
)
def test_the_column_of_each_kind_of_field(field: Validator, described: str, arrow_type: pa.DataType) -> None:
    layout = Layout.for_table(define_table({"f": field}))
    assert repr(layout) == f"Layout(_id: string, _creationTime: float64, f: {described})"
    assert layout.arrow_schema.field("f").type.equals(arrow_type)


def test_a_definition_that_is_any_has_the_generic_layout() -> None:
    assert Layout.for_table(define_table(v.any())).is_generic
    assert not Layout.for_table(define_table({"a": v.any()})).is_generic


def test_empty_tables_have_the_full_typed_schema() -> None:
    for name, definition in zapdev.tables.items():
        layout = Layout.for_table(definition, table=name)
        table = layout.to_arrow([])
        assert table.num_rows == 0
        assert table.schema.equals(layout.arrow_schema, check_metadata=True)
        assert layout.to_documents(table) == []
    assert Layout.for_table(zapdev.tables["messages"]).arrow_schema.names == [
        "_id", "_creationTime", "content", "role", "type", "status", "projectId", "createdAt", "updatedAt"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "same_layout"),
    [
        (v.string(), v.optional(v.string()), True),
        (v.union(v.literal("a")), v.union(v.literal("a"), v.literal("b")), True),
        (v.string(), v.id("users"), True),
        (v.nullable(v.number()), v.number(), True),
        (v.any(), v.record(v.string(), v.any()), True),
        (v.string(), v.union(v.string(), v.int64()), False),
        (v.number(), v.int64(), False),
        (v.nullable(v.string()), v.optional(v.nullable(v.string())), False),
        (v.object({"a": v.string()}), v.object({"a": v.string(), "b": v.optional(v.string())}), False),
    ],
    ids=repr,
)
def test_equals_tells_when_a_table_must_be_rewritten(
    old: Validator, new: Validator, same_layout: bool
) -> None:
    before, after = (Layout.for_table(define_table({"f": f})) for f in (old, new))
    assert before.equals(after) is same_layout
    assert Layout.for_table(None).equals(Layout.for_table(define_table(v.any())))
    assert not Layout.for_table(None).equals(before)


# --- documents that do not fit ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "doc", "path"),
    [
        ({"n": v.number()}, {"n": 1}, ".n"),
        ({"n": v.int64()}, {"n": True}, ".n"),
        ({"n": v.int64()}, {"n": 2**63}, ".n"),
        ({"n": v.number()}, {}, ".n"),
        ({"n": v.optional(v.number())}, {"n": None}, ".n"),
        ({"n": v.number()}, {"n": 1.0, "extra": 1}, ".extra"),
        ({"o": v.array(v.object({"a": v.string()}))}, {"o": [{"a": "x"}, {"a": 1}]}, ".o[1].a"),
        ({"o": v.object({"a": v.string()})}, {"o": {"a": "x", "b": 1}}, ".o"),
        ({"j": v.any()}, {"j": {1, 2}}, ".j"),
    ],
    ids=repr,
)
def test_to_arrow_refuses_what_its_columns_cannot_hold(
    fields: Mapping[str, Validator], doc: dict[str, Any], path: str
) -> None:
    layout = Layout.for_table(define_table(fields))
    with pytest.raises(InvalidValueError) as info:
        layout.to_arrow([{"_id": ID, "_creationTime": 1.0, **doc}])
    assert info.value.path == path
    assert ID in str(info.value)


def test_system_fields_are_required() -> None:
    layout = Layout.for_table(None)
    with pytest.raises(InvalidValueError, match="_creationTime"):
        layout.to_arrow([{"_id": ID}])
    with pytest.raises(InvalidValueError, match="_creationTime"):
        layout.to_arrow([{"_id": ID, "_creationTime": 1}])


def test_reading_a_table_of_another_layout_is_refused() -> None:
    table = Layout.for_table(define_table({"a": v.string()})).to_arrow([])
    with pytest.raises(InvalidValueError, match="not this layout"):
        Layout.for_table(define_table({"a": v.number()})).to_documents(table)


# --- columnar input -----------------------------------------------------------------------------------------


def frame_of(definition: TableDefinition, docs: list[dict[str, Any]]) -> pl.DataFrame:
    """The frame zapnb.columns makes of ``docs``: each field validated as a column (null: missing)."""
    columns = [
        pl.Series("_id", [str(doc["_id"]) for doc in docs], dtype=pl.String),
        pl.Series("_creationTime", [doc["_creationTime"] for doc in docs], dtype=pl.Float64),
    ]
    assert isinstance(definition.document, ObjectValidator)
    for name, field in definition.document.fields:
        cells = pl.Series(name, [doc.get(name) for doc in docs], dtype=pl.Object)
        columns.append(field.validate_column(cells, optional=isinstance(field, OptionalValidator)))
    return pl.DataFrame(columns)


def frame_safe(validator: Validator, value: Any) -> bool:
    """Whether a frame can carry ``value`` (it reads null as missing in optional fields that admit null)."""
    if isinstance(validator, ObjectValidator) and isinstance(value, dict):
        for name, field in validator.fields:
            if isinstance(field, OptionalValidator):
                if value.get(name, 0) is None and _admits_null(field.inner):
                    return False
                field = field.inner
            if name in value and not frame_safe(field, value[name]):
                return False
        return True
    if isinstance(validator, ArrayValidator) and isinstance(value, list):
        return all(frame_safe(validator.element, item) for item in value)
    if isinstance(validator, UnionValidator):
        for member in validator.members:
            try:
                member.validate(value)
            except SchemaValidationError:
                continue
            return frame_safe(member, value)
    return True


def _admits_null(validator: Validator) -> bool:
    if isinstance(validator, NullValidator | AnyValidator):
        return True
    return isinstance(validator, UnionValidator) and any(_admits_null(m) for m in validator.members)


@given(st.data())
@settings(max_examples=200)
def test_from_polars_matches_to_arrow(data: st.DataObject) -> None:
    definition = data.draw(tables())
    docs = [doc for doc in data.draw(documents(definition)) if frame_safe(definition.document, doc)]
    layout = Layout.for_table(definition)
    table = layout.from_polars(frame_of(definition, docs))
    assert table.schema.equals(layout.arrow_schema, check_metadata=True)
    for expected, got in zip(docs, layout.to_documents(table), strict=True):
        same(expected, got)


@pytest.mark.parametrize("name", sorted(zapdev.tables))
@given(data=st.data())
@settings(max_examples=10)
def test_from_arrow_takes_zapdev_frames(name: str, data: st.DataObject) -> None:
    definition = zapdev.tables[name]
    docs = [doc for doc in data.draw(documents(definition)) if frame_safe(definition.document, doc)]
    layout = Layout.for_table(definition)
    table = layout.from_arrow(frame_of(definition, docs).to_arrow())
    for expected, got in zip(docs, layout.to_documents(table), strict=True):
        same(expected, got)


def test_from_polars_for_the_generic_layout_takes_json_text() -> None:
    frame = pl.DataFrame(
        {"_id": [ID, ID], "_creationTime": [1.0, 2.0], "a": ["[1,2.0]", None], "b": ["null", '"x"']}
    )
    docs = Layout.for_table(None).to_documents(Layout.for_table(None).from_polars(frame))
    assert docs == [
        {"_id": ID, "_creationTime": 1.0, "a": [1, 2.0], "b": None},
        {"_id": ID, "_creationTime": 2.0, "b": "x"},
    ]
    with pytest.raises(InvalidValueError, match="not zapnb JSON"):
        Layout.for_table(None).from_polars(frame.with_columns(pl.lit("plain text").alias("a")))


def test_from_polars_refuses_what_validate_column_does_not_make() -> None:
    layout = Layout.for_table(define_table({"n": v.number(), "s": v.optional(v.string())}))
    frame = pl.DataFrame({"_id": [ID], "_creationTime": [1.0], "n": [1.0]})
    assert layout.to_documents(layout.from_polars(frame)) == [{"_id": ID, "_creationTime": 1.0, "n": 1.0}]
    with pytest.raises(InvalidValueError, match="required"):
        layout.from_polars(frame.drop("n"))
    with pytest.raises(InvalidValueError, match="required"):
        layout.from_polars(frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("n")))
    with pytest.raises(InvalidValueError, match="no field 'x'"):
        layout.from_polars(frame.with_columns(pl.lit(1).alias("x")))
    with pytest.raises(InvalidValueError, match="_id"):
        layout.from_polars(frame.drop("_id"))
    meta = Layout.for_table(define_table({"meta": v.optional(v.any())}))
    with pytest.raises(InvalidValueError, match="not zapnb JSON") as info:
        meta.from_polars(frame.drop("n").with_columns(pl.lit("{oops").alias("meta")))
    assert info.value.path == "[0].meta"
    both = Layout.for_table(define_table({"n": v.optional(v.nullable(v.int64()))}))
    with pytest.raises(InvalidValueError, match="not what validate_column makes"):
        both.from_polars(frame.with_columns(pl.lit("x").alias("n")))


def test_rows_read_through_polars_internals_match_its_public_rows() -> None:
    frame = pl.DataFrame({"s": ["a", None, "é"], "x": [1.5, float("nan"), None], "l": [[1], [], None]})
    read = _row_of(frame)
    assert read is not frame.row  # this Polars has the Rust-side call
    assert [repr(read(i)) for i in range(3)] == [repr(frame.row(i)) for i in range(3)]


def test_rows_fall_back_to_the_public_call_without_polars_internals() -> None:
    class Public:
        """A frame as a Polars release without ``_df.row_tuple`` would present it."""

        height = 1

        def row(self, i: int) -> tuple[int, ...]:
            return (i,)

    frame = Public()
    assert _row_of(frame).__func__ is Public.row  # type: ignore[arg-type, attr-defined]
