"""The physical layout of a table: its documents as typed Arrow columns, and back, exactly.

Responsibilities:

- derive a table's columns from its :class:`~zapnb.schema.TableDefinition` (:meth:`Layout.for_table`);
- turn documents into an Arrow table (:meth:`Layout.to_arrow`) and back (:meth:`Layout.to_documents`,
  :meth:`Layout.row_reader`), keeping every value's kind, missing fields apart from nulls, ``-0.0``, the sign
  of NaN, bytes and nested values;
- turn columns that :func:`zapnb.columns.validate_column` already checked into the same Arrow table
  (:meth:`Layout.from_polars`, :meth:`Layout.from_arrow`);
- tell when a new definition changes the physical layout (:meth:`Layout.equals`): the table is then rewritten.

The columns are ``_id`` (string) and ``_creationTime`` (float64), then one per top-level field, in declaration
order. Each value sits in a column that holds every value its validator admits (:mod:`zapnb.layoutcodec`):

- ``v.string()``, ``v.id("t")``, string literals and their unions: ``string``. An enum is plain text,
  so a deploy that adds a literal does not rewrite the table.
- ``v.number()``, ``v.int64()``, ``v.boolean()``, ``v.bytes()``, ``v.null()`` and other literals: ``float64``,
  ``int64``, ``bool``, ``binary``, ``null``. Floats keep their bits: ``-0.0`` and the sign of NaN.
- ``v.array(x)``: a ``list`` of the column of ``x``; ``v.object({...})``: a ``struct`` of its fields.
- ``v.nullable(x)``: the column of ``x``, where an Arrow null is the value ``None``.
- ``v.optional(x)``: the column of ``x``, where an Arrow null is a missing field.
- JSON text in zapnb's encoding (:mod:`zapnb.jsonvalues`; ``string`` with the field metadata
  ``zapnb.encoding: json``, an Arrow null being a missing field) for what no Arrow type holds exactly:
  ``v.any()``, ``v.record(...)``, ``v.object({})``, unions mixing kinds, and ``v.optional(x)`` where ``x``
  admits null (a missing field and null differ).

Columns use Arrow's 32-bit offset types (``string``, ``binary``, ``list``): Lance turns filters into
Substrait, which takes no ``large_list`` and no large types inside lists and structs, so DuckDB and Polars
could not filter the dataset otherwise. Arrow splits a column into chunks where it would pass 2 GiB.

In a union, the members other than ``v.null()`` share a column when they all map to the same one (which
table an ID names aside); otherwise the union is JSON, so ``v.union(v.int64(), v.number())`` keeps ``1`` and
``1.0`` apart. A union of objects as the table's validator gets one column per field found in any member: the
column of the union of that field's validators, optional when some member lacks the field or marks it
optional. So each field is typed when its members agree, and JSON when they do not.

IDs come back as :class:`zapnb.Id` labelled with their table where the column is ``v.id("t")`` (nullable, or
inside arrays and objects); under a union that mixes tables or plain strings they come back as ``str`` (the
same text). ``_id`` is labelled when the layout is given the table's name.

A table without a definition (schemaless, ``schema_validation=False``, ``define_table(v.any())``) has the
generic layout: ``_id``, ``_creationTime`` and ``_json``, the document's other fields as one JSON object.

Examples
--------
>>> from zapnb import define_table, v
>>> layout = Layout.for_table(define_table({"name": v.string(), "meta": v.optional(v.any())}))
>>> layout
Layout(_id: string, _creationTime: float64, name: string, meta: json?)
>>> docs = [{"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "_creationTime": 1.5, "name": "a", "meta": [1, 2.0]}]
>>> table = layout.to_arrow(docs)
>>> table.column("meta").to_pylist()
['[1,2.0]']
>>> layout.to_documents(table) == docs
True
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from zapnb.durable import release_pages
from zapnb.errors import InvalidValueError, ZapError
from zapnb.jsonvalues import decode_json, decode_stored_json, encode_json
from zapnb.layoutcodec import (
    JSON_CODEC,
    STRING_CODEC,
    Codec,
    Misfit,
    Slot,
    arrow_field,
    decoder,
    describe_slot,
    document_fields,
    encode_column,
    encoder,
    frame_decoder,
    identity,
    labeller,
    slot_of,
)
from zapnb.validator_base import Validator

if TYPE_CHECKING:
    import polars as pl

    from zapnb.schema import TableDefinition

__all__ = ["JSON_COLUMN", "LAYOUT_VERSION", "SYSTEM_COLUMNS", "Layout"]

SYSTEM_COLUMNS: Final = ("_id", "_creationTime")
JSON_COLUMN: Final = "_json"
"""The column of the generic layout that holds a document's fields (other than the system ones) as JSON."""

_SLICE_ROWS: Final = 1024  # rows of at most 1 MiB each: a slice stays under 2 GiB

LAYOUT_VERSION: Final = "1"
"""Written in the schema metadata (``zapnb.layout``): a change of encoding rules changes every layout."""


def _as_frame(table: pa.Table | pa.RecordBatch) -> pl.DataFrame:
    import polars as pl

    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _row_of(frame: pl.DataFrame) -> Callable[[int], tuple[Any, ...]]:
    """``frame.row``, or the Rust-side call under it when this Polars has it (1.4 µs instead of 2.3 for nine
    columns: ``DataFrame.row`` checks its other arguments first). Row ``i`` must be in range."""
    row_tuple = getattr(getattr(frame, "_df", None), "row_tuple", None)
    if row_tuple is None or not frame.height:
        return frame.row
    try:
        same = repr(row_tuple(0)) == repr(frame.row(0))
    except Exception:  # whatever this Polars lacks, the public path still works
        return frame.row
    return row_tuple if same else frame.row


# --- the layout ---------------------------------------------------------------------------------------------


class Layout:
    """A table's physical layout: which Arrow column holds each field, and how (see the module docstring).

    Build one with :meth:`for_table`. A layout is immutable and safe to share between threads.

    Attributes
    ----------
    slots:
        The columns after ``_id`` and ``_creationTime``, in order; ``None`` for the generic layout.
    table:
        The table's name when given to :meth:`for_table`: ``_id`` then reads back as a labelled ``Id``.
    arrow_schema:
        The schema of the Arrow tables this layout writes and reads.

    Examples
    --------
    >>> from zapnb import define_table, v
    >>> Layout.for_table(define_table({"tags": v.array(v.string()), "n": v.nullable(v.int64())}))
    Layout(_id: string, _creationTime: float64, tags: list<string>, n: int64 | null)
    >>> Layout.for_table(None).arrow_schema.names
    ['_id', '_creationTime', '_json']
    """

    __slots__ = ("_decode_row", "_sources", "arrow_schema", "slots", "table")

    def __init__(
        self,
        slots: tuple[Slot, ...] | None,
        sources: tuple[tuple[Validator, bool], ...] = (),
        table: str | None = None,
    ) -> None:
        self.slots = slots
        self.table = table
        self._sources = sources  # per slot: the field's validator (without v.optional) and whether optional
        fields = [pa.field("_id", pa.string()), pa.field("_creationTime", pa.float64())]
        columns = (Slot(JSON_COLUMN, JSON_CODEC),) if slots is None else slots
        fields.extend(arrow_field(slot.name, slot.codec) for slot in columns)
        self.arrow_schema = pa.schema(fields, metadata={b"zapnb.layout": LAYOUT_VERSION.encode()})
        self._decode_row = self._row_decoder()

    @classmethod
    def for_table(cls, definition: TableDefinition | None, *, table: str | None = None) -> Layout:
        """The layout of a table with this definition (``None``: no definition, the generic layout).

        Parameters
        ----------
        definition:
            The table's definition; ``None`` for a table not in the schema or when schema validation is
            off. A definition whose validator is not an object or a union of objects (``v.any()``) also
            gets the generic layout.
        table:
            The table's name, to label the ``Id`` objects that ``_id`` reads back as.

        Examples
        --------
        >>> from zapnb import define_table, v
        >>> a = v.object({"kind": v.literal("a"), "n": v.int64()})
        >>> b = v.object({"kind": v.literal("b"), "n": v.number()})
        >>> Layout.for_table(define_table(v.union(a, b)))
        Layout(_id: string, _creationTime: float64, kind: string, n: json)
        """
        fields = None if definition is None else document_fields(definition.document)
        if fields is None:
            return cls(None, table=table)
        slots = tuple(slot_of(name, validator, True, optional) for name, validator, optional in fields)
        return cls(slots, tuple((validator, optional) for _, validator, optional in fields), table)

    @property
    def is_generic(self) -> bool:
        """Whether this is the generic layout (``_id``, ``_creationTime``, ``_json``)."""
        return self.slots is None

    def equals(self, other: Layout) -> bool:
        """Whether both layouts store documents in the same columns, so a table needs no rewrite.

        Only the physical columns count: making a field optional, or adding a literal to an enum, changes
        nothing; turning a typed field into a JSON one does.

        Examples
        --------
        >>> from zapnb import define_table, v
        >>> old = Layout.for_table(define_table({"s": v.union(v.literal("a"), v.literal("b"))}))
        >>> old.equals(Layout.for_table(define_table({"s": v.optional(v.string())})))
        True
        >>> old.equals(Layout.for_table(define_table({"s": v.union(v.string(), v.int64())})))
        False
        """
        return bool(self.arrow_schema.equals(other.arrow_schema, check_metadata=True))

    def __repr__(self) -> str:
        slots = (Slot(JSON_COLUMN, JSON_CODEC),) if self.slots is None else self.slots
        inside = ", ".join(["_id: string", "_creationTime: float64", *(describe_slot(s) for s in slots)])
        return f"Layout({inside})"

    # --- documents to Arrow ---

    def to_arrow(self, docs: Sequence[Mapping[str, Any]]) -> pa.Table:
        """The Arrow table of ``docs`` (each with ``_id`` and ``_creationTime``), one row each, in order.

        Documents must be as the table's validator returns them (``v.number()`` fields hold floats...).

        Raises
        ------
        InvalidValueError
            A document with a value its column cannot hold, a field the layout does not have, or a required
            field missing; its ``path`` names the field.

        Examples
        --------
        >>> from zapnb import define_table, v
        >>> layout = Layout.for_table(define_table({"n": v.optional(v.int64())}))
        >>> layout.to_arrow([]).schema.field("n").type
        DataType(int64)
        >>> layout.to_arrow([{"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "_creationTime": 1.0, "n": 1.5}])
        Traceback (most recent call last):
        ...
        zapnb.errors.InvalidValueError: Document 'jx73xh1f86gz7s9zgchp6wzbed7ec7aj' does not fit its ...
        """
        schema = self.arrow_schema
        if self.slots is not None:
            _check_fields(docs, frozenset(schema.names))
        arrays = [
            encode_column(Slot("_id", STRING_CODEC), docs, schema.field(0).type),
            encode_column(Slot("_creationTime", Codec("float64")), docs, schema.field(1).type),
        ]
        if self.slots is None:
            arrays.append(pa.array([_fields_json(doc) for doc in docs], pa.string()))
        else:
            arrays.extend(
                encode_column(slot, docs, schema.field(i).type) for i, slot in enumerate(self.slots, start=2)
            )
        return pa.Table.from_arrays(arrays, schema=schema)

    def from_polars(self, frame: pl.DataFrame) -> pa.Table:
        """The Arrow table of a frame whose columns :func:`zapnb.columns.validate_column` returned.

        See :meth:`from_arrow`.
        """
        return self.from_arrow(frame.to_arrow())

    def from_arrow(self, table: pa.Table) -> pa.Table:
        """The Arrow table, in this layout, of columns as :func:`zapnb.columns.validate_column` returns them.

        ``table`` has ``_id`` (strings) and ``_creationTime`` (floats) and a column per field it sets, each
        checked and normalized by ``validate_column`` with the field's validator: typed, or zapnb JSON text
        where the validator stores JSON, a null being a missing field for ``v.optional(...)`` fields. A
        field without a column is missing from every document. For a table with the generic layout every
        other column is JSON text (``validate_column(v.optional(v.any()), ...)``).

        Raises
        ------
        InvalidValueError
            A column the layout does not have, a required column absent, a null where a required value
            belongs, or a cell that is not what ``validate_column`` makes.

        Examples
        --------
        >>> import polars as pl
        >>> from zapnb import define_table, v
        >>> layout = Layout.for_table(define_table({"kind": v.union(v.literal("a"), v.literal("b"))}))
        >>> kind = v.union(v.literal("a"), v.literal("b")).validate_column(pl.Series("kind", ["b"]))
        >>> frame = pl.DataFrame({"_id": ["jx73xh1f86gz7s9zgchp6wzbed7ec7aj"], "_creationTime": [1.0]})
        >>> layout.to_documents(layout.from_polars(frame.with_columns(kind)))[0]["kind"]
        'b'
        """
        present = set(table.column_names)
        for name in SYSTEM_COLUMNS:
            if name not in present or table.column(name).null_count:
                raise InvalidValueError(
                    f"Every row needs {name}: add a {name} column without nulls.", path=f".{name}"
                )
        schema = self.arrow_schema
        arrays = [_cast(table.column(name), schema.field(name).type) for name in SYSTEM_COLUMNS]
        if self.slots is None:
            arrays.append(_json_from_columns(table))
            return pa.Table.from_arrays(arrays, schema=schema)
        extra = present - set(schema.names) - set(SYSTEM_COLUMNS)
        if extra:
            raise InvalidValueError(
                f"The table has no field {sorted(extra)[0]!r}: add it to the table's definition, or drop the "
                "column.",
                path=f".{sorted(extra)[0]}",
            )
        for i, (slot, source) in enumerate(zip(self.slots, self._sources, strict=True), start=2):
            column = table.column(slot.name) if slot.name in present else None
            arrays.append(_column_from_frame(slot, source, column, table.num_rows, schema.field(i).type))
        return pa.Table.from_arrays(arrays, schema=schema)

    # --- Arrow to documents ---

    def to_documents(self, table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
        """The documents of ``table`` (in this layout), in row order, with their exact values.

        Examples
        --------
        >>> import math
        >>> from zapnb import define_table, v
        >>> layout = Layout.for_table(define_table({"x": v.number(), "o": v.optional(v.bytes())}))
        >>> doc = {"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "_creationTime": 1.0, "x": -0.0}
        >>> [back] = layout.to_documents(layout.to_arrow([doc]))
        >>> back, math.copysign(1.0, back["x"])
        ({'_id': 'jx73xh1f86gz7s9zgchp6wzbed7ec7aj', '_creationTime': 1.0, 'x': -0.0}, -1.0)
        """
        self._check_schema(table.schema)
        decode = self._decode_row
        return [decode(row) for row in _as_frame(table).iter_rows()]

    def row_reader(self, table: pa.Table | pa.RecordBatch) -> Callable[[int], dict[str, Any]]:
        """A function that reads row ``i`` of ``table`` (in this layout) as a document, in microseconds.

        The table is converted to a Polars frame on the first call (about 0.1 s for 1M messages), not
        before, so mapping a table and making its reader costs nothing. A row then takes about 4 µs (a 1M-row
        messages table; Polars' own ``row(i, named=True)`` takes 5.7 µs there).

        Examples
        --------
        >>> from zapnb import define_table, v
        >>> layout = Layout.for_table(define_table({"p": v.id("projects")}), table="tasks")
        >>> doc = {"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "_creationTime": 1.0}
        >>> doc["p"] = "j5700000000000000000000000001qv0"
        >>> read = layout.row_reader(layout.to_arrow([doc]))
        >>> read(0)["p"], read(0)["_id"].table
        (Id('projects', 'j5700000000000000000000000001qv0'), 'tasks')
        """
        self._check_schema(table.schema)
        decode = self._decode_row
        lock = threading.Lock()
        row: Callable[[int], tuple[Any, ...]] | None = None

        def read_row(i: int) -> dict[str, Any]:
            nonlocal row
            if row is None:
                with lock:
                    if row is None:
                        row = _row_of(_as_frame(table))
                        release_pages()  # converting read the whole mapped table; rows map again on use
            return decode(row(i))

        return read_row

    def _check_schema(self, schema: pa.Schema) -> None:
        if not schema.equals(self.arrow_schema):
            raise InvalidValueError(
                f"The Arrow table's columns ({schema.names}) are not this layout's "
                f"({self.arrow_schema.names}): read it with the layout it was written with, or rewrite it.",
                value=str(schema),
            )

    def _row_decoder(self) -> Callable[[Sequence[Any]], dict[str, Any]]:
        label = labeller(self.table) if self.table is not None else identity
        if self.slots is None:

            def decode_generic(row: Sequence[Any]) -> dict[str, Any]:
                doc = {"_id": label(row[0]), "_creationTime": row[1]}
                doc.update(decode_stored_json(row[2]))
                return doc

            return decode_generic
        plan = [(s.name, i, decoder(s.codec), s.null_is_missing) for i, s in enumerate(self.slots, start=2)]

        def decode(row: Sequence[Any]) -> dict[str, Any]:
            doc = {"_id": label(row[0]), "_creationTime": row[1]}
            for name, i, decode_field, null_is_missing in plan:
                cell = row[i]
                if cell is None:
                    if not null_is_missing:
                        doc[name] = None
                else:
                    doc[name] = cell if decode_field is None else decode_field(cell)
            return doc

        return decode


def _check_fields(docs: Sequence[Mapping[str, Any]], known: frozenset[str]) -> None:
    for doc in docs:
        if not known.issuperset(doc):
            extra = next(name for name in doc if name not in known)
            raise InvalidValueError(
                f"Document {doc.get('_id')!r} has the field {extra!r}, which its table's definition does not "
                "have: validate documents with the table's definition before storing them.",
                path=f".{extra}",
                value=doc[extra],
            )


def _fields_json(doc: Mapping[str, Any]) -> str:
    return encode_json({name: value for name, value in doc.items() if name not in SYSTEM_COLUMNS})


def _cast_if_same_form(
    slot: Slot, validator: Validator, optional: bool, column: pa.ChunkedArray, arrow_type: pa.DataType
) -> pa.ChunkedArray | pa.Array | None:
    """The column cast to the slot's type when the typed frame holds it in the same form, else ``None``.

    ``None`` also when the cast fails (for example a union of objects that typed frames hold as a struct):
    the caller then converts it cell by cell.
    """
    if slot_of(slot.name, validator, False, optional) != slot:
        return None
    try:
        return _cast(column, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _column_from_frame(
    slot: Slot,
    source: tuple[Validator, bool],
    column: pa.ChunkedArray | None,
    rows: int,
    arrow_type: pa.DataType,
) -> pa.ChunkedArray | pa.Array:
    """A column of ``validate_column``'s output in ``slot``'s form: a cast when they agree, else by cells."""
    validator, optional = source
    if column is None or (column.null_count and not slot.optional and not slot.codec.holds_none):
        if column is None and slot.optional:
            return pa.nulls(rows, arrow_type)
        raise InvalidValueError(
            f"The field {slot.name!r} is required: give every row a value in a column {slot.name!r}.",
            path=f".{slot.name}",
        )
    cast = _cast_if_same_form(slot, validator, optional, column, arrow_type)
    if cast is not None:
        if slot.codec.kind == "json":
            _check_json(cast, slot.name)
        return cast
    decode, encode, cells = frame_decoder(validator), encoder(slot.codec), list[Any]()
    for row, cell in enumerate(column.to_pylist()):
        try:
            if cell is None and optional:
                cells.append(None)
            else:
                value = None if cell is None else validator.validate(decode(cell))
                cells.append(encode(value))
        except (Misfit, ZapError) as err:
            raise InvalidValueError(
                f"Row {row} of column {slot.name!r} holds {cell!r}, which is not what validate_column makes "
                f"for {validator}: check the column with {validator}.validate_column(...) first.",
                path=f"[{row}].{slot.name}",
                value=cell,
            ) from err
    return pa.array(cells, arrow_type)


def _cast(column: pa.ChunkedArray, arrow_type: pa.DataType) -> pa.ChunkedArray:
    """``column`` as ``arrow_type``, in slices where a chunk is too big for 32-bit offsets (from Polars)."""
    try:
        return column.cast(arrow_type)
    except pa.ArrowInvalid:
        pieces = [
            chunk.slice(start, _SLICE_ROWS).cast(arrow_type)
            for chunk in column.chunks
            for start in range(0, len(chunk), _SLICE_ROWS)
        ]
        return pa.chunked_array(pieces, arrow_type)


def _check_json(column: pa.ChunkedArray, name: str) -> None:
    """Refuse a JSON column with a cell that is not zapnb JSON (it would fail every later read)."""
    for row, text in enumerate(column.to_pylist()):
        try:
            if text is not None:
                decode_json(text)
        except ZapError as err:
            raise InvalidValueError(
                f"Row {row} of column {name!r} holds {text!r}, which is not what validate_column makes: "
                "it is not zapnb JSON. Check the column with validate_column(...) first.",
                path=f"[{row}].{name}",
                value=text,
            ) from err


def _json_from_columns(table: pa.Table) -> pa.Array:
    """The ``_json`` column of the generic layout, from a JSON-text column per field (null: missing)."""
    names = [name for name in table.column_names if name not in SYSTEM_COLUMNS]
    for name in names:
        kind = table.schema.field(name).type
        is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
        if name[:1] in ("_", "$") or not is_text:
            raise InvalidValueError(
                f"The column {name!r} cannot be a field of a table without a definition: fields are not "
                "named with a leading _ or $, and hold zapnb JSON text (from validate_column(v.any(), ...)).",
                path=f".{name}",
            )
    columns = [table.column(name).to_pylist() for name in names]
    rows = zip(*columns, strict=True) if columns else itertools.repeat((), table.num_rows)
    texts: list[str] = []
    for row in rows:
        try:
            fields = {
                name: decode_json(text) for name, text in zip(names, row, strict=True) if text is not None
            }
        except ZapError as err:
            raise InvalidValueError(
                f"Row {len(texts)} holds a cell that is not zapnb JSON text ({err}): check the columns with "
                "validate_column(v.any(), ...) first.",
                path=f"[{len(texts)}]",
            ) from err
        texts.append(encode_json(fields))
    return pa.array(texts, pa.string())
