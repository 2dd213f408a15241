"""Schema rules: what :func:`~zapnb.define_schema` checks, as Convex does when a schema is pushed.

- table and index names are identifiers (a letter, then letters, digits and ``_``), at most 64 characters;
  names starting with ``_`` are reserved, and so are the index names ``by_id`` and ``by_creation_time``;
- a table has at most 64 indexes (database, search and vector together);
- an index has 1 to 15 fields (zapnb appends ``_creationTime``, then ``_id``, to every index, so an index
  orders by at most 16 fields, Convex's limit); ``_id``, ``_creationTime`` and any field starting with ``_``
  cannot be index fields; no field twice; no two indexes on the same fields; no two indexes with one name;
- with ``schema_validation`` on, every indexed field must be a field the table's validator allows (nested
  paths ``a.b`` go through objects), a search field must hold strings and a vector field arrays of float64;
- vector indexes have 2 to 4096 dimensions; search and vector indexes have at most 16 filter fields.

A broken rule raises :class:`~zapnb.SchemaDefinitionError` naming the table, the index and the rule.

Examples
--------
>>> from zapnb import define_schema, define_table, v
>>> define_schema({"docs": define_table({"body": v.string()}).index("by_body", ["body", "_creationTime"])})
Traceback (most recent call last):
...
zapnb.errors.SchemaDefinitionError: In table "docs" index "by_body": `_creationTime` is automatically ...
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final

from zapnb.errors import SchemaDefinitionError
from zapnb.validators import (
    AnyValidator,
    ArrayValidator,
    Float64Validator,
    Validator,
    is_string_like,
    validators_at,
)

if TYPE_CHECKING:
    from zapnb.schema import AnyIndex, Index, SearchIndex, TableDefinition, VectorIndex

__all__ = [
    "MAX_FILTER_FIELDS",
    "MAX_INDEXES_PER_TABLE",
    "MAX_INDEX_FIELDS",
    "MAX_NAME_LENGTH",
    "MAX_VECTOR_DIMENSIONS",
    "MIN_VECTOR_DIMENSIONS",
    "RESERVED_INDEX_NAMES",
    "check_table",
    "check_table_name",
]

MAX_NAME_LENGTH: Final = 64
MAX_INDEX_FIELDS: Final = 15
"""User fields per index; with the ``_creationTime`` zapnb appends that is Convex's 16."""
MAX_FILTER_FIELDS: Final = 16
MAX_INDEXES_PER_TABLE: Final = 64
MIN_VECTOR_DIMENSIONS: Final = 2
MAX_VECTOR_DIMENSIONS: Final = 4096
RESERVED_INDEX_NAMES: Final = frozenset({"by_id", "by_creation_time"})
_IDENTIFIER: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_table_name(name: Any) -> None:
    """Refuse a table name that is reserved (``_...``) or not an identifier of at most 64 characters.

    Examples
    --------
    >>> check_table_name("projects")
    >>> check_table_name("2fast")
    Traceback (most recent call last):
    ...
    zapnb.errors.SchemaDefinitionError: Invalid table name: "2fast". Identifiers must start with a letter, ...
    """
    if isinstance(name, str) and name.startswith("_"):
        raise SchemaDefinitionError(
            f'"{name}" is a reserved table name: names starting with "_" belong to system tables. Rename it.'
        )
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise SchemaDefinitionError(
            f'Invalid table name: "{name}". Identifiers must start with a letter, can only contain letters, '
            f"digits, and underscores, and are at most {MAX_NAME_LENGTH} characters."
        )


def check_table(table: str, definition: TableDefinition, validated: bool) -> None:
    """Check the indexes of ``definition``, the table named ``table``, against every rule.

    With ``validated`` (the schema's ``schema_validation``), indexed fields must also exist in the table's
    validator with the type their index needs.
    """
    _check_index_names(table, definition.all_indexes())
    for index in definition.indexes:
        _check_index_fields(table, index)
    for search in definition.search_indexes:
        _check_paths(table, search.name, (search.search_field,))
        _check_filter_fields(table, search.name, search.filter_fields)
    for vector in definition.vector_indexes:
        _check_dimensions(table, vector)
        _check_paths(table, vector.name, (vector.vector_field,))
        _check_filter_fields(table, vector.name, vector.filter_fields)
    _check_unique(table, definition)
    if validated:
        _check_references(table, definition)


def _check_index_names(table: str, indexes: Sequence[AnyIndex]) -> None:
    if len(indexes) > MAX_INDEXES_PER_TABLE:
        raise SchemaDefinitionError(
            f'Table "{table}" cannot have more than {MAX_INDEXES_PER_TABLE} indexes; it has {len(indexes)}.'
        )
    seen: set[str] = set()
    for index in indexes:
        _check_index_name(table, index.name)
        if index.name in seen:
            raise SchemaDefinitionError(
                f'Table "{table}" has two or more definitions of index "{index.name}". Give each index its '
                "own name."
            )
        seen.add(index.name)


def _check_index_name(table: str, name: Any) -> None:
    if isinstance(name, str) and (name.startswith("_") or name in RESERVED_INDEX_NAMES):
        raise SchemaDefinitionError(
            f'In table "{table}" cannot name an index "{name}" because the name is reserved. Indexes may not '
            'start with an underscore or be named "by_id" or "by_creation_time".'
        )
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise SchemaDefinitionError(
            f'In table "{table}": Invalid index name: "{name}". Identifiers must be {MAX_NAME_LENGTH} '
            "characters or less, start with a letter, and only contain letters, digits, underscores."
        )


def _index_error(table: str, index: str, rule: str) -> SchemaDefinitionError:
    return SchemaDefinitionError(f'In table "{table}" index "{index}": {rule}')


def _check_paths(table: str, index: str, paths: Sequence[str]) -> None:
    from zapnb.documents import check_field_name
    from zapnb.errors import InvalidFieldNameError

    for path in paths:
        try:
            if not isinstance(path, str):
                raise InvalidFieldNameError("not a str", path="", value=path)
            for part in path.split("."):
                check_field_name(part, top_level=False, path=f".{part}")
        except InvalidFieldNameError:
            raise _index_error(
                table,
                index,
                f'Invalid index field: "{path}". Use a field name, or a path such as "a.b" into a '
                "nested object.",
            ) from None
        if path == "_id":
            raise _index_error(
                table, index, "`_id` is not a valid index field. To load documents by ID, use `db.get(id)`."
            )
        if path == "_creationTime":
            raise _index_error(
                table,
                index,
                "`_creationTime` is automatically added to the end of each index. It should not be added "
                "explicitly in the index definition: remove it.",
            )
        if any(part.startswith("_") for part in path.split(".")):
            raise _index_error(
                table,
                index,
                f'Reserved fields (starting with `_`) are not allowed in indexes: remove "{path}".',
            )


def _check_index_fields(table: str, index: Index) -> None:
    if not index.fields:
        raise SchemaDefinitionError(
            f'In table "{table}" index "{index.name}" must have at least one field. Queries without an index '
            "already run in creation-time order (by_creation_time)."
        )
    _check_paths(table, index.name, index.fields)
    duplicate = next((f for i, f in enumerate(index.fields) if f in index.fields[:i]), None)
    if duplicate is not None:
        raise _index_error(
            table, index.name, f"Duplicate field {duplicate}. Index fields must be unique within an index."
        )
    if len(index.fields) > MAX_INDEX_FIELDS:
        raise _index_error(
            table,
            index.name,
            f"Indexes may have up to {MAX_INDEX_FIELDS} fields (zapnb appends `_creationTime`, making "
            f"Convex's limit of {MAX_INDEX_FIELDS + 1}); this one has {len(index.fields)}. Remove fields.",
        )


def _check_filter_fields(table: str, index: str, fields: Sequence[str]) -> None:
    _check_paths(table, index, fields)
    if len(fields) > MAX_FILTER_FIELDS:
        raise _index_error(
            table,
            index,
            f"Search indexes may have up to {MAX_FILTER_FIELDS} filter fields; this one has {len(fields)}.",
        )
    duplicate = next((f for i, f in enumerate(fields) if f in fields[:i]), None)
    if duplicate is not None:
        raise _index_error(table, index, f"Duplicate filter field {duplicate}. List each filter field once.")


def _check_dimensions(table: str, index: VectorIndex) -> None:
    dims = index.dimensions
    if type(dims) is not int or not MIN_VECTOR_DIMENSIONS <= dims <= MAX_VECTOR_DIMENSIONS:
        raise _index_error(
            table,
            index.name,
            f"Dimensions {dims!r} must be between {MIN_VECTOR_DIMENSIONS} and {MAX_VECTOR_DIMENSIONS}: pass "
            "the length of your embeddings as an int.",
        )


def _check_unique(table: str, definition: TableDefinition) -> None:
    _check_distinct(
        table,
        "index",
        [(index.name, index.fields) for index in definition.indexes],
        "have the same fields. Indexes must be unique within a table; remove one of them",
    )
    _check_distinct(
        table,
        "search index",
        [(index.name, index.search_field) for index in definition.search_indexes],
        "have the same `searchField`. Search index fields must be unique within a table; combine them into "
        "one index with all the filter fields",
    )
    _check_distinct(
        table,
        "vector index",
        [(index.name, (index.vector_field, index.dimensions)) for index in definition.vector_indexes],
        "have the same `vectorField`. Vector index fields must be unique within a table; combine them into "
        "one index with all the filter fields",
    )


def _check_distinct(table: str, kind: str, keys: Sequence[tuple[str, Hashable]], rule: str) -> None:
    """Refuse two indexes of one kind with the same key: ``keys`` pairs each index name with its key."""
    first: dict[Hashable, str] = {}
    for name, key in keys:
        if key in first:
            raise SchemaDefinitionError(
                f'In table "{table}" {kind} "{first[key]}" and {kind} "{name}" {rule}.'
            )
        first[key] = name


def _check_references(table: str, definition: TableDefinition) -> None:
    """Check that every indexed field exists in the table's validator and has the type its index needs."""
    document = definition.document
    for index in definition.indexes:
        _check_fields_exist(table, document, "index", index.name, index.fields)
    for search in definition.search_indexes:
        paths = (search.search_field, *search.filter_fields)
        _check_fields_exist(table, document, "search index", search.name, paths)
        _check_search_field(table, document, search)
    for vector in definition.vector_indexes:
        paths = (vector.vector_field, *vector.filter_fields)
        _check_fields_exist(table, document, "vector index", vector.name, paths)
        _check_vector_field(table, document, vector)


def _check_fields_exist(table: str, document: Validator, kind: str, index: str, paths: Sequence[str]) -> None:
    for path in paths:
        if not validators_at(document, path):
            raise SchemaDefinitionError(
                f'In table "{table}" the {kind} "{index}" is invalid because it references the field {path} '
                "that does not exist. Add the field to the table's validator, or fix the index."
            )


def _check_search_field(table: str, document: Validator, index: SearchIndex) -> None:
    found = validators_at(document, index.search_field)
    if not any(is_string_like(f) or isinstance(f, AnyValidator) for f in found):
        raise SchemaDefinitionError(
            f'In table "{table}" the search index "{index.name}" is invalid because its search field '
            f"{index.search_field} is not a string field (it is {', '.join(map(str, found))}); "
            "search a v.string() field."
        )


def _check_vector_field(table: str, document: Validator, index: VectorIndex) -> None:
    if not any(_is_vector(f) for f in validators_at(document, index.vector_field)):
        raise SchemaDefinitionError(
            f'In table "{table}" the vector index "{index.name}" is invalid because it references the '
            f"field {index.vector_field} that is neither an array of float64 or optional array of "
            "float64; declare it as v.array(v.float64())."
        )


def _is_vector(validator: Validator) -> bool:
    if isinstance(validator, AnyValidator):
        return True
    return isinstance(validator, ArrayValidator) and isinstance(
        validator.element, Float64Validator | AnyValidator
    )
