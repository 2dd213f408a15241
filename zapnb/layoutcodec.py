"""Codecs: how one value sits in an Arrow column of a table's layout, and how it comes back.

Responsibilities:

- derive the :class:`Codec` of a validator (a typed column, or zapnb JSON text when no Arrow type holds every
  value the validator admits; see :mod:`zapnb.layout` for the rules) and the :class:`Slot` of a field;
- turn values into the cells of a column, refusing what the column cannot hold exactly (:func:`encoder`,
  :func:`encode_column`), and cells back into values (:func:`decoder`, :func:`frame_decoder`).

:mod:`zapnb.layout` builds a table's columns from these; nothing else needs them.

Examples
--------
>>> from zapnb import v
>>> describe_slot(slot_of("n", v.optional(v.nullable(v.int64())), exact=True))
'n: json?'
>>> describe_slot(slot_of("tags", v.array(v.union(v.literal("a"), v.literal("b"))), exact=True))
'tags: list<string>'
>>> encoder(codec_of(v.array(v.number())))([1.5, -0.0])
[1.5, -0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, TypeAlias

import pyarrow as pa

from zapnb.errors import InvalidValueError, ZapError
from zapnb.ids import Id
from zapnb.ids import labeller as ids_labeller
from zapnb.jsonvalues import decode_stored_json, encode_json
from zapnb.validator_base import Validator
from zapnb.validator_kinds import (
    INT64_MAX,
    INT64_MIN,
    ArrayValidator,
    BooleanValidator,
    BytesValidator,
    Float64Validator,
    IdValidator,
    Int64Validator,
    LiteralValidator,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    StringValidator,
    UnionValidator,
)
from zapnb.values import MISSING, MissingType

__all__ = [
    "JSON_CODEC",
    "STRING_CODEC",
    "Codec",
    "Misfit",
    "Slot",
    "arrow_field",
    "codec_of",
    "decoder",
    "describe_slot",
    "document_fields",
    "encode_column",
    "encoder",
    "frame_decoder",
    "identity",
    "labeller",
    "slot_of",
]

CodecKind: TypeAlias = Literal[
    "string", "id", "float64", "int64", "boolean", "bytes", "null", "json", "list", "struct"
]
Decode: TypeAlias = Callable[[Any], Any]
Encode: TypeAlias = Callable[[Any], Any]


@dataclass(frozen=True, slots=True, repr=False)
class Codec:
    """How a value sits in Arrow: its kind of column and, for lists and structs, their parts.

    ``nullable`` (typed kinds only) means an Arrow null holds the value ``None``; ``table`` names the table
    of an ``"id"`` column. JSON holds any value, ``None`` included, as text; ``inner`` is the typed codec of
    a field that is JSON only because it may be both missing and null (its IDs read back labelled).
    """

    kind: CodecKind
    nullable: bool = False
    table: str | None = None
    element: Codec | None = None
    fields: tuple[Slot, ...] = ()
    inner: Codec | None = None

    @property
    def holds_none(self) -> bool:
        """Whether the value ``None`` fits (an Arrow null in a typed column, ``null`` in JSON)."""
        return self.nullable or self.kind in ("null", "json")

    def __repr__(self) -> str:
        return f"Codec({_describe(self)})"


@dataclass(frozen=True, slots=True, repr=False)
class Slot:
    """A named place for a value, a column or a field of a struct; ``optional`` when it may be missing."""

    name: str
    codec: Codec
    optional: bool = False

    @property
    def null_is_missing(self) -> bool:
        """Whether an Arrow null here is a missing field (else it is the value ``None``)."""
        return self.optional or self.codec.kind == "json"

    def __repr__(self) -> str:
        return f"Slot({describe_slot(self)})"


JSON_CODEC: Final = Codec("json")
_NULL: Final = Codec("null")
STRING_CODEC: Final = Codec("string")
JSON_METADATA: Final = {b"zapnb.encoding": b"json"}
_SCALARS: Final[Mapping[type[Validator], CodecKind]] = {
    StringValidator: "string",
    Float64Validator: "float64",
    Int64Validator: "int64",
    BooleanValidator: "boolean",
    BytesValidator: "bytes",
    NullValidator: "null",
}
_LITERALS: Final[Mapping[type, CodecKind]] = {str: "string", int: "int64", float: "float64", bool: "boolean"}
_ARROW: Final[Mapping[str, Callable[[], pa.DataType]]] = {
    "string": pa.string,
    "id": pa.string,
    "json": pa.string,
    "float64": pa.float64,
    "int64": pa.int64,
    "boolean": pa.bool_,
    "bytes": pa.binary,
    "null": pa.null,
}


# --- from validators to codecs ------------------------------------------------------------------------------


def codec_of(validator: Validator, exact: bool = True) -> Codec:
    """The codec of the values ``validator`` admits.

    With ``exact=False`` an optional field that admits null keeps its typed column (as the typed frames of
    :mod:`zapnb.columns` hold it, where a null is a missing field): only to compare with those frames.

    Examples
    --------
    >>> from zapnb import v
    >>> codec_of(v.nullable(v.id("users")))
    Codec(id("users") | null)
    >>> codec_of(v.union(v.int64(), v.number())).kind
    'json'
    """
    kind = _SCALARS.get(type(validator))
    if kind is not None:
        return Codec(kind)
    if isinstance(validator, IdValidator):
        return Codec("id", table=validator.table)
    if isinstance(validator, LiteralValidator):
        return Codec(_LITERALS[type(validator.value)])
    if isinstance(validator, ArrayValidator):
        return Codec("list", element=codec_of(validator.element, exact))
    if isinstance(validator, ObjectValidator) and validator.fields:
        return Codec("struct", fields=tuple(slot_of(name, f, exact) for name, f in validator.fields))
    if isinstance(validator, UnionValidator):
        return _union_codec(validator.members, exact)
    return JSON_CODEC  # v.any(), v.record(...), v.object({}) (Lance stores no empty structs)


def slot_of(name: str, validator: Validator, exact: bool, optional: bool = False) -> Slot:
    """The slot of field ``name`` (optional when ``validator`` is ``v.optional(...)`` or ``optional``).

    A field that may be both missing and null is JSON: one Arrow null cannot tell them apart.
    """
    if isinstance(validator, OptionalValidator):
        validator, optional = validator.inner, True
    codec = codec_of(validator, exact)
    if optional and exact and codec.holds_none and codec.kind != "json":
        codec = Codec("json", inner=codec)
    return Slot(name, codec, optional)


def _union_codec(members: Sequence[Validator], exact: bool) -> Codec:
    nullable = False
    codecs: list[Codec] = []
    for member in members:
        codec = codec_of(member, exact)
        if codec.kind == "null":
            nullable = True
            continue
        if codec.nullable:
            nullable, codec = True, replace(codec, nullable=False)
        if codec not in codecs:
            codecs.append(codec)
    if not codecs:
        return _NULL
    if len(codecs) > 1:
        erased = {_without_tables(codec) for codec in codecs}
        if len(erased) > 1:
            return JSON_CODEC
        codecs = [erased.pop()]
    codec = codecs[0]
    return replace(codec, nullable=True) if nullable and codec.kind != "json" else codec


def _without_tables(codec: Codec) -> Codec:
    """``codec`` with every ID column a plain string column (for members that differ only in tables)."""
    if codec.kind == "id":
        return replace(codec, kind="string", table=None)
    if codec.element is not None:
        return replace(codec, element=_without_tables(codec.element))
    if codec.fields:
        return replace(codec, fields=tuple(replace(s, codec=_without_tables(s.codec)) for s in codec.fields))
    return codec


def document_fields(document: Validator) -> list[tuple[str, Validator, bool]] | None:
    """Each top-level field of a table whose documents match ``document``: name, validator, optional.

    ``None`` when ``document`` is not an object or a union of objects (the table has the generic layout).
    For a union of objects a field's validator is the union of its validators in the members that have it,
    and it is optional when some member lacks it or marks it optional.

    Examples
    --------
    >>> from zapnb import v
    >>> a, b = v.object({"n": v.int64(), "s": v.string()}), v.object({"n": v.optional(v.number())})
    >>> document_fields(v.union(a, b))
    [('n', v.union(v.int64(), v.number()), True), ('s', v.string(), True)]
    """
    objects = _document_objects(document)
    if objects is None:
        return None
    out = []
    for name in dict.fromkeys(name for obj in objects for name, _ in obj.fields):
        found = [obj.field_validator(name) for obj in objects]
        optional = any(f is None or isinstance(f, OptionalValidator) for f in found)
        inners: list[Validator] = []
        for f in found:
            inner = f.inner if isinstance(f, OptionalValidator) else f
            if inner is not None and inner not in inners:
                inners.append(inner)
        out.append((name, inners[0] if len(inners) == 1 else UnionValidator(tuple(inners)), optional))
    return out


def _document_objects(document: Validator) -> list[ObjectValidator] | None:
    if isinstance(document, ObjectValidator):
        return [document]
    if isinstance(document, UnionValidator):
        found = [_document_objects(member) for member in document.members]
        return None if any(f is None for f in found) else [obj for f in found if f for obj in f]
    return None


def _arrow_type(codec: Codec) -> pa.DataType:
    if codec.kind == "list":
        assert codec.element is not None
        return pa.list_(arrow_field("item", codec.element))
    if codec.kind == "struct":
        return pa.struct([arrow_field(slot.name, slot.codec) for slot in codec.fields])
    return _ARROW[codec.kind]()


def arrow_field(name: str, codec: Codec) -> pa.Field:
    """The Arrow field of a column (JSON columns carry the field metadata ``zapnb.encoding: json``)."""
    return pa.field(name, _arrow_type(codec), metadata=JSON_METADATA if codec.kind == "json" else None)


def _describe(codec: Codec) -> str:
    if codec.kind == "list":
        assert codec.element is not None
        text = f"list<{_describe(codec.element)}>"
    elif codec.kind == "struct":
        text = "struct<" + ", ".join(describe_slot(slot) for slot in codec.fields) + ">"
    else:
        text = f'id("{codec.table}")' if codec.kind == "id" else codec.kind
    return text + (" | null" if codec.nullable else "")


def describe_slot(slot: Slot) -> str:
    """A slot as ``name: kind`` (``?`` when optional, ``| null`` when an Arrow null is ``None``)."""
    return f"{slot.name}: {_describe(slot.codec)}{'?' if slot.optional else ''}"


# --- from values to cells -----------------------------------------------------------------------------------


class Misfit(Exception):  # noqa: N818 (control flow inside zapnb, turned into InvalidValueError)
    """A value that its column cannot hold exactly; containers add path segments while it unwinds."""

    def __init__(self, value: Any, expected: str) -> None:
        super().__init__(expected)
        self.value = value
        self.expected = expected
        self.segments: list[str] = []


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int64(value: Any) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


_TESTS: Final[Mapping[str, Callable[[Any], bool]]] = {
    "string": _is_str,
    "id": _is_str,
    "float64": lambda value: type(value) is float,
    "int64": _is_int64,
    "boolean": lambda value: type(value) is bool,
    "bytes": lambda value: type(value) is bytes,
    "null": lambda value: value is None,
}
_FAST_TYPES: Final[Mapping[str, frozenset[type]]] = {
    "string": frozenset({str, Id}),
    "id": frozenset({str, Id}),
    "float64": frozenset({float}),
    "int64": frozenset({int}),
    "boolean": frozenset({bool}),
    "bytes": frozenset({bytes}),
    "null": frozenset({type(None)}),
}


def encoder(codec: Codec) -> Encode:
    """The cell of a value (never MISSING) in ``codec``'s column; raises Misfit when it cannot hold it."""
    if codec.kind == "json":
        return _encode_json
    if codec.kind == "list":
        assert codec.element is not None
        return _list_encoder(encoder(codec.element), codec.nullable)
    if codec.kind == "struct":
        return _struct_encoder(codec)
    test, nullable, kind = _TESTS[codec.kind], codec.nullable, codec.kind

    def encode(value: Any) -> Any:
        if test(value) or (value is None and nullable):
            return value
        raise Misfit(value, kind)

    return encode


def _encode_json(value: Any) -> str:
    try:
        return encode_json(value)
    except ZapError as err:
        raise Misfit(value, f"a zapnb value ({err})") from None


def _list_encoder(element: Encode, nullable: bool) -> Encode:
    def encode(value: Any) -> Any:
        if type(value) is not list and not isinstance(value, list | tuple):
            if value is None and nullable:
                return None
            raise Misfit(value, "an array")
        out: list[Any] = []
        try:
            for item in value:
                out.append(element(item))
        except Misfit as misfit:
            misfit.segments.append(f"[{len(out)}]")
            raise
        return out

    return encode


def _struct_encoder(codec: Codec) -> Encode:
    parts = [(slot.name, encoder(slot.codec), slot.optional) for slot in codec.fields]
    names = frozenset(slot.name for slot in codec.fields)

    def encode(value: Any) -> Any:
        if not isinstance(value, dict):
            if value is None and codec.nullable:
                return None
            raise Misfit(value, "an object")
        if not names.issuperset(value):
            raise Misfit(value, f"an object with only the fields {sorted(names)}")
        out: dict[str, Any] = {}
        for name, encode_field, optional in parts:
            item = value.get(name, MISSING)
            try:
                if item is MISSING and not optional:
                    raise Misfit(value, f"an object with the required field {name!r}")
                out[name] = None if item is MISSING else encode_field(item)
            except Misfit as misfit:
                misfit.segments.append(f".{name}")
                raise
        return out

    return encode


def misfit_error(doc: Mapping[str, Any], field: str, misfit: Misfit) -> InvalidValueError:
    """The error for a value of ``doc``'s top-level ``field`` that does not fit its column."""
    path = f".{field}" + "".join(reversed(misfit.segments))
    return InvalidValueError(
        f"Document {doc.get('_id')!r} does not fit its table's columns: {path} is {misfit.value!r}, where "
        f"the column holds {misfit.expected}. Store documents as the table's validator returns them "
        "(TableDefinition.validate_document), and rewrite the table when its definition changes.",
        path=path,
        value=misfit.value,
    )


def encode_column(slot: Slot, docs: Sequence[Mapping[str, Any]], arrow_type: pa.DataType) -> pa.Array:
    """The column of top-level ``slot`` for ``docs``; scalars whose Python types all fit go straight to Arrow.

    Raises
    ------
    InvalidValueError
        A value the column cannot hold exactly, or a required field missing (see :func:`misfit_error`).
    """
    values = [doc.get(slot.name, MISSING) for doc in docs]
    fast = _FAST_TYPES.get(slot.codec.kind)
    if fast is not None:
        allowed = fast | {type(None)} if slot.codec.nullable else fast
        if slot.optional:
            allowed = allowed | {MissingType}
        if allowed.issuperset(map(type, values)) and (slot.codec.kind != "int64" or _ints_fit(values)):
            return pa.array(
                [None if v is MISSING else v for v in values] if slot.optional else values, arrow_type
            )
    encode, cells = encoder(slot.codec), list[Any]()
    for row, value in enumerate(values):
        try:
            if value is MISSING and not slot.optional:
                raise Misfit(value, "a value (the field is required)")
            cells.append(None if value is MISSING else encode(value))
        except Misfit as misfit:
            raise misfit_error(docs[row], slot.name, misfit) from None
    return pa.array(cells, arrow_type)


def _ints_fit(values: list[Any]) -> bool:
    ints = [v for v in values if type(v) is int]
    return not ints or (min(ints) >= INT64_MIN and max(ints) <= INT64_MAX)


# --- from cells to values -----------------------------------------------------------------------------------


def labeller(table: str) -> Decode:
    """Make an ``Id`` labelled with ``table`` from stored text (already checked when it was written)."""
    return ids_labeller(table)


def decoder(codec: Codec, from_json: bool = False) -> Decode | None:
    """How a non-null cell of ``codec``'s column reads back as a value (``None``: as it is).

    With ``from_json`` the cell is part of a value already decoded from JSON (a field that may be both
    missing and null keeps its typed codec as ``inner``): only its IDs are labelled.
    """
    if codec.kind == "json":
        inner = None if codec.inner is None else decoder(codec.inner, from_json=True)
        if from_json or inner is None:
            return inner if from_json else decode_stored_json
        return lambda text: None if (value := decode_stored_json(text)) is None else inner(value)
    if codec.kind == "id":
        assert codec.table is not None
        return labeller(codec.table)
    if codec.kind == "list":
        assert codec.element is not None
        element = decoder(codec.element, from_json)
        if element is None:
            return None
        if codec.element.holds_none:
            return lambda cells: [None if cell is None else element(cell) for cell in cells]
        return lambda cells: [element(cell) for cell in cells]
    if codec.kind == "struct":
        return _json_struct_decoder(codec) if from_json else _struct_decoder(codec)
    return None


def _struct_decoder(codec: Codec) -> Decode:
    plan = [(slot.name, decoder(slot.codec), slot.null_is_missing) for slot in codec.fields]

    def decode(cells: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, decode_field, null_is_missing in plan:
            cell = cells[name]
            if cell is None:
                if not null_is_missing:
                    out[name] = None
            else:
                out[name] = cell if decode_field is None else decode_field(cell)
        return out

    return decode


def _json_struct_decoder(codec: Codec) -> Decode | None:
    """Label the IDs of an object decoded from JSON (its missing fields are absent, its nulls ``None``)."""
    plan = [(slot.name, d) for slot in codec.fields if (d := decoder(slot.codec, from_json=True)) is not None]
    if not plan:
        return None

    def decode(value: dict[str, Any]) -> dict[str, Any]:
        out = dict(value)
        for name, decode_field in plan:
            if out.get(name) is not None:
                out[name] = decode_field(out[name])
        return out

    return decode


def frame_decoder(validator: Validator) -> Decode:
    """How a non-null cell of :func:`zapnb.columns.validate_column`'s output reads back as a value."""
    if validator.stores_json():
        return decode_stored_json
    if isinstance(validator, OptionalValidator):
        return frame_decoder(validator.inner)
    if isinstance(validator, IdValidator):
        return labeller(validator.table)
    if isinstance(validator, ArrayValidator):
        element = frame_decoder(validator.element)
        return lambda cells: [None if cell is None else element(cell) for cell in cells]
    if isinstance(validator, ObjectValidator):
        plan = [(name, frame_decoder(f), isinstance(f, OptionalValidator)) for name, f in validator.fields]
        return lambda cells: {
            name: None if cells[name] is None else decode(cells[name])
            for name, decode, optional in plan
            if not (optional and cells[name] is None)
        }
    if isinstance(validator, UnionValidator):
        others = [m for m in validator.members if not isinstance(m, NullValidator)]
        if len(others) == 1:
            return frame_decoder(others[0])
    return identity


def identity(value: Any) -> Any:
    """``value`` itself."""
    return value
