"""Schemas: tables, their document validators and their indexes, as ``define_schema({...})``.

``define_table`` takes a dict of field validators (or an object validator, a union of object validators or
``v.any()``) and returns an immutable :class:`TableDefinition`; ``.index``, ``.search_index`` and
``.vector_index`` each return a new definition. ``define_schema`` checks every table and index against the
rules in :mod:`zapnb.schema_rules`, as Convex does when a schema is pushed (identifier names, reserved names,
1 to 15 fields per index, indexed fields that exist in the validator...), and raises
:class:`~zapnb.SchemaDefinitionError` naming the table, the index and the rule.

Convex's ``strictTableNameTypes`` option only changes TypeScript types, so it has no zapnb counterpart:
tables not in the schema can always be used, and are not validated.

Examples
--------
>>> from zapnb import define_schema, define_table, v
>>> schema = define_schema({
...     "projects": define_table({"name": v.string(), "userId": v.string()}).index("by_userId", ["userId"]),
... })
>>> schema.validate_document("projects", {"name": "zap", "userId": "u1"})
{'name': 'zap', 'userId': 'u1'}
>>> define_schema({"projects": define_table({"name": v.string()}).index("by_id", ["name"])})
Traceback (most recent call last):
...
zapnb.errors.SchemaDefinitionError: In table "projects" cannot name an index "by_id" because the name is ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from zapnb.errors import SchemaDefinitionError
from zapnb.schema_rules import (
    MAX_FILTER_FIELDS,
    MAX_INDEX_FIELDS,
    MAX_INDEXES_PER_TABLE,
    MAX_NAME_LENGTH,
    MAX_VECTOR_DIMENSIONS,
    MIN_VECTOR_DIMENSIONS,
    RESERVED_INDEX_NAMES,
    check_table,
    check_table_name,
)
from zapnb.validators import (
    AnyValidator,
    IdResolver,
    ObjectValidator,
    OptionalValidator,
    UnionValidator,
    Validator,
    check_object_fields,
    v,
    validator_from_json,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "MAX_FILTER_FIELDS",
    "MAX_INDEXES_PER_TABLE",
    "MAX_INDEX_FIELDS",
    "MAX_NAME_LENGTH",
    "MAX_VECTOR_DIMENSIONS",
    "MIN_VECTOR_DIMENSIONS",
    "RESERVED_INDEX_NAMES",
    "Index",
    "Schema",
    "SearchIndex",
    "TableDefinition",
    "VectorIndex",
    "define_schema",
    "define_table",
    "table_definition",
]

SYSTEM_FIELDS: Final = ("_id", "_creationTime")


# --- index definitions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Index:
    """A database index: documents ordered by ``fields``, then ``_creationTime``, then ``_id``."""

    name: str
    fields: tuple[str, ...]
    staged: bool = False


@dataclass(frozen=True, slots=True)
class SearchIndex:
    """A full-text search index over the string field ``search_field``."""

    name: str
    search_field: str
    filter_fields: tuple[str, ...] = ()
    staged: bool = False


@dataclass(frozen=True, slots=True)
class VectorIndex:
    """A vector index over ``vector_field``, an array of ``dimensions`` float64."""

    name: str
    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...] = ()
    staged: bool = False


AnyIndex = Index | SearchIndex | VectorIndex


def _field_list(fields: Any, what: str) -> tuple[str, ...]:
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        raise SchemaDefinitionError(
            f"{what} takes a list of field names, as in [{fields!r}], not {type(fields).__name__} {fields!r}."
        )
    out = tuple(fields)
    for name in out:
        if not isinstance(name, str):
            raise SchemaDefinitionError(f'{what}: field names are strings such as "userId", not {name!r}.')
    return out


def _check_flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaDefinitionError(f"{what} is True or False, not {value!r}.")
    return value


# --- tables -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class TableDefinition:
    """A table: the validator of its documents and its indexes. Immutable: each method returns a new one.

    Examples
    --------
    >>> from zapnb import define_table, v
    >>> table = define_table({"userId": v.string(), "createdAt": v.optional(v.number())})
    >>> table.index("by_userId_createdAt", ["userId", "createdAt"])
    define_table({userId: v.string(), createdAt: v.optional(v.number())}).index("by_userId_createdAt", \
["userId", "createdAt"])
    >>> table.indexes
    ()
    """

    document: Validator
    indexes: tuple[Index, ...] = ()
    search_indexes: tuple[SearchIndex, ...] = ()
    vector_indexes: tuple[VectorIndex, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.document, Validator):
            raise SchemaDefinitionError(
                f"A table's documents are described by a validator, not {self.document!r}: use "
                "define_table({...}) with a dict of field validators."
            )
        _check_document_validator(self.document)

    def index(self, name: str, fields: Sequence[str], staged: bool = False) -> TableDefinition:
        """This table with a database index ``name`` over ``fields`` (checked by :func:`define_schema`).

        ``staged=True`` builds the index in the background; it can be queried after a later deploy
        enables it (``staged=False``).
        """
        index = Index(name, _field_list(fields, f"index({name!r}, ...)"), _check_flag(staged, "staged"))
        return replace(self, indexes=(*self.indexes, index))

    def search_index(
        self, name: str, *, search_field: str, filter_fields: Sequence[str] = (), staged: bool = False
    ) -> TableDefinition:
        """This table with a full-text search index over ``search_field``, filterable by ``filter_fields``."""
        filters = _field_list(filter_fields, f"search_index({name!r}, filter_fields=...)")
        index = SearchIndex(name, search_field, filters, _check_flag(staged, "staged"))
        return replace(self, search_indexes=(*self.search_indexes, index))

    def vector_index(
        self,
        name: str,
        *,
        vector_field: str,
        dimensions: int,
        filter_fields: Sequence[str] = (),
        staged: bool = False,
    ) -> TableDefinition:
        """This table with a vector index over ``vector_field`` (arrays of ``dimensions`` floats)."""
        filters = _field_list(filter_fields, f"vector_index({name!r}, filter_fields=...)")
        index = VectorIndex(name, vector_field, dimensions, filters, _check_flag(staged, "staged"))
        return replace(self, vector_indexes=(*self.vector_indexes, index))

    def all_indexes(self) -> tuple[AnyIndex, ...]:
        """Every index of the table: database, then search, then vector indexes."""
        return (*self.indexes, *self.search_indexes, *self.vector_indexes)

    def validate_document(
        self,
        doc: Any,
        *,
        ids: IdResolver | Mapping[str, int] | None = None,
        table: str | None = None,
    ) -> dict[str, Any]:
        """Check ``doc`` and return it normalized; ``_id`` and ``_creationTime`` are kept and not checked.

        Raises :class:`~zapnb.SchemaValidationError` (naming ``table`` when given) if it does not match.

        Examples
        --------
        >>> from zapnb import define_table, v
        >>> define_table({"n": v.number()}).validate_document({"n": 1})
        {'n': 1.0}
        """
        if isinstance(doc, dict) and ("_id" in doc or "_creationTime" in doc):
            system = {name: doc[name] for name in SYSTEM_FIELDS if name in doc}
            user = {name: value for name, value in doc.items() if name not in system}
            checked: dict[str, Any] = self.document.validate(user, ids=ids, table=table)
            return {**system, **checked}
        result: dict[str, Any] = self.document.validate(doc, ids=ids, table=table)
        return result

    def column_validators(self) -> dict[str, Validator]:
        """The validator of each user column of the table's typed frames, in declaration order.

        For a union of objects a field in several members gets the union of their validators. Optional
        fields give their inner validator (a missing value is a null).

        Examples
        --------
        >>> from zapnb import define_table, v
        >>> a = v.object({"kind": v.literal("a"), "n": v.int64()})
        >>> define_table(v.union(a, v.object({"kind": v.literal("b")}))).column_validators()
        {'kind': v.union(v.literal("a"), v.literal("b")), 'n': v.int64()}
        """
        found: dict[str, list[Validator]] = {}
        for member in _document_objects(self.document):
            for name, validator in member.fields:
                inner = validator.inner if isinstance(validator, OptionalValidator) else validator
                options = found.setdefault(name, [])
                if inner not in options:
                    options.append(inner)
        return {
            name: options[0] if len(options) == 1 else v.union(*options) for name, options in found.items()
        }

    def polars_schema(self) -> dict[str, pl.DataType]:
        """The dtypes of the table's typed frames: ``_id`` (String), ``_creationTime`` (Float64), then fields.

        Examples
        --------
        >>> import polars as pl
        >>> from zapnb import define_table, v
        >>> pl.DataFrame(schema=define_table({"tags": v.array(v.string())}).polars_schema())
        shape: (0, 3)
        ┌─────┬───────────────┬───────────┐
        │ _id ┆ _creationTime ┆ tags      │
        │ --- ┆ ---           ┆ ---       │
        │ str ┆ f64           ┆ list[str] │
        ╞═════╪═══════════════╪═══════════╡
        └─────┴───────────────┴───────────┘
        """
        import polars as pl

        columns: dict[str, pl.DataType] = {"_id": pl.String(), "_creationTime": pl.Float64()}
        for name, validator in self.column_validators().items():
            columns[name] = validator.polars_dtype()
        return columns

    def describe(self) -> str:
        """The source text that builds this definition."""
        document = self.document
        text = f"define_table({document})"
        if isinstance(document, ObjectValidator):
            text = "define_table({" + ", ".join(f"{n}: {f}" for n, f in document.fields) + "})"
        for i in self.indexes:
            text += f'.index("{i.name}", {json.dumps(list(i.fields))}{_staged(i)})'
        for s in self.search_indexes:
            filters = json.dumps(list(s.filter_fields))
            text += (
                f'.search_index("{s.name}", search_field="{s.search_field}", filter_fields={filters}'
                f"{_staged(s)})"
            )
        for x in self.vector_indexes:
            filters = json.dumps(list(x.filter_fields))
            text += (
                f'.vector_index("{x.name}", vector_field="{x.vector_field}", dimensions={x.dimensions}, '
                f"filter_fields={filters}{_staged(x)})"
            )
        return text

    def __repr__(self) -> str:
        return self.describe()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TableDefinition):
            return NotImplemented
        return self.document == other.document and _by_name(self.all_indexes()) == _by_name(
            other.all_indexes()
        )

    def __hash__(self) -> int:
        return hash((self.document, frozenset(self.all_indexes())))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (indexes in their definition order); :meth:`from_json` reads it back."""
        return {
            "documentType": self.document.to_json(),
            "indexes": [
                {"indexDescriptor": i.name, "fields": list(i.fields), "staged": i.staged}
                for i in self.indexes
            ],
            "searchIndexes": [
                {
                    "indexDescriptor": i.name,
                    "searchField": i.search_field,
                    "filterFields": list(i.filter_fields),
                }
                | {"staged": i.staged}
                for i in self.search_indexes
            ],
            "vectorIndexes": [
                {"indexDescriptor": i.name, "vectorField": i.vector_field, "dimensions": i.dimensions}
                | {"filterFields": list(i.filter_fields), "staged": i.staged}
                for i in self.vector_indexes
            ],
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> TableDefinition:
        """Read back what :meth:`to_json` wrote."""
        table = define_table(validator_from_json(data["documentType"]))
        for i in data["indexes"]:
            table = table.index(i["indexDescriptor"], i["fields"], staged=i["staged"])
        for i in data["searchIndexes"]:
            table = table.search_index(
                i["indexDescriptor"],
                search_field=i["searchField"],
                filter_fields=i["filterFields"],
                staged=i["staged"],
            )
        for i in data["vectorIndexes"]:
            table = table.vector_index(
                i["indexDescriptor"],
                vector_field=i["vectorField"],
                dimensions=i["dimensions"],
                filter_fields=i["filterFields"],
                staged=i["staged"],
            )
        return table


def _staged(index: AnyIndex) -> str:
    return ", staged=True" if index.staged else ""


def _name(index: AnyIndex) -> str:
    return index.name


def _by_name(indexes: Iterable[AnyIndex]) -> dict[str, AnyIndex]:
    return {index.name: index for index in indexes}


def _document_objects(document: Validator) -> list[ObjectValidator]:
    if isinstance(document, ObjectValidator):
        return [document]
    if isinstance(document, UnionValidator):
        return [obj for member in document.members for obj in _document_objects(member)]
    return []


def _check_document_validator(document: Validator) -> Validator:
    if isinstance(document, AnyValidator):
        return document
    members = document.members if isinstance(document, UnionValidator) else (document,)
    if not all(isinstance(member, ObjectValidator) for member in members):
        raise SchemaDefinitionError(
            "The document validator in a schema must be an object, a union of objects, or `v.any()`. "
            f"Found {document}. Pass define_table({{...}}) a dict of field validators, or v.object({{...}})."
        )
    for member in _document_objects(document):
        check_object_fields(dict(member.fields), "define_table(...)", top_level=True)
    return document


def define_table(fields: Mapping[str, Validator] | Validator) -> TableDefinition:
    """A table whose documents match ``fields``: a dict of field validators, or an object validator, a
    union of object validators, or ``v.any()`` (no validation).

    Top-level field names cannot start with ``_`` (``_id`` and ``_creationTime`` are added by zapnb).

    Examples
    --------
    >>> from zapnb import define_table, v
    >>> define_table({"text": v.string()}) == define_table(v.object({"text": v.string()}))
    True
    >>> define_table({"_secret": v.string()})
    Traceback (most recent call last):
    ...
    zapnb.errors.SchemaDefinitionError: define_table(...) has an invalid field name '_secret': ...
    """
    if isinstance(fields, Validator):
        return TableDefinition(_check_document_validator(fields))
    return TableDefinition(v.object(dict(check_object_fields(fields, "define_table(...)", top_level=True))))


# --- schemas ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Schema:
    """A checked set of table definitions (build it with :func:`define_schema`). Immutable.

    Attributes
    ----------
    tables:
        Table name to :class:`TableDefinition`, read-only.
    schema_validation:
        Whether documents are validated on write and on deploy.
    """

    tables: Mapping[str, TableDefinition]
    schema_validation: bool = True

    def __post_init__(self) -> None:
        _check_schema(self.tables, self.schema_validation)
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))

    def validate_document(
        self, table: str, doc: Any, ids: IdResolver | Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        """Check a document written to ``table`` and return it normalized.

        Tables not in the schema, and every table when ``schema_validation`` is off, are not validated:
        the document comes back as it is.

        Raises
        ------
        SchemaValidationError
            If the document does not match; its ``table`` attribute is ``table``.

        Examples
        --------
        >>> from zapnb import define_schema, define_table, v
        >>> schema = define_schema({"points": define_table({"x": v.number()})})
        >>> schema.validate_document("points", {"x": 1})
        {'x': 1.0}
        >>> schema.validate_document("points", {"x": "1"})
        Traceback (most recent call last):
        ...
        zapnb.errors.SchemaValidationError: Failed to insert or update a document in table "points" because \
it does not match the schema: Value does not match validator.
        Path: .x
        Value: "1"
        Validator: v.number()
        """
        definition = self.tables.get(table) if self.schema_validation else None
        if definition is None:
            return doc  # type: ignore[no-any-return]
        return definition.validate_document(doc, ids=ids, table=table)

    def index_count(self) -> int:
        """How many indexes (database, search and vector) the schema defines, built-in ones not counted."""
        return sum(len(definition.all_indexes()) for definition in self.tables.values())

    def describe(self) -> str:
        """The source text that builds this schema."""
        inside = ", ".join(f"{name}: {definition.describe()}" for name, definition in self.tables.items())
        flag = "" if self.schema_validation else ", schema_validation=False"
        return f"define_schema({{{inside}}}{flag})"

    def __repr__(self) -> str:
        return f"Schema(tables={list(self.tables)}, schema_validation={self.schema_validation})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return NotImplemented
        return self.schema_validation == other.schema_validation and dict(self.tables) == dict(other.tables)

    def __hash__(self) -> int:
        return hash((self.schema_validation, frozenset(self.tables.items())))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description, tables, indexes and fields in the order they were defined (so a schema
        read back from a data directory lists them as its definition did).

        Examples
        --------
        >>> from zapnb import define_schema, define_table, v
        >>> schema = define_schema({"notes": define_table({"text": v.string()}).index("by_text", ["text"])})
        >>> Schema.from_json(schema.to_json()) == schema
        True
        """
        tables = [{"tableName": name} | definition.to_json() for name, definition in self.tables.items()]
        return {"schemaValidation": self.schema_validation, "tables": tables}

    @staticmethod
    def from_json(data: Mapping[str, Any] | str) -> Schema:
        """Read back what :meth:`to_json` wrote (a dict, or its JSON text), checking it like define_schema."""
        try:
            parsed = json.loads(data) if isinstance(data, str) else data
            tables = {table["tableName"]: TableDefinition.from_json(table) for table in parsed["tables"]}
            validation = parsed["schemaValidation"]
        except (KeyError, TypeError, ValueError) as err:
            raise SchemaDefinitionError(
                f"Cannot read a schema from {str(data)[:200]}: {err!r}. Pass what Schema.to_json() wrote."
            ) from err
        return define_schema(tables, schema_validation=validation)


def define_schema(tables: Mapping[str, TableDefinition], *, schema_validation: bool = True) -> Schema:
    """A schema of ``tables``, each checked against the rules in :mod:`zapnb.schema_rules`.

    Parameters
    ----------
    tables:
        Table name to :func:`define_table` definition.
    schema_validation:
        Validate documents on every write and on deploy (default). ``False`` turns both off, and the
        check that indexed fields exist in the validators.

    Raises
    ------
    SchemaDefinitionError
        A table or index breaks a rule; the message names the table, the index and the rule.

    Examples
    --------
    >>> from zapnb import define_schema, define_table, v
    >>> define_schema({"users": define_table({"name": v.string()}).index("by_email", ["email"])})
    Traceback (most recent call last):
    ...
    zapnb.errors.SchemaDefinitionError: In table "users" the index "by_email" is invalid because it \
references the field email that does not exist. ...
    """
    return Schema(tables, schema_validation)  # checked by Schema itself


def _check_schema(tables: Any, schema_validation: Any) -> None:
    """Every rule of :func:`define_schema`, also for a :class:`Schema` built directly."""
    if not isinstance(tables, Mapping):
        raise SchemaDefinitionError(
            f"define_schema takes a dict from table names to define_table(...), not {type(tables).__name__}."
        )
    _check_flag(schema_validation, "schema_validation")
    for name, definition in tables.items():
        check_table_name(name)
        if not isinstance(definition, TableDefinition):
            raise SchemaDefinitionError(
                f'Table "{name}" is {definition!r}: wrap its fields in define_table({{...}}).'
            )
        check_table(name, definition, schema_validation)


def table_definition(schema: Schema | None, table: str) -> TableDefinition | None:
    """The definition of ``table`` in ``schema``, or ``None`` (no schema, or a table it does not define)."""
    return None if schema is None else schema.tables.get(table)


def stored_definition(schema: Schema | None, table: str) -> TableDefinition | None:
    """The definition whose columns store ``table``'s documents: its definition when ``schema`` validates
    writes, else ``None`` (the schemaless layout, which holds any document: with ``schema_validation=False``
    a document need not fit the declared columns)."""
    return table_definition(schema, table) if schema is not None and schema.schema_validation else None
