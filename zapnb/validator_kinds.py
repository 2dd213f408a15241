"""The kinds of validator, one class each: ``v.string()``, ``v.id("t")``, ``v.object({...})`` and the rest.

Each class checks and normalizes its values (``_check``), prints as the source text that builds it, names the
Polars dtype of its column and describes itself as JSON. Build them with :data:`zapnb.validators.v`, which
checks its arguments; the classes are public for ``isinstance`` tests and type annotations.

Scalars come first (string, float64, int64, boolean, null, bytes, any, id, literal), then the containers
(optional, array, object, record, union).

Examples
--------
>>> from zapnb import v
>>> isinstance(v.nullable(v.string()), UnionValidator), v.nullable(v.string()).members
(True, (v.string(), v.null()))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeAlias

from zapnb.errors import InvalidIdError, InvalidValueError, SchemaDefinitionError
from zapnb.ids import Id, plain_ids
from zapnb.validator_base import (
    _SURROGATE,
    IdResolver,
    Validator,
    _is_number,
    _is_unicode,
    _Mismatch,
    _plain_str,
)
from zapnb.values import canonical_float, values_equal

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "AnyValidator",
    "ArrayValidator",
    "BooleanValidator",
    "BytesValidator",
    "Float64Validator",
    "IdValidator",
    "Int64Validator",
    "LiteralValidator",
    "NullValidator",
    "ObjectValidator",
    "OptionalValidator",
    "RecordValidator",
    "StringValidator",
    "UnionValidator",
    "is_string_like",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_ABSENT: Final = object()

LiteralValue: TypeAlias = "str | int | float | bool"


def _check_not_optional(validator: Validator, where: str) -> Validator:
    """``validator``, if it is a validator other than ``v.optional(...)``; ``where`` names what takes it."""
    if not isinstance(validator, Validator):
        raise SchemaDefinitionError(
            f"{where} takes validators such as v.string(), not {type(validator).__name__} {validator!r}."
        )
    if isinstance(validator, OptionalValidator):
        raise SchemaDefinitionError(
            f"{validator} cannot be used in {where}: v.optional(...) is only valid as a field of "
            "v.object({...}) or define_table({...}). For a value that may be null, use v.nullable(...)."
        )
    return validator


# --- scalars ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class StringValidator(Validator):
    """``v.string()``: a ``str`` of valid Unicode (no lone surrogates)."""

    type_name: ClassVar[str] = "string"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if type(value) is str:
            if value.isascii() or _SURROGATE.search(value) is None:
                return value
        elif isinstance(value, str) and _is_unicode(value):
            return _plain_str(value)
        raise _Mismatch("no_match", value, self)


@dataclass(frozen=True, slots=True, repr=False)
class Float64Validator(Validator):
    """``v.number()`` or ``v.float64()`` (one validator): a ``float``; an ``int`` is stored as ``float``.

    ``spelling`` only changes how it prints; it takes no part in equality.
    """

    spelling: Literal["number", "float64"] = field(default="number", compare=False)
    type_name: ClassVar[str] = "float64"
    _dtype: ClassVar[str] = "Float64"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        kind = type(value)
        if kind is float:
            return value if value == value else canonical_float(value)
        if kind is int or _is_number(value):
            try:
                return canonical_float(float(value))
            except OverflowError:
                pass
        raise _Mismatch("no_match", value, self)

    def describe(self) -> str:
        return f"v.{self.spelling}()"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.spelling}


@dataclass(frozen=True, slots=True, repr=False)
class Int64Validator(Validator):
    """``v.int64()``: an ``int`` (not a ``bool``) from -2**63 to 2**63 - 1."""

    type_name: ClassVar[str] = "int64"
    _dtype: ClassVar[str] = "Int64"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        is_int = type(value) is int or (isinstance(value, int) and not isinstance(value, bool))
        if is_int and INT64_MIN <= value <= INT64_MAX:
            return int(value)
        raise _Mismatch("no_match", value, self)


@dataclass(frozen=True, slots=True, repr=False)
class BooleanValidator(Validator):
    """``v.boolean()``: ``True`` or ``False`` (not ``0`` or ``1``)."""

    type_name: ClassVar[str] = "boolean"
    _dtype: ClassVar[str] = "Boolean"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if value is True or value is False:
            return value
        raise _Mismatch("no_match", value, self)


@dataclass(frozen=True, slots=True, repr=False)
class NullValidator(Validator):
    """``v.null()``: ``None``."""

    type_name: ClassVar[str] = "null"
    _dtype: ClassVar[str] = "Null"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if value is None:
            return None
        raise _Mismatch("no_match", value, self)


@dataclass(frozen=True, slots=True, repr=False)
class BytesValidator(Validator):
    """``v.bytes()``: ``bytes`` (a ``bytearray`` or ``memoryview`` is copied to ``bytes``)."""

    type_name: ClassVar[str] = "bytes"
    _dtype: ClassVar[str] = "Binary"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise _Mismatch("no_match", value, self)


@dataclass(frozen=True, slots=True, repr=False)
class AnyValidator(Validator):
    """``v.any()``: any value zapnb can store (see :func:`zapnb.documents.normalize_value`)."""

    type_name: ClassVar[str] = "any"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        from zapnb.documents import normalize_value

        try:
            return normalize_value(value)
        except InvalidValueError as err:
            mismatch = _Mismatch("no_match", value if err.value is None else err.value, self)
            mismatch.segments.append(err.path)
            raise mismatch from None

    def stores_json(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, repr=False)
class IdValidator(Validator):
    """``v.id("table")``: the ID of a document in ``table``; normalized to a :class:`zapnb.Id`."""

    table: str
    type_name: ClassVar[str] = "id"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if isinstance(value, Id):
            if value.table is not None and value.table != self.table:
                raise _Mismatch("wrong_table", value, self, value.table)
            result = value
        elif isinstance(value, str):
            try:
                result = Id(value, self.table)
            except InvalidIdError:
                raise _Mismatch("no_match", value, self) from None
        else:
            raise _Mismatch("no_match", value, self)
        if ids is not None and result.table_number != ids.table_number(self.table):
            found = ids.table_name(result.table_number)
            raise (
                _Mismatch("no_match", value, self)
                if found is None
                else _Mismatch("wrong_table", value, self, found)
            )
        return result.with_table(self.table)

    def describe(self) -> str:
        return f'v.id("{self.table}")'

    def to_json(self) -> dict[str, Any]:
        return {"type": "id", "tableName": self.table}


def _literal_text(value: LiteralValue) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        text = "nan" if math.isnan(value) else "inf"
        return f'{"-" if math.copysign(1.0, value) < 0 else ""}float("{text}")'
    return repr(value)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class LiteralValidator(Validator):
    """``v.literal(x)``: exactly ``x``, a str, int (int64), float or bool; ``1``, ``1.0`` and ``True`` differ.

    A float literal also accepts an ``int`` of the same value (as ``v.number()`` does).
    """

    value: str | int | float | bool
    type_name: ClassVar[str] = "literal"

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        literal = self.value
        if value is literal:
            return literal
        kind = type(literal)
        if kind is str:
            if isinstance(value, str) and value == literal:
                return literal
        elif kind is int:
            if _is_number(value) and isinstance(value, int) and value == literal:
                return literal
        elif kind is float and _is_number(value):
            try:
                if values_equal(float(value), literal):
                    return literal
            except OverflowError:
                pass
        raise _Mismatch("no_match", value, self)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is LiteralValidator
            and type(other.value) is type(self.value)
            and values_equal(self.value, other.value)
        )

    def __hash__(self) -> int:
        return hash((type(self.value).__name__, repr(self.value)))

    def describe(self) -> str:
        return f"v.literal({_literal_text(self.value)})"

    def polars_dtype(self) -> pl.DataType:
        import polars as pl

        literal = self.value
        if isinstance(literal, str):
            return pl.Enum([literal])
        return {bool: pl.Boolean(), int: pl.Int64(), float: pl.Float64()}[type(literal)]

    def to_json(self) -> dict[str, Any]:
        from zapnb.jsonvalues import encode_json

        return {"type": "literal", "value": encode_json(self.value)}


# --- containers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class OptionalValidator(Validator):
    """``v.optional(x)``: marks an object field that may be missing. Only valid as a field of an object."""

    inner: Validator
    type_name: ClassVar[str] = "optional"

    def validate(
        self,
        value: Any,
        *,
        path: str = "",
        ids: IdResolver | Mapping[str, int] | None = None,
        table: str | None = None,
    ) -> Any:
        """Refuse: a value on its own is never optional (see :meth:`Validator.validate`)."""
        raise SchemaDefinitionError(
            f"{self} cannot check a value on its own: v.optional(...) is only valid as a field of "
            f"v.object({{...}}) or define_table({{...}}). Validate with {self.inner} instead."
        )

    def describe(self) -> str:
        return f"v.optional({self.inner})"

    def polars_dtype(self) -> pl.DataType:
        return self.inner.polars_dtype()

    def stores_json(self) -> bool:
        return self.inner.stores_json()

    def to_json(self) -> dict[str, Any]:
        return {"type": "optional", "value": self.inner.to_json()}


@dataclass(frozen=True, slots=True, repr=False)
class ArrayValidator(Validator):
    """``v.array(x)``: a list (or tuple, stored as a list) whose every element matches ``x``."""

    element: Validator
    type_name: ClassVar[str] = "array"

    def __post_init__(self) -> None:
        _check_not_optional(self.element, "v.array(...)")

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if type(value) is not list and not isinstance(value, list | tuple):
            raise _Mismatch("no_match", value, self)
        check = self.element._check
        out: list[Any] = []
        append = out.append
        try:
            for item in value:
                append(check(item, ids))
        except _Mismatch as m:
            m.segments.append(f"[{len(out)}]")
            raise
        return out

    def describe(self) -> str:
        return f"v.array({self.element})"

    def polars_dtype(self) -> pl.DataType:
        import polars as pl

        return pl.List(self.element.polars_dtype())

    def to_json(self) -> dict[str, Any]:
        return {"type": "array", "value": self.element.to_json()}


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class ObjectValidator(Validator):
    """``v.object({...})``: a dict with exactly these fields; ``v.optional`` fields may be missing.

    ``fields`` keeps declaration order (the order of columns in typed frames); equality ignores it.
    """

    fields: tuple[tuple[str, Validator], ...]
    type_name: ClassVar[str] = "object"
    _plan: tuple[tuple[str, Validator, bool], ...] = field(init=False, compare=False)
    _names: frozenset[str] = field(init=False, compare=False)
    _plain: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        plan = []
        for name, validator in self.fields:
            if isinstance(validator, OptionalValidator):
                plan.append((name, validator.inner, True))
            else:
                plan.append((name, validator, False))
        object.__setattr__(self, "_plan", tuple(plan))
        object.__setattr__(self, "_names", frozenset(name for name, _ in self.fields))
        from zapnb.idfields import stores_ids_as_text  # it reads these validator classes

        object.__setattr__(self, "_plain", frozenset(name for name, v, _ in plan if stores_ids_as_text(v)))

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if type(value) is not dict and not isinstance(value, dict):
            raise _Mismatch("no_match", value, self)
        out: dict[str, Any] = {}
        get = value.get
        for name, validator, optional in self._plan:
            item = get(name, _ABSENT)
            if item is _ABSENT:
                if optional:
                    continue
                raise _Mismatch("missing_field", value, self, name)
            try:
                out[name] = validator._check(item, ids)
            except _Mismatch as m:
                m.segments.append(f".{name}")
                raise
            if name in self._plain:  # stored as text: an Id reads back as a str, so it is one from the start
                out[name] = plain_ids(out[name])
        if len(out) != len(value):
            extra = next(key for key in value if key not in self._names)
            raise _Mismatch("extra_field", value, self, str(extra))
        return out

    def __eq__(self, other: object) -> bool:
        return type(other) is ObjectValidator and dict(self.fields) == dict(other.fields)

    def __hash__(self) -> int:
        return hash(frozenset(self.fields))

    def field_validator(self, name: str) -> Validator | None:
        """The validator of field ``name`` (an :class:`OptionalValidator` for optional fields), or None.

        Examples
        --------
        >>> from zapnb import v
        >>> v.object({"a": v.optional(v.string())}).field_validator("a")
        v.optional(v.string())
        """
        return dict(self.fields).get(name)

    def describe(self) -> str:
        inside = ", ".join(f"{name}: {validator}" for name, validator in self.fields)
        return f"v.object({{{inside}}})"

    def polars_dtype(self) -> pl.DataType:
        import polars as pl

        return pl.Struct({name: validator.polars_dtype() for name, validator in self.fields})

    def to_json(self) -> dict[str, Any]:
        value = {name: _field_json(validator) for name, validator in self.fields}
        return {"type": "object", "value": value}


def _field_json(validator: Validator) -> dict[str, Any]:
    if isinstance(validator, OptionalValidator):
        return {"fieldType": validator.inner.to_json(), "optional": True}
    return {"fieldType": validator.to_json(), "optional": False}


def is_string_like(validator: Validator) -> bool:
    """Whether every value ``validator`` accepts is a string (strings, IDs, string literals, their unions).

    Examples
    --------
    >>> from zapnb import v
    >>> is_string_like(v.union(v.literal("a"), v.id("users"))), is_string_like(v.nullable(v.string()))
    (True, False)
    """
    if isinstance(validator, StringValidator | IdValidator):
        return True
    if isinstance(validator, LiteralValidator):
        return isinstance(validator.value, str)
    if isinstance(validator, UnionValidator):
        return all(is_string_like(member) for member in validator.members)
    return False


@dataclass(frozen=True, slots=True, repr=False)
class RecordValidator(Validator):
    """``v.record(keys, values)``: a dict with any number of fields; names match ``keys``, values ``values``.

    ``keys`` must be string-like: ``v.string()``, ``v.id(...)``, string literals or a union of those.
    """

    keys: Validator
    values: Validator
    type_name: ClassVar[str] = "record"

    def __post_init__(self) -> None:
        _check_not_optional(self.keys, "the keys of v.record(...)")
        _check_not_optional(self.values, "the values of v.record(...)")
        if not is_string_like(self.keys):
            raise SchemaDefinitionError(
                f"{self.keys} cannot be the keys of v.record(...): field names are strings, so use "
                'v.string(), v.id("table"), string literals or a v.union(...) of those.'
            )

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if not isinstance(value, dict):
            raise _Mismatch("no_match", value, self)
        out: dict[str, Any] = {}
        for key, item in value.items():
            try:
                name = self.keys._check(key, ids)
            except _Mismatch as m:
                m.segments.append(".keys()")
                raise
            try:
                out[name] = self.values._check(item, ids)
            except _Mismatch as m:
                m.segments.append(f".{key}")
                raise
        return out

    def describe(self) -> str:
        return f"v.record({self.keys}, {self.values})"

    def stores_json(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        return {"type": "record", "keys": self.keys.to_json(), "values": self.values.to_json()}


def _members(validator: Validator) -> tuple[Validator, ...]:
    return validator.members if isinstance(validator, UnionValidator) else (validator,)


@dataclass(frozen=True, slots=True, repr=False)
class UnionValidator(Validator):
    """``v.union(a, b, ...)``: a value matching any member; the first member that matches normalizes it."""

    members: tuple[Validator, ...]
    type_name: ClassVar[str] = "union"
    _strings: frozenset[str] = field(init=False, compare=False)
    _layouts: list[tuple[pl.DataType, bool]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.members:
            raise SchemaDefinitionError(
                "v.union() needs at least one member, as in v.union(v.string(), v.null())."
            )
        for member in self.members:
            _check_not_optional(member, "v.union(...)")
        # a union nested in a union is the same set of values as its members in place (and types like it)
        flat = tuple(m for member in self.members for m in (_members(member)))
        object.__setattr__(self, "members", flat)
        has_ids = any(isinstance(member, IdValidator) for member in self.members)
        strings = [m.value for m in self.members if isinstance(m, LiteralValidator) and type(m.value) is str]
        object.__setattr__(self, "_strings", frozenset() if has_ids else frozenset(strings))
        object.__setattr__(self, "_layouts", [])

    def _check(self, value: Any, ids: IdResolver | None) -> Any:
        if type(value) is str and value in self._strings:
            return value
        if len(self.members) == 1:
            return self.members[0]._check(value, ids)
        for member in self.members:
            try:
                return member._check(value, ids)
            except _Mismatch:
                continue
        raise _Mismatch("no_match", value, self)

    def describe(self) -> str:
        return f"v.union({', '.join(str(member) for member in self.members)})"

    def _layout(self) -> tuple[pl.DataType, bool]:
        """The union's dtype, and whether its column holds JSON text (computed once)."""
        if not self._layouts:
            self._layouts.append(self._compute_layout())
        return self._layouts[0]

    def _compute_layout(self) -> tuple[pl.DataType, bool]:
        import polars as pl

        others = [m for m in self.members if not isinstance(m, NullValidator)]
        if not others:
            return pl.Null(), False
        if all(isinstance(m, LiteralValidator) and type(m.value) is str for m in others):
            return pl.Enum(list(dict.fromkeys(m.value for m in others))), False  # type: ignore[attr-defined]
        dtypes = [m.polars_dtype() for m in others]
        if not any(m.stores_json() for m in others) and all(d == dtypes[0] for d in dtypes):
            return dtypes[0], False
        if all(is_string_like(m) for m in others):
            return pl.String(), False
        return pl.String(), True

    def polars_dtype(self) -> pl.DataType:
        return self._layout()[0]

    def stores_json(self) -> bool:
        return self._layout()[1]

    def to_json(self) -> dict[str, Any]:
        return {"type": "union", "value": [member.to_json() for member in self.members]}
