"""Validators: the types of document fields and function arguments, such as ``v.string()`` or ``v.id("t")``.

A validator is an immutable value: two validators built the same way are equal (the deploy step diffs
schemas with ``==``), it prints as the source text that builds it (``v.union(v.literal("A"), v.null())``),
it checks and normalizes values (:meth:`Validator.validate`, :meth:`Validator.validate_column`), and it names
the Polars dtype of its column in typed frames (:meth:`Validator.polars_dtype`).

Normalizing means: an ``int`` accepted by ``v.number()`` becomes a ``float``, a tuple becomes a list, a NaN
becomes the canonical NaN of its sign, and a string accepted by ``v.id("t")`` becomes a :class:`zapnb.Id`
labelled with table ``t``. In a union, the first member that accepts a value decides how it is normalized.

Errors follow Convex's wording: ``Value does not match validator.`` followed by ``Path:``, ``Value:`` and
``Validator:`` lines, or ``Object is missing the required field ...``, ``Object contains extra field ...``
and ``Found ID ... from table ...``. Inside a table (``table="projects"``) the message starts with
``Failed to insert or update a document in table "projects" because it does not match the schema:``;
without a table it is just the cause, which is what function argument errors build on.

The code is in four modules: :mod:`zapnb.validator_base` (the :class:`Validator` base class and its error
messages), :mod:`zapnb.validator_kinds` (one class per kind), this module (the ``v`` builder, reading
validators back from JSON, and the validators at a field path) and :mod:`zapnb.columns` (checking whole
columns). Import any of their public names from here.

Examples
--------
>>> from zapnb import v
>>> framework = v.union(v.literal("NEXTJS"), v.literal("REACT"))
>>> framework
v.union(v.literal("NEXTJS"), v.literal("REACT"))
>>> v.object({"name": v.string(), "age": v.optional(v.number())}).validate({"name": "Ada", "age": 36})
{'name': 'Ada', 'age': 36.0}
>>> framework.validate("React", path=".framework")
Traceback (most recent call last):
...
zapnb.errors.SchemaValidationError: Value does not match validator.
Path: .framework
Value: "React"
Validator: v.union(v.literal("NEXTJS"), v.literal("REACT"))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from zapnb.errors import InvalidFieldNameError, SchemaDefinitionError, ZapError
from zapnb.validator_base import IdResolver, TableNumbers, Validator, _is_unicode, _plain_str
from zapnb.validator_kinds import (
    INT64_MAX,
    INT64_MIN,
    AnyValidator,
    ArrayValidator,
    BooleanValidator,
    BytesValidator,
    Float64Validator,
    IdValidator,
    Int64Validator,
    LiteralValidator,
    LiteralValue,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    RecordValidator,
    StringValidator,
    UnionValidator,
    _check_not_optional,
    is_string_like,
)
from zapnb.values import canonical_float

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "AnyValidator",
    "ArrayValidator",
    "BooleanValidator",
    "BytesValidator",
    "Float64Validator",
    "IdResolver",
    "IdValidator",
    "Int64Validator",
    "LiteralValidator",
    "NullValidator",
    "ObjectValidator",
    "OptionalValidator",
    "RecordValidator",
    "StringValidator",
    "TableNumbers",
    "UnionValidator",
    "Validator",
    "ValidatorBuilder",
    "check_object_fields",
    "is_string_like",
    "v",
    "validator_from_json",
    "validators_at",
]


# --- the v namespace ----------------------------------------------------------------------------------------

_STRING: Final = StringValidator()
_NUMBER: Final = Float64Validator("number")
_FLOAT64: Final = Float64Validator("float64")
_INT64: Final = Int64Validator()
_BOOLEAN: Final = BooleanValidator()
_NULL: Final = NullValidator()
_BYTES: Final = BytesValidator()
_ANY: Final = AnyValidator()


def _check_literal(value: Any) -> LiteralValue:
    if isinstance(value, str) and _is_unicode(value):
        return _plain_str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return int(value)
    if isinstance(value, float):
        return canonical_float(float(value))
    raise SchemaDefinitionError(
        f"v.literal({value!r}) is not a literal: use a str (valid Unicode), an int from -2**63 to 2**63 - 1, "
        "a float or a bool; for other values use v.object(...), v.array(...) or v.union(...)."
    )


def check_object_fields(
    fields: Mapping[str, Validator], where: str = "v.object(...)", top_level: bool = False
) -> tuple[tuple[str, Validator], ...]:
    """Check the fields of ``v.object`` (or ``define_table``, with ``top_level``) and return them as pairs.

    Raises :class:`~zapnb.SchemaDefinitionError` for a bad field name or a field that is not a validator.
    """
    from zapnb.documents import check_field_name

    if not isinstance(fields, Mapping):
        raise SchemaDefinitionError(f"{where} takes a dict from field names to validators, not {fields!r}.")
    for name, validator in fields.items():
        try:
            check_field_name(name, top_level=top_level, path=f".{name}")
        except InvalidFieldNameError as err:
            raise SchemaDefinitionError(f"{where} has an invalid field name {name!r}: {err}") from None
        if not isinstance(validator, Validator):
            raise SchemaDefinitionError(
                f"Field {name!r} of {where} is {validator!r}, not a validator: use v.string(), v.number(), "
                "v.id(...) and so on."
            )
        if isinstance(validator, OptionalValidator):
            _check_not_optional(validator.inner, "v.optional(...)")
    return tuple(fields.items())


class ValidatorBuilder:
    """The ``v`` namespace that builds validators: ``v.string()``, ``v.id("users")``, ``v.object({...})``.

    Examples
    --------
    >>> from zapnb import v
    >>> v.nullable(v.int64())
    v.union(v.int64(), v.null())
    >>> v.number() == v.float64(), v.literal(1) == v.literal(1.0), v.literal(1) == v.literal(True)
    (True, False, False)
    >>> v.array(v.optional(v.string()))
    Traceback (most recent call last):
    ...
    zapnb.errors.SchemaDefinitionError: v.optional(v.string()) cannot be used in v.array(...): ...
    """

    __slots__ = ()

    def string(self) -> StringValidator:
        """A ``str`` of valid Unicode."""
        return _STRING

    def number(self) -> Float64Validator:
        """A float64; an ``int`` is accepted and stored as ``float``. The same as :meth:`float64`."""
        return _NUMBER

    def float64(self) -> Float64Validator:
        """A float64; an ``int`` is accepted and stored as ``float``. The same as :meth:`number`."""
        return _FLOAT64

    def int64(self) -> Int64Validator:
        """An ``int`` (not ``bool``) from -2**63 to 2**63 - 1."""
        return _INT64

    def boolean(self) -> BooleanValidator:
        """``True`` or ``False``."""
        return _BOOLEAN

    def null(self) -> NullValidator:
        """``None``."""
        return _NULL

    def bytes(self) -> BytesValidator:
        """``bytes``."""
        return _BYTES

    def any(self) -> AnyValidator:
        """Any zapnb value."""
        return _ANY

    def id(self, table: str) -> IdValidator:
        """The ID of a document in ``table``."""
        if not isinstance(table, str) or not table:
            raise SchemaDefinitionError(f'v.id(...) takes a table name, as in v.id("users"), not {table!r}.')
        return IdValidator(table)

    def literal(self, value: str | int | float | bool) -> LiteralValidator:
        """Exactly ``value`` (a str, int, float or bool)."""
        return LiteralValidator(_check_literal(value))

    def union(self, *members: Validator) -> UnionValidator:
        """Any one of ``members``."""
        return UnionValidator(tuple(members))

    def optional(self, inner: Validator) -> OptionalValidator:
        """An object field that may be missing (only valid as a field of ``v.object`` or ``define_table``)."""
        return OptionalValidator(_check_not_optional(inner, "v.optional(...)"))

    def nullable(self, inner: Validator) -> UnionValidator:
        """``inner`` or ``None``: the same as ``v.union(inner, v.null())``."""
        return UnionValidator((_check_not_optional(inner, "v.nullable(...)"), _NULL))

    def array(self, element: Validator) -> ArrayValidator:
        """A list whose elements all match ``element``."""
        return ArrayValidator(element)

    def object(self, fields: Mapping[str, Validator]) -> ObjectValidator:
        """A dict with exactly these fields (wrap a field in :meth:`optional` to let it be missing)."""
        return ObjectValidator(check_object_fields(fields))

    def record(self, keys: Validator, values: Validator) -> RecordValidator:
        """A dict with any field names matching ``keys`` and values matching ``values``."""
        return RecordValidator(keys, values)


v: Final = ValidatorBuilder()
"""The validator builder: ``from zapnb import v``."""


# --- JSON ---------------------------------------------------------------------------------------------------

_SIMPLE: Final[dict[str, Validator]] = {
    "string": _STRING,
    "number": _NUMBER,
    "float64": _FLOAT64,
    "int64": _INT64,
    "boolean": _BOOLEAN,
    "null": _NULL,
    "bytes": _BYTES,
    "any": _ANY,
}


def validator_from_json(data: Any) -> Validator:
    """Read back a validator written by :meth:`Validator.to_json`.

    Raises
    ------
    SchemaDefinitionError
        If ``data`` does not describe a validator.

    Examples
    --------
    >>> from zapnb import v
    >>> union = v.union(v.literal(1.5), v.object({"a": v.optional(v.bytes())}))
    >>> validator_from_json(union.to_json()) == union
    True
    """
    try:
        return _from_json(data)
    except (KeyError, TypeError, AttributeError, ValueError, ZapError) as err:
        raise SchemaDefinitionError(
            f"Cannot read a validator from {str(data)[:200]}: {err!r}. Pass what Validator.to_json() wrote."
        ) from err


def _from_json(data: dict[str, Any]) -> Validator:
    from zapnb.jsonvalues import decode_json

    kind = data["type"]
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "id":
        return v.id(data["tableName"])
    if kind == "literal":
        return v.literal(decode_json(data["value"]))
    if kind == "array":
        return v.array(_from_json(data["value"]))
    if kind == "optional":
        return v.optional(_from_json(data["value"]))
    if kind == "union":
        return v.union(*(_from_json(member) for member in data["value"]))
    if kind == "record":
        return v.record(_from_json(data["keys"]), _from_json(data["values"]))
    if kind == "object":
        fields: dict[str, Validator] = {}
        for name, spec in data["value"].items():
            inner = _from_json(spec["fieldType"])
            fields[name] = v.optional(inner) if spec["optional"] else inner
        return v.object(fields)
    raise ValueError(f"unknown validator type {kind!r}")


# --- paths --------------------------------------------------------------------------------------------------


def validators_at(validator: Validator, path: str) -> list[Validator]:
    """Every validator the field at dotted ``path`` can have under ``validator`` (empty if it cannot exist).

    Unions contribute each member that can hold the path; ``v.any()`` holds every path; an optional field
    gives its inner validator.

    Examples
    --------
    >>> from zapnb import v
    >>> doc = v.union(v.object({"a": v.object({"b": v.string()})}), v.object({"a": v.optional(v.int64())}))
    >>> validators_at(doc, "a.b"), validators_at(doc, "a"), validators_at(doc, "c")
    ([v.string()], [v.object({b: v.string()}), v.int64()], [])
    """
    found = [validator]
    for part in path.split(".") if path else []:
        found = [child for parent in found for child in _children(parent, part)]
    return [child for parent in found for child in _flatten(parent)]


def _children(validator: Validator, name: str) -> list[Validator]:
    if isinstance(validator, AnyValidator):
        return [validator]
    if isinstance(validator, OptionalValidator):
        return _children(validator.inner, name)
    if isinstance(validator, UnionValidator):
        return [child for member in validator.members for child in _children(member, name)]
    if isinstance(validator, ObjectValidator):
        child = validator.field_validator(name)
        return [] if child is None else [child]
    return []


def _flatten(validator: Validator) -> list[Validator]:
    if isinstance(validator, OptionalValidator):
        return _flatten(validator.inner)
    if isinstance(validator, UnionValidator):
        return [leaf for member in validator.members for leaf in _flatten(member)]
    return [validator]
