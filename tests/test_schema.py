"""Schemas: table definitions, every definition rule with its message, document validation and JSON."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import SchemaDefinitionError, SchemaValidationError, define_schema, define_table, v
from zapnb.ids import Id
from zapnb.schema import Index, Schema, SearchIndex, TableDefinition, VectorIndex

T = define_table(
    {
        "a": v.string(),
        "b": v.number(),
        "o": v.object({"x": v.string(), "_y": v.string()}),
        "vec": v.array(v.float64()),
        "n": v.optional(v.number()),
    }
)
NOT_A_TABLE: Any = {"a": v.string()}
ONE: Any = 1
A_LIST: Any = [("t", T)]
WIDE = define_table({f"f{i}": v.string() for i in range(18)})
RESERVED_NAME = (
    'In table "t" cannot name an index "{}" because the name is reserved. Indexes may not start with an '
    'underscore or be named "by_id" or "by_creation_time".'
)
INVALID_INDEX_NAME = (
    'In table "t": Invalid index name: "{}". Identifiers must be 64 characters or less, start with a letter, '
    "and only contain letters, digits, underscores."
)
INVALID_TABLE_NAME = (
    'Invalid table name: "{}". Identifiers must start with a letter, can only contain letters, digits, and '
    "underscores, and are at most 64 characters."
)


def with_indexes(count: int) -> TableDefinition:
    def add(table: TableDefinition, i: int) -> TableDefinition:
        return table.index(f"i{i}", [f"f{i % 18}", f"f{(i % 18 + 1 + i // 18) % 18}"])

    return functools.reduce(add, range(count), WIDE)


RULES: list[tuple[str, Callable[[], object], str]] = [
    (
        "reserved table",
        lambda: define_schema({"_t": T}),
        '"_t" is a reserved table name: names starting with "_" belong to system tables. Rename it.',
    ),
    (
        "table identifier",
        lambda: define_schema({"1t": T}),
        INVALID_TABLE_NAME.format("1t"),
    ),
    (
        "table with dash",
        lambda: define_schema({"my-t": T}),
        INVALID_TABLE_NAME.format("my-t"),
    ),
    (
        "table too long",
        lambda: define_schema({"t" * 65: T}),
        INVALID_TABLE_NAME.format("t" * 65),
    ),
    (
        "not a table",
        lambda: define_schema({"t": NOT_A_TABLE}),
        "Table \"t\" is {'a': v.string()}: wrap its fields in define_table({...}).",
    ),
    (
        "by_id",
        lambda: define_schema({"t": T.index("by_id", ["a"])}),
        RESERVED_NAME.format("by_id"),
    ),
    (
        "by_creation_time",
        lambda: define_schema({"t": T.index("by_creation_time", ["a"])}),
        RESERVED_NAME.format("by_creation_time"),
    ),
    (
        "underscore index",
        lambda: define_schema({"t": T.index("_by_a", ["a"])}),
        RESERVED_NAME.format("_by_a"),
    ),
    (
        "reserved search index name",
        lambda: define_schema({"t": T.search_index("by_id", search_field="a")}),
        RESERVED_NAME.format("by_id"),
    ),
    (
        "index identifier",
        lambda: define_schema({"t": T.index("by-a", ["a"])}),
        INVALID_INDEX_NAME.format("by-a"),
    ),
    (
        "index too long",
        lambda: define_schema({"t": T.index("b" * 65, ["a"])}),
        INVALID_INDEX_NAME.format("b" * 65),
    ),
    (
        "duplicate index name",
        lambda: define_schema({"t": T.index("x", ["a"]).index("x", ["b"])}),
        'Table "t" has two or more definitions of index "x". Give each index its own name.',
    ),
    (
        "duplicate name across kinds",
        lambda: define_schema({"t": T.index("x", ["a"]).vector_index("x", vector_field="vec", dimensions=2)}),
        'Table "t" has two or more definitions of index "x". Give each index its own name.',
    ),
    (
        "empty index",
        lambda: define_schema({"t": T.index("x", [])}),
        'In table "t" index "x" must have at least one field. Queries without an index already run in '
        "creation-time order (by_creation_time).",
    ),
    (
        "_id field",
        lambda: define_schema({"t": T.index("x", ["a", "_id"])}),
        'In table "t" index "x": `_id` is not a valid index field. '
        "To load documents by ID, use `db.get(id)`.",
    ),
    (
        "_creationTime last",
        lambda: define_schema({"t": T.index("x", ["a", "_creationTime"])}),
        'In table "t" index "x": `_creationTime` is automatically added to the end of each index. It '
        "should not be added explicitly in the index definition: remove it.",
    ),
    (
        "_creationTime first",
        lambda: define_schema({"t": T.index("x", ["_creationTime", "a"])}),
        'In table "t" index "x": `_creationTime` is automatically added to the end of each index. It '
        "should not be added explicitly in the index definition: remove it.",
    ),
    (
        "reserved nested field",
        lambda: define_schema({"t": T.index("x", ["o._y"])}),
        'In table "t" index "x": Reserved fields (starting with `_`) are not allowed in indexes: remove '
        '"o._y".',
    ),
    (
        "reserved field",
        lambda: define_schema({"t": T.index("x", ["_a"])}),
        'In table "t" index "x": Reserved fields (starting with `_`) are not allowed in indexes: '
        'remove "_a".',
    ),
    (
        "bad path",
        lambda: define_schema({"t": T.index("x", ["a..b"])}),
        'In table "t" index "x": Invalid index field: "a..b". Use a field name, or a path such as "a.b" '
        "into a nested object.",
    ),
    (
        "dollar path",
        lambda: define_schema({"t": T.index("x", ["$a"])}),
        'In table "t" index "x": Invalid index field: "$a". Use a field name, or a path such as "a.b" '
        "into a nested object.",
    ),
    (
        "duplicate field",
        lambda: define_schema({"t": T.index("x", ["a", "b", "a"])}),
        'In table "t" index "x": Duplicate field a. Index fields must be unique within an index.',
    ),
    (
        "16 fields",
        lambda: define_schema({"t": WIDE.index("x", [f"f{i}" for i in range(16)])}),
        'In table "t" index "x": Indexes may have up to 15 fields (zapnb appends `_creationTime`, '
        "making Convex's limit of 16); this one has 16. Remove fields.",
    ),
    (
        "same fields",
        lambda: define_schema({"t": T.index("x", ["a", "b"]).index("y", ["a", "b"])}),
        'In table "t" index "x" and index "y" have the same fields. Indexes must be unique within a '
        "table; remove one of them.",
    ),
    (
        "same fields staged",
        lambda: define_schema({"t": T.index("x", ["a"]).index("y", ["a"], staged=True)}),
        'In table "t" index "x" and index "y" have the same fields. Indexes must be unique within a '
        "table; remove one of them.",
    ),
    (
        "65 indexes",
        lambda: define_schema({"t": with_indexes(65)}),
        'Table "t" cannot have more than 64 indexes; it has 65.',
    ),
    (
        "unknown field",
        lambda: define_schema({"t": T.index("x", ["zz"])}),
        'In table "t" the index "x" is invalid because it references the field zz that does not '
        "exist. Add the field to the table's validator, or fix the index.",
    ),
    (
        "unknown nested field",
        lambda: define_schema({"t": T.index("x", ["o.zz"])}),
        'In table "t" the index "x" is invalid because it references the field o.zz that does not '
        "exist. Add the field to the table's validator, or fix the index.",
    ),
    (
        "field below a scalar",
        lambda: define_schema({"t": T.index("x", ["a.b"])}),
        'In table "t" the index "x" is invalid because it references the field a.b that does not '
        "exist. Add the field to the table's validator, or fix the index.",
    ),
    (
        "search field not a string",
        lambda: define_schema({"t": T.search_index("s", search_field="b")}),
        'In table "t" the search index "s" is invalid because its search field b is not a string field '
        "(it is v.number()); search a v.string() field.",
    ),
    (
        "unknown search field",
        lambda: define_schema({"t": T.search_index("s", search_field="zz")}),
        'In table "t" the search index "s" is invalid because it references the field zz that does '
        "not exist. Add the field to the table's validator, or fix the index.",
    ),
    (
        "unknown filter field",
        lambda: define_schema({"t": T.search_index("s", search_field="a", filter_fields=["zz"])}),
        'In table "t" the search index "s" is invalid because it references the field zz that does '
        "not exist. Add the field to the table's validator, or fix the index.",
    ),
    (
        "same search field",
        lambda: define_schema(
            {"t": T.search_index("s", search_field="a").search_index("s2", search_field="a")}
        ),
        'In table "t" search index "s" and search index "s2" have the same `searchField`. Search index '
        "fields must be unique within a table; combine them into one index with all the filter fields.",
    ),
    (
        "17 filter fields",
        lambda: define_schema(
            {"t": WIDE.search_index("s", search_field="f0", filter_fields=[f"f{i}" for i in range(1, 18)])}
        ),
        'In table "t" index "s": Search indexes may have up to 16 filter fields; this one has 17.',
    ),
    (
        "duplicate filter field",
        lambda: define_schema({"t": T.search_index("s", search_field="a", filter_fields=["b", "b"])}),
        'In table "t" index "s": Duplicate filter field b. List each filter field once.',
    ),
    (
        "1 dimension",
        lambda: define_schema({"t": T.vector_index("v", vector_field="vec", dimensions=1)}),
        'In table "t" index "v": Dimensions 1 must be between 2 and 4096: pass the length of your '
        "embeddings as an int.",
    ),
    (
        "4097 dimensions",
        lambda: define_schema({"t": T.vector_index("v", vector_field="vec", dimensions=4097)}),
        'In table "t" index "v": Dimensions 4097 must be between 2 and 4096: pass the length of your '
        "embeddings as an int.",
    ),
    (
        "bool dimensions",
        lambda: define_schema({"t": T.vector_index("v", vector_field="vec", dimensions=True)}),
        'In table "t" index "v": Dimensions True must be between 2 and 4096: pass the length of your '
        "embeddings as an int.",
    ),
    (
        "vector of strings",
        lambda: define_schema({"t": T.vector_index("v", vector_field="a", dimensions=3)}),
        'In table "t" the vector index "v" is invalid because it references the field a that is neither '
        "an array of float64 or optional array of float64; declare it as v.array(v.float64()).",
    ),
    (
        "same vector field",
        lambda: define_schema(
            {
                "t": T.vector_index("v", vector_field="vec", dimensions=3).vector_index(
                    "w", vector_field="vec", dimensions=3
                )
            }
        ),
        'In table "t" vector index "v" and vector index "w" have the same `vectorField`. Vector index '
        "fields must be unique within a table; combine them into one index with all the filter fields.",
    ),
    (
        "document validator",
        lambda: define_table(v.string()),
        "The document validator in a schema must be an object, a union of objects, or `v.any()`. Found "
        "v.string(). Pass define_table({...}) a dict of field validators, or v.object({...}).",
    ),
    (
        "union with a non-object",
        lambda: define_table(v.union(v.object({}), v.null())),
        "The document validator in a schema must be an object, a union of objects, or `v.any()`. Found "
        "v.union(v.object({}), v.null()). Pass define_table({...}) a dict of field validators, or "
        "v.object({...}).",
    ),
    (
        "top-level underscore",
        lambda: define_table({"_secret": v.string()}),
        "define_table(...) has an invalid field name '_secret': Invalid field name at ._secret: "
        "top-level field names cannot start with '_' (reserved for system fields), and '_secret' does; "
        "rename the field.",
    ),
    (
        "system field",
        lambda: define_table(v.object({"_id": v.string()})),
        "define_table(...) has an invalid field name '_id': Invalid field name at ._id: '_id' is a "
        "system field that zapnb sets itself; remove it from the document.",
    ),
    (
        "fields as a string",
        lambda: T.index("x", "a"),
        "index('x', ...) takes a list of field names, as in ['a'], not str 'a'.",
    ),
    (
        "field not a string",
        lambda: T.index("x", [ONE]),
        "index('x', ...): field names are strings such as \"userId\", not 1.",
    ),
    (
        "staged not a bool",
        lambda: T.index("x", ["a"], staged=ONE),
        "staged is True or False, not 1.",
    ),
    (
        "not a mapping",
        lambda: define_schema(A_LIST),
        "define_schema takes a dict from table names to define_table(...), not list.",
    ),
]


@pytest.mark.parametrize(
    ("build", "message"), [(b, m) for _, b, m in RULES], ids=[name for name, _, _ in RULES]
)
def test_rule_errors(build: Callable[[], object], message: str) -> None:
    with pytest.raises(SchemaDefinitionError) as info:
        build()
    assert str(info.value) == message


def test_the_limits_themselves_are_allowed() -> None:
    define_schema({"t": with_indexes(64)})
    define_schema({"u" * 64: WIDE.index("x" * 64, [f"f{i}" for i in range(15)])})
    define_schema(
        {"t": WIDE.search_index("s", search_field="f0", filter_fields=[f"f{i}" for i in range(1, 17)])}
    )
    define_schema({"t": T.vector_index("v", vector_field="vec", dimensions=4096).index("by_n", ["n", "o.x"])})
    define_schema({"t": T.vector_index("v", vector_field="vec", dimensions=2)})


def test_convex_style_indexes_that_must_be_accepted() -> None:
    table = define_table({"userId": v.string(), "createdAt": v.optional(v.number()), "meta": v.any()})
    schema = define_schema(
        {
            "projects": table.index("by_userId", ["userId"])
            .index("by_userId_createdAt", ["userId", "createdAt"])
            .index("by_meta_deep", ["meta.anything.below"])
            .index("by_createdAt", ["createdAt"], staged=True)
        }
    )
    assert [i.name for i in schema.tables["projects"].indexes] == [
        "by_userId",
        "by_userId_createdAt",
        "by_meta_deep",
        "by_createdAt",
    ]
    assert schema.tables["projects"].indexes[-1].staged


def test_schema_validation_off_skips_field_references_and_validation() -> None:
    table = define_table({"a": v.string()}).index("by_zz", ["zz"]).search_index("s", search_field="q")
    schema = define_schema({"t": table}, schema_validation=False)
    doc = {"a": 1, "extra": True}
    assert schema.validate_document("t", doc) is doc
    with pytest.raises(SchemaDefinitionError, match="reserved"):
        define_schema({"t": table.index("by_id", ["a"])}, schema_validation=False)


def test_union_and_any_documents_let_indexes_reach_their_fields() -> None:
    doc = v.union(v.object({"kind": v.literal("a"), "x": v.string()}), v.object({"kind": v.literal("b")}))
    define_schema({"t": define_table(doc).index("by_kind_x", ["kind", "x"])})
    define_schema({"t": define_table(v.any()).index("by_x", ["x"]).search_index("s", search_field="y")})
    with pytest.raises(SchemaDefinitionError, match="field y that does not exist"):
        define_schema({"t": define_table(doc).index("by_y", ["y"])})


def test_definitions_are_immutable() -> None:
    base = define_table({"a": v.string()})
    indexed = base.index("by_a", ["a"])
    searched = indexed.search_index("s", search_field="a", filter_fields=("a",))
    assert base.indexes == ()
    assert indexed.indexes == (Index("by_a", ("a",)),)
    assert indexed.search_indexes == ()
    assert searched.search_indexes == (SearchIndex("s", "a", ("a",)),)
    assert searched.all_indexes() == (Index("by_a", ("a",)), SearchIndex("s", "a", ("a",)))
    schema = define_schema({"t": searched})
    with pytest.raises(TypeError):
        schema.tables["u"] = base  # type: ignore[index]


# --- validating documents -----------------------------------------------------------------------------------

SCHEMA = define_schema(
    {
        "projects": define_table(
            {"name": v.string(), "framework": v.union(v.literal("NEXTJS"), v.literal("VUE"))}
        ),
        "messages": define_table(
            {"projectId": v.id("projects"), "createdAt": v.optional(v.number()), "tags": v.array(v.string())}
        ).index("by_projectId", ["projectId"]),
    }
)


def test_validate_document_normalizes() -> None:
    project = Id.encode(10001, bytes(16))
    doc = SCHEMA.validate_document("messages", {"projectId": str(project), "createdAt": 5, "tags": ("a",)})
    assert doc == {"projectId": project, "createdAt": 5.0, "tags": ["a"]}
    assert doc["projectId"].table == "projects"
    assert type(doc["createdAt"]) is float


def test_validate_document_error_names_the_table() -> None:
    with pytest.raises(SchemaValidationError) as info:
        SCHEMA.validate_document("projects", {"name": "n", "framework": "React"})
    err = info.value
    assert str(err) == (
        'Failed to insert or update a document in table "projects" because it does not match the schema: '
        'Value does not match validator.\nPath: .framework\nValue: "React"\n'
        'Validator: v.union(v.literal("NEXTJS"), v.literal("VUE"))'
    )
    assert (err.table, err.path, err.value) == ("projects", ".framework", "React")


def test_validate_document_checks_ids_against_table_numbers() -> None:
    wrong = Id.encode(10002, bytes(16))
    with pytest.raises(SchemaValidationError) as info:
        SCHEMA.validate_document(
            "messages", {"projectId": wrong, "tags": []}, ids={"projects": 10001, "messages": 10002}
        )
    assert "from table `messages`" in str(info.value)
    assert info.value.path == ".projectId"


def test_system_fields_are_kept_and_not_validated() -> None:
    doc_id = Id.encode(10001, bytes(16))
    doc = {"_id": doc_id, "_creationTime": 1.5, "name": "n", "framework": "VUE"}
    assert SCHEMA.validate_document("projects", doc) == doc
    with pytest.raises(SchemaValidationError, match="missing the required field `name`"):
        SCHEMA.validate_document("projects", {"_id": doc_id, "framework": "VUE"})


def test_tables_not_in_the_schema_are_not_validated() -> None:
    doc = {"anything": {1, 2}}
    assert SCHEMA.validate_document("elsewhere", doc) is doc


def test_a_non_dict_document_is_refused() -> None:
    with pytest.raises(SchemaValidationError, match="Value does not match validator"):
        SCHEMA.validate_document("projects", ["name"])


# --- frames, JSON, equality ---------------------------------------------------------------------------------


def test_polars_schema_has_system_columns_first() -> None:
    table = define_table(
        {"n": v.optional(v.int64()), "when": v.number(), "kind": v.union(v.literal("x"), v.null())}
    )
    assert table.polars_schema() == {
        "_id": pl.String(),
        "_creationTime": pl.Float64(),
        "n": pl.Int64(),
        "when": pl.Float64(),
        "kind": pl.Enum(["x"]),
    }
    frame = pl.DataFrame(schema=table.polars_schema())
    assert frame.columns == ["_id", "_creationTime", "n", "when", "kind"]
    assert frame.height == 0


def test_polars_schema_of_unions_and_any_documents() -> None:
    doc = v.union(
        v.object({"kind": v.literal("a"), "x": v.int64()}),
        v.object({"kind": v.literal("b"), "x": v.string(), "y": v.optional(v.boolean())}),
    )
    assert define_table(doc).polars_schema() == {
        "_id": pl.String(),
        "_creationTime": pl.Float64(),
        "kind": pl.Enum(["a", "b"]),
        "x": pl.String(),
        "y": pl.Boolean(),
    }
    assert define_table(doc).column_validators()["x"].stores_json()
    assert list(define_table(v.any()).polars_schema()) == ["_id", "_creationTime"]


def test_json_round_trip_and_equality() -> None:
    schema = define_schema(
        {
            "b": T.index("by_a", ["a"], staged=True)
            .search_index("s", search_field="a", filter_fields=["b"], staged=True)
            .vector_index("v", vector_field="vec", dimensions=8, filter_fields=["a"]),
            "a": define_table(v.union(v.object({"k": v.literal(1)}), v.object({"k": v.literal(1.0)}))),
        },
        schema_validation=False,
    )
    data = schema.to_json()
    assert [table["tableName"] for table in data["tables"]] == ["b", "a"]  # as defined
    text = json.dumps(data)
    assert Schema.from_json(text) == schema
    assert Schema.from_json(data) == schema
    assert Schema.from_json(data).to_json() == data
    assert hash(Schema.from_json(data)) == hash(schema)
    assert Schema.from_json(data).tables["b"].vector_indexes == (VectorIndex("v", "vec", 8, ("a",)),)
    assert Schema.from_json(data).tables["b"].search_indexes[0].staged


def test_equality_ignores_table_and_index_order_but_not_content() -> None:
    one = define_table({"a": v.string(), "b": v.int64()}).index("x", ["a"]).index("y", ["b"])
    two = define_table({"b": v.int64(), "a": v.string()}).index("y", ["b"]).index("x", ["a"])
    assert one == two
    assert define_schema({"p": one, "q": two}) == define_schema({"q": two, "p": one})
    assert one != one.index("z", ["a", "b"])
    assert one != define_table({"a": v.string(), "b": v.int64()}).index("x", ["a"]).index(
        "y", ["b"], staged=True
    )
    assert define_schema({"p": one}) != define_schema({"p": one}, schema_validation=False)
    assert define_schema({"p": one}) != define_schema({"p": one, "q": two})


@pytest.mark.parametrize(
    "data", ['{"tables": []}', "{", {"schemaValidation": True, "tables": [{"tableName": "t"}]}]
)
def test_bad_schema_json(data: Any) -> None:
    with pytest.raises(SchemaDefinitionError, match="Cannot read a schema"):
        Schema.from_json(data)


def test_schema_json_is_checked_like_define_schema() -> None:
    data = define_schema({"t": T.index("by_a", ["a"])}).to_json()
    data["tables"][0]["indexes"][0]["indexDescriptor"] = "by_id"
    with pytest.raises(SchemaDefinitionError, match="reserved"):
        Schema.from_json(data)


def test_describe_and_repr() -> None:
    table = (
        define_table({"a": v.string()}).index("by_a", ["a"], staged=True).search_index("s", search_field="a")
    )
    assert repr(table) == (
        'define_table({a: v.string()}).index("by_a", ["a"], staged=True)'
        '.search_index("s", search_field="a", filter_fields=[])'
    )
    schema = define_schema({"t": table}, schema_validation=False)
    assert repr(schema) == "Schema(tables=['t'], schema_validation=False)"
    assert schema.describe() == f"define_schema({{t: {table!r}}}, schema_validation=False)"
    assert schema.index_count() == 2


def test_zapnb_exports_schema_names() -> None:
    assert zapnb.define_schema is define_schema
    assert zapnb.define_table is define_table
    assert zapnb.Schema is Schema
    assert zapnb.TableDefinition is TableDefinition
