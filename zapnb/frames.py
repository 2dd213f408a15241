"""Query results as Polars frames: typed by the table's validators, or inferred for tables without a schema.

Responsibilities:

- :func:`frame_shape`: how a table's documents become columns. A table whose definition is an object (or a
  union of objects) under an active ``schema_validation=True`` schema gets *typed* frames: ``_id`` (String),
  ``_creationTime`` (Float64), then one column per field with the dtype of
  :meth:`~zapnb.schema.TableDefinition.polars_schema` (values no Arrow type holds are zapnb JSON text, as
  :meth:`~zapnb.validators.Validator.validate_column` makes them); the full schema even when empty;
- :func:`build_frame`: the frame of some rows of a table, in order. Rows still in the table's checkpoint base
  are gathered by position from a Polars copy of the base (made once per base and cached); only documents
  written since, or in the reading transaction, go through Python dicts;
- :func:`inferred_frame`: the frame of documents of a table without a schema (see below).

Inferred frames (no schema, ``schema_validation=False``, ``define_table(v.any())``): ``_id``,
``_creationTime``, then a column per field in the order fields are first seen in the result. A column whose
present values are all of one kind is typed: int64 -> Int64, float64 -> Float64, boolean -> Boolean, string
(and IDs) -> String, bytes -> Binary, arrays whose elements (across rows) are all of one such kind ->
List of it, recursively; a column of nulls only is Null. Any other column (objects, mixed kinds, ``1``
beside ``1.0``) is String holding each value's zapnb JSON (``"null"`` for null). In typed and inferred
columns alike a missing field is a null cell; ``first()``, ``unique()``, ``db.get`` and iteration give the
exact documents.

Examples
--------
>>> frame = inferred_frame([
...     {"_id": "a", "_creationTime": 1.0, "n": 1, "tags": ["x"]},
...     {"_id": "b", "_creationTime": 2.0, "n": 2.5},
... ])
>>> frame.schema
Schema([('_id', String), ('_creationTime', Float64), ('n', String), ('tags', List(String))])
>>> frame["n"].to_list()
['1', '2.5']
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from zapnb.durable import release_pages
from zapnb.errors import InvalidValueError
from zapnb.gather import Gatherer, Positions
from zapnb.jsonvalues import encode_json
from zapnb.layout import Layout
from zapnb.layoutcodec import decoder, document_fields
from zapnb.validators import (
    ArrayValidator,
    IdValidator,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    UnionValidator,
    Validator,
)
from zapnb.values import MISSING, Kind, kind_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import polars as pl
    import pyarrow as pa

    from zapnb.scan import RowArrays
    from zapnb.schema import Schema, TableDefinition
    from zapnb.tablestate import TableState

__all__ = [
    "WHOLE_BASE_FILTER",
    "FrameShape",
    "build_frame",
    "frame_shape",
    "inferred_frame",
    "range_count",
    "range_frame",
]

Document = Mapping[str, Any]
Write = Callable[[Any], Any]
Item = tuple[int, Document | None]
"""A row to show: ``(position, None)`` for a row of the table base, ``(-1, document)`` otherwise."""

SYSTEM: Final = ("_id", "_creationTime")


# --- shapes ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameShape:
    """How a table's rows become a frame: typed (``definition`` set) or inferred from the data."""

    table: str
    definition: TableDefinition | None
    schema: Mapping[str, pl.DataType]
    writers: tuple[tuple[str, Write], ...]

    @property
    def typed(self) -> bool:
        """Whether the columns come from the table's validators."""
        return self.definition is not None


_SHAPES: dict[int, tuple[weakref.ref[Schema], dict[str, FrameShape]]] = {}


def frame_shape(table: str, schema: Schema | None) -> FrameShape:
    """The shape of ``table``'s frames under ``schema`` (see the module docstring); cached per schema object
    (by identity: hashing a schema walks all of it)."""
    if schema is None:
        return _make_shape(table, schema)
    key = id(schema)
    entry = _SHAPES.get(key)
    if entry is None or entry[0]() is not schema:
        entry = (weakref.ref(schema, lambda _: _SHAPES.pop(key, None)), {})
        _SHAPES[key] = entry
    shapes = entry[1]
    shape = shapes.get(table)
    if shape is None:
        shape = shapes[table] = _make_shape(table, schema)
    return shape


def _make_shape(table: str, schema: Schema | None) -> FrameShape:
    definition = None if schema is None or not schema.schema_validation else schema.tables.get(table)
    if definition is None or document_fields(definition.document) is None:
        import polars as pl

        return FrameShape(table, None, {"_id": pl.String(), "_creationTime": pl.Float64()}, ())
    columns = definition.column_validators()
    writers = tuple((name, _writer(validator)) for name, validator in columns.items())
    return FrameShape(table, definition, definition.polars_schema(), writers)


def _identity(value: Any) -> Any:
    return value


def _plain_str(value: Any) -> Any:
    return str.__str__(value)


def _writer(validator: Validator) -> Write:
    """How a stored value (``None`` included, never MISSING) sits in its typed column: JSON text, a plain
    ``str`` for an ID, a dict for a struct..."""
    if validator.stores_json():
        return encode_json
    write = _typed_writer(validator)
    if write is _identity:
        return write
    return lambda value: None if value is None else write(value)


def _typed_writer(validator: Validator) -> Write:
    if isinstance(validator, OptionalValidator):
        return _typed_writer(validator.inner)
    if isinstance(validator, IdValidator):
        return _plain_str
    if isinstance(validator, ArrayValidator):
        item = _writer(validator.element)
        return lambda value: [item(x) for x in value]
    if isinstance(validator, ObjectValidator):
        fields = [(name, _writer(f)) for name, f in validator.fields]
        return lambda value: {
            name: None if (x := value.get(name, MISSING)) is MISSING else write(x) for name, write in fields
        }
    if isinstance(validator, UnionValidator):
        others = [m for m in validator.members if not isinstance(m, NullValidator)]
        if len(others) == 1:
            return _typed_writer(others[0])
    return _identity


# --- frames from documents ----------------------------------------------------------------------------------


def _documents_frame(shape: FrameShape, docs: Sequence[Document]) -> pl.DataFrame:
    import polars as pl

    columns = [
        pl.Series("_id", [str.__str__(d["_id"]) for d in docs], dtype=pl.String()),
        pl.Series("_creationTime", [d["_creationTime"] for d in docs], dtype=pl.Float64()),
    ]
    for name, write in shape.writers:
        cells = [None if (x := d.get(name, MISSING)) is MISSING else write(x) for d in docs]
        try:
            columns.append(pl.Series(name, cells, dtype=shape.schema[name]))
        except (TypeError, ValueError, pl.exceptions.PolarsError) as err:
            raise InvalidValueError(
                f"A document of table {shape.table!r} does not fit the column {name!r} "
                f"({shape.schema[name]}) of its schema ({err}). Deploy a schema that matches the table.",
                path=f".{name}",
            ) from err
    return pl.DataFrame(columns)


# --- inferred frames ----------------------------------------------------------------------------------------

_JSON: Final = "json"
_TYPED_KINDS: Final = (Kind.INT64, Kind.FLOAT64, Kind.BOOLEAN, Kind.STRING, Kind.BYTES)


def _signature(value: Any) -> Any:
    """``None`` (null: fits anything), a scalar :class:`Kind`, ``("list", element)`` or ``"json"``."""
    kind = kind_of(value)
    if kind is Kind.NULL:
        return None
    if kind in _TYPED_KINDS:
        return kind
    if kind is Kind.ARRAY:
        element = None
        for item in value:
            element = _unify(element, _signature(item))
            if element == _JSON:
                return _JSON
        return ("list", element)
    return _JSON


def _unify(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, tuple) and isinstance(b, tuple):
        inner = _unify(a[1], b[1])
        return _JSON if inner == _JSON else ("list", inner)
    return _JSON


def _dtype(signature: Any) -> pl.DataType:
    import polars as pl

    if signature is None:
        return pl.Null()
    if isinstance(signature, tuple):
        return pl.List(_dtype(signature[1]))
    simple: dict[Kind, pl.DataType] = {
        Kind.INT64: pl.Int64(),
        Kind.FLOAT64: pl.Float64(),
        Kind.BOOLEAN: pl.Boolean(),
        Kind.STRING: pl.String(),
        Kind.BYTES: pl.Binary(),
    }
    return simple[signature]


def _plain(value: Any) -> Any:
    """A value with ``str`` subclasses (``zapnb.Id``) as plain ``str``, for Polars."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list | tuple):
        return [_plain(x) for x in value]
    return value


def inferred_frame(docs: Sequence[Document]) -> pl.DataFrame:
    """The frame of documents of a table without a schema (the rule is in the module docstring)."""
    import polars as pl

    names = list(dict.fromkeys(name for doc in docs for name in doc if name not in SYSTEM))
    columns = [
        pl.Series("_id", [str.__str__(d["_id"]) for d in docs], dtype=pl.String()),
        pl.Series("_creationTime", [d["_creationTime"] for d in docs], dtype=pl.Float64()),
    ]
    for name in names:
        values = [doc.get(name, MISSING) for doc in docs]
        signature = None
        for value in values:
            if value is not MISSING:
                signature = _unify(signature, _signature(value))
        if signature == _JSON:
            cells = [None if x is MISSING else encode_json(x) for x in values]
            columns.append(pl.Series(name, cells, dtype=pl.String()))
        else:
            cells = [None if x is MISSING else _plain(x) for x in values]
            columns.append(pl.Series(name, cells, dtype=_dtype(signature), strict=False))
    return pl.DataFrame(columns)


# --- the base as a typed frame ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BaseFrame:
    """A table base as a Polars frame: typed columns cast once; ``later`` columns converted per gather."""

    rows: Gatherer
    later: tuple[tuple[str, Write, pl.DataType], ...]

    @property
    def frame(self) -> pl.DataFrame:
        """The whole base, typed (``later`` columns still as stored)."""
        return self.rows.frame

    def gather(self, positions: Positions) -> pl.DataFrame:
        import polars as pl

        rows = self.rows.gather(positions)
        if self.later:
            rows = rows.with_columns(
                pl.Series(name, [convert(cell) for cell in rows.get_column(name).to_list()], dtype=dtype)
                for name, convert, dtype in self.later
            )
        return rows


_LOCK: Final = threading.Lock()
_BASES: dict[int, tuple[weakref.ref[pa.Table], TableDefinition, _BaseFrame | None]] = {}


def _base_frame(shape: FrameShape, base: pa.Table) -> _BaseFrame | None:
    """The cached typed frame of ``base`` (``None`` if the base is not in this schema's layout)."""
    assert shape.definition is not None
    key = id(base)
    entry = _BASES.get(key)
    if entry is not None and entry[0]() is base and entry[1] is shape.definition:
        return entry[2]
    with _LOCK:
        entry = _BASES.get(key)
        if entry is not None and entry[0]() is base and entry[1] is shape.definition:
            return entry[2]
        made = _make_base_frame(shape, base)
        _BASES[key] = (weakref.ref(base, lambda _: _BASES.pop(key, None)), shape.definition, made)
        return made


def _make_base_frame(shape: FrameShape, base: pa.Table) -> _BaseFrame | None:
    import polars as pl

    assert shape.definition is not None
    layout = Layout.for_table(shape.definition, table=shape.table)
    if layout.slots is None or not base.schema.equals(layout.arrow_schema, check_metadata=True):
        return None  # written under an older layout (a deploy since): rows are read as documents
    raw = pl.from_arrow(base, rechunk=False)
    assert isinstance(raw, pl.DataFrame)
    casts: dict[str, pl.DataType] = {}
    later: list[tuple[str, Write, pl.DataType]] = []
    validators = shape.definition.column_validators()
    for slot in layout.slots:
        target, validator = shape.schema[slot.name], validators[slot.name]
        if _same_cells(base.schema.field(slot.name), validator) and _castable(raw.schema[slot.name], target):
            if raw.schema[slot.name] != target:
                casts[slot.name] = target
        else:
            later.append((slot.name, _cell_converter(slot.codec, slot.null_is_missing, validator), target))
    frame = raw.cast(casts) if casts else raw  # type: ignore[arg-type]
    # one chunk per column: gathering a few rows from chunked columns costs about twice as much
    made = _BaseFrame(Gatherer(frame.select(list(shape.schema)).rechunk()), tuple(later))
    release_pages()  # converting read the whole mapped base; what the frame needs of it maps again on use
    return made


def _cell_converter(codec: Any, null_is_missing: bool, validator: Validator) -> Write:
    """How a stored cell of a column in ``codec`` becomes the typed column's cell."""
    read = decoder(codec) or _identity
    write = _writer(validator)

    def convert(cell: Any) -> Any:
        if cell is None:
            return None if null_is_missing else write(None)
        return write(read(cell))

    return convert


def _is_json(field: pa.Field) -> bool:
    metadata = field.metadata or {}
    return metadata.get(b"zapnb.encoding") == b"json"


def _same_cells(field: pa.Field, validator: Validator) -> bool:
    """Whether the stored column's cells are already the typed column's (up to a dtype cast)."""
    import pyarrow as pa

    if isinstance(validator, OptionalValidator):
        validator = validator.inner
    if validator.stores_json() or _is_json(field):
        return validator.stores_json() and _is_json(field)
    if isinstance(validator, UnionValidator):
        others = [m for m in validator.members if not isinstance(m, NullValidator)]
        return _same_cells(field, others[0]) if len(others) == 1 else True
    if isinstance(validator, ArrayValidator):
        return pa.types.is_list(field.type) and _same_cells(field.type.value_field, validator.element)
    if isinstance(validator, ObjectValidator):
        kind = field.type
        if not pa.types.is_struct(kind) or [kind.field(i).name for i in range(kind.num_fields)] != [
            name for name, _ in validator.fields
        ]:
            return False
        return all(_same_cells(kind.field(name), f) for name, f in validator.fields)
    return True


def _castable(source: Any, target: Any) -> bool:
    """Whether casting ``source`` to ``target`` keeps every value (or only tightens strings to an enum)."""
    import polars as pl

    if source == target or isinstance(source, pl.Null):
        return True
    if isinstance(target, pl.Enum):
        return isinstance(source, pl.String)
    if isinstance(source, pl.List) and isinstance(target, pl.List):
        return _castable(source.inner, target.inner)
    if isinstance(source, pl.Struct) and isinstance(target, pl.Struct):
        pairs = list(zip(source.fields, target.fields, strict=False))
        return len(source.fields) == len(target.fields) and all(
            a.name == b.name and _castable(a.dtype, b.dtype) for a, b in pairs
        )
    return False


# --- frames of rows -----------------------------------------------------------------------------------------


def build_frame(shape: FrameShape, state: TableState | None, items: Sequence[Item]) -> pl.DataFrame:
    """The frame of ``items`` (rows of ``state``'s table) in order, with the shape's columns.

    A base row is ``(position, None)`` (or ``(position, document)`` when the document was already read);
    any other row is ``(-1, document)``.
    """
    base = None if state is None or not shape.typed else state.base
    fast = None if base is None else _base_frame(shape, base)
    if fast is None:
        docs = [doc if doc is not None else _read(state, position) for position, doc in items]
        return _documents_frame(shape, docs) if shape.typed else inferred_frame(docs)
    positions = [position for position, _ in items]
    if all(position >= 0 for position in positions):
        return fast.gather(positions)
    import numpy as np

    docs = [doc for position, doc in items if position < 0 and doc is not None]
    return _interleaved(shape, fast, np.array(positions, np.int64), docs)


def _read(state: TableState | None, position: int) -> Document:
    assert state is not None
    return state.read_row(position)


# --- frames of whole ranges ---------------------------------------------------------------------------------

WHOLE_BASE_FILTER: Final = 8
"""A filter runs over the whole typed base (then picks the range's rows) when the range holds at least
1/8 of the base's rows; a shorter range is gathered first and filtered after."""


def range_frame(
    shape: FrameShape, state: TableState | None, ranged: RowArrays, vector: pl.Expr | None = None
) -> pl.DataFrame | None:
    """The frame of a range read whole (:func:`~zapnb.scan.row_arrays`), in order, keeping the rows for which
    ``vector`` (an exact filter expression) is true; ``None`` when the table's base cannot be gathered (a
    table without a schema, or a base written under an older layout): read such rows one by one."""
    kept = _kept(shape, state, ranged, vector)
    if kept is None:
        return None
    frame, filtered = kept
    return frame if filtered or vector is None else frame.filter(vector)


def range_count(
    shape: FrameShape, state: TableState | None, ranged: RowArrays, vector: pl.Expr
) -> int | None:
    """How many rows of a range read whole ``vector`` keeps, or ``None`` as for :func:`range_frame`."""
    import numpy as np

    fast = _gatherable(shape, state)
    if fast is None:
        return None
    mask = _whole_base_mask(shape, fast, ranged, vector)
    if mask is None:
        frame = range_frame(shape, state, ranged, vector)
        return None if frame is None else frame.height
    return int(np.count_nonzero(mask))


def _gatherable(shape: FrameShape, state: TableState | None) -> _BaseFrame | None:
    base = None if state is None or not shape.typed else state.base
    return None if base is None else _base_frame(shape, base)


def _kept(
    shape: FrameShape, state: TableState | None, ranged: RowArrays, vector: pl.Expr | None
) -> tuple[pl.DataFrame, bool] | None:
    """The frame of the range's rows, filtered by ``vector`` where that could be done on the whole base
    (then ``True``), or all of them (``False``)."""
    import numpy as np

    fast = _gatherable(shape, state)
    if fast is None:
        if bool((ranged.rows >= 0).any()):
            return None
        docs = [ranged.docs[k] for k in range(len(ranged.rows))]
        return (_documents_frame(shape, docs) if shape.typed else inferred_frame(docs)), False
    mask = None if vector is None else _whole_base_mask(shape, fast, ranged, vector)
    picked = np.arange(len(ranged.rows)) if mask is None else np.flatnonzero(mask)
    return _assembled(shape, fast, ranged, picked), mask is not None


def _whole_base_mask(
    shape: FrameShape, fast: _BaseFrame, ranged: RowArrays, vector: pl.Expr
) -> npt.NDArray[np.bool_] | None:
    """Which rows of the range ``vector`` keeps, evaluated on the whole base (``None`` when that is not worth
    it, or not exact because some columns are converted per gather)."""
    import numpy as np

    rows = ranged.rows
    if fast.later or len(rows) * WHOLE_BASE_FILTER < fast.frame.height:
        return None
    on_base = _mask(fast.frame, vector)
    from_base = rows >= 0
    mask = np.zeros(len(rows), bool)
    mask[from_base] = on_base[rows[from_base]]
    if ranged.docs:
        where = sorted(ranged.docs)
        docs = _documents_frame(shape, [ranged.docs[k] for k in where])
        hits = _mask(docs, vector)
        mask[np.asarray(where, np.int64)[hits]] = True
    return mask


def _mask(frame: pl.DataFrame, vector: pl.Expr) -> npt.NDArray[np.bool_]:
    """Where ``vector`` is true in ``frame`` (a literal is broadcast to every row)."""
    import numpy as np

    mask: npt.NDArray[np.bool_] = frame.select(vector.fill_null(False)).to_series().to_numpy()
    if len(mask) != frame.height:
        return np.full(frame.height, bool(mask[0]) if len(mask) else False)
    return mask


def _assembled(
    shape: FrameShape, fast: _BaseFrame, ranged: RowArrays, picked: npt.NDArray[np.intp]
) -> pl.DataFrame:
    """The frame of the range's rows ``picked`` (ascending), in order: base rows gathered, documents built."""
    rows = ranged.rows[picked]
    return _interleaved(shape, fast, rows, [ranged.docs[k] for k in picked[rows < 0].tolist()])


def _interleaved(
    shape: FrameShape, fast: _BaseFrame, rows: npt.NDArray[np.int64], docs: Sequence[Document]
) -> pl.DataFrame:
    """Rows in order: ``rows[k] >= 0`` gathered from the base, each ``-1`` the next of ``docs`` (built)."""
    import numpy as np
    import polars as pl

    from_docs = rows < 0
    if not bool(from_docs.any()):
        return fast.gather(rows)
    combined = pl.concat([fast.gather(rows[~from_docs]), _documents_frame(shape, docs)], how="vertical")
    order = np.empty(len(rows), np.int64)
    order[~from_docs] = np.arange(len(rows) - len(docs))
    order[from_docs] = np.arange(len(rows) - len(docs), len(rows))
    return combined.gather(pl.Series(order, dtype=pl.UInt32))
