"""Bulk inserts: rows given as a Polars frame, an Arrow table or dicts, checked and laid out as one batch.

Responsibilities:

- tell a frame from an iterable of dicts (:func:`frame_of`), and turn a frame into the dicts the row path
  checks (:func:`frame_rows`: a null in an optional field's column is a missing field);
- check a frame column by column (:func:`check_frame`) when its table is *flat* (an object whose fields all
  sit in scalar columns: strings, IDs, enums, numbers, booleans, bytes, null, each maybe nullable or
  optional), with :func:`zapnb.columns.check_column` and two document rules computed per row (integers
  within int64, the document size); for the first bad row it runs the row check on that row's dict, so the
  error is the one a list of dicts raises;
- name the row in an error of the row check (:func:`in_row`: ``Invalid value at [3].name``);
- make the Arrow batch of the checked rows in the table's layout, with their IDs and creation times
  (:func:`batch_from_frame`, :func:`batch_from_documents`);
- hold a transaction's batches until it commits (:class:`PendingBulk`): read a row back by ID, take out a
  row the transaction rewrites or deletes;
- gather a commit's batches into one part per table (:func:`bulk_parts`) and build each index's keys of its
  rows, sorted, before the commit takes the log's lock (:func:`build_keys`, :func:`keys_meanwhile`): a part's
  once its side file is written, when the part and its batches switch to the rows mapped from that file and
  let go of those in memory (so a large batch and all its keys are never in memory together).

A frame of a table that is not flat (nested values, JSON columns, a union of objects, no definition) is
checked by the row path instead: its rows become dicts first. Either way the rows end as one Arrow batch,
which the commit stores in a side file (:mod:`zapnb.sidefiles`) and applies to the table as a columnar batch
(:meth:`zapnb.tablestate.TableState.apply_bulk`). See ``docs/design-storage.md``, "Bulk inserts".

Examples
--------
>>> import polars as pl
>>> from zapnb import define_table, v
>>> table = define_table({"name": v.string(), "n": v.optional(v.number())})
>>> frame = pl.DataFrame({"name": ["a", "b"], "n": [1, None]})
>>> check_frame(frame, table, "things", {}, lambda doc, row: None).to_dicts()
[{'name': 'a', 'n': 1.0}, {'name': 'b', 'n': None}]
>>> frame_rows(frame, table)
[{'name': 'a', 'n': 1}, {'name': 'b'}]
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NoReturn

from zapnb import sidefiles
from zapnb.changes import Write
from zapnb.columnkeys import KeyColumns, key_columns, sorted_table_keys
from zapnb.columns import check_column
from zapnb.documents import MAX_DOCUMENT_SIZE, MAX_OBJECT_FIELDS
from zapnb.errors import InvalidValueError
from zapnb.ids import Id
from zapnb.layoutcodec import slot_of
from zapnb.validator_kinds import ObjectValidator, OptionalValidator

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import polars as pl
    import pyarrow as pa

    from zapnb.index import IndexSpec
    from zapnb.layout import Layout
    from zapnb.schema import TableDefinition
    from zapnb.tablestate import SortedRows

__all__ = [
    "BulkPart",
    "BulkRows",
    "CheckRow",
    "PendingBulk",
    "batch_from_documents",
    "batch_from_frame",
    "build_keys",
    "bulk_parts",
    "check_frame",
    "frame_of",
    "frame_rows",
    "in_row",
    "keys_meanwhile",
    "paused_gc",
]

CheckRow = Callable[[dict[str, Any], int], object]
"""The row check of one row (its dict and its number): raises the error a list of dicts would raise."""

_SCALAR_KINDS: Final = frozenset({"string", "id", "float64", "int64", "boolean", "bytes", "null"})
_VALUE_SIZES: Final = {"float64": 9, "int64": 9, "boolean": 1, "null": 1}  # strings and bytes: 2 + length
_SLICE_ROWS: Final = 65_536


@dataclass(slots=True)
class BulkRows:
    """Rows inserted into one table as one batch: their IDs and the Arrow table of the stored documents.

    ``rows`` is in ``layout`` (``_id``, ``_creationTime``, then the table's columns), one row per ID. Once
    the commit has written them to their side file, ``rows`` are the same rows mapped from that file.
    """

    table: str
    ids: list[Id]
    rows: pa.Table
    layout: Layout


# --- what was given -----------------------------------------------------------------------------------------


def frame_of(rows: Any) -> pl.DataFrame | None:
    """``rows`` as a Polars frame when it is a Polars frame, an Arrow table or record batch; else ``None``."""
    module = type(rows).__module__.split(".")[0]
    if module not in ("polars", "pyarrow"):
        return None
    import polars as pl

    if isinstance(rows, pl.DataFrame):
        return rows
    import pyarrow as pa

    if isinstance(rows, pa.Table | pa.RecordBatch):
        frame = pl.from_arrow(rows, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame
    return None


def frame_rows(frame: pl.DataFrame, definition: TableDefinition | None) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts for the row check: a null in an optional field's column is missing."""
    optional = _optional_fields(definition)
    rows: list[dict[str, Any]] = frame.to_dicts()
    if not optional:
        return rows
    return [{k: v for k, v in row.items() if not (v is None and k in optional)} for row in rows]


def _optional_fields(definition: TableDefinition | None) -> frozenset[str]:
    if definition is None or not isinstance(definition.document, ObjectValidator):
        return frozenset()
    return frozenset(n for n, f in definition.document.fields if isinstance(f, OptionalValidator))


def in_row(error: InvalidValueError, row: int) -> InvalidValueError:
    """``error``, raised by the document rules for one row of a bulk insert, changed to name that row.

    Its path gets ``[row]`` in front, as a :class:`~zapnb.SchemaValidationError` of the row check has it, and
    so does the place its message names (``Invalid value at .a: ...`` becomes ``Invalid value at [3].a:
    ...``, ``Document too large: ...`` becomes ``Document too large at [3]: ...``); its class and other
    attributes stay.

    Examples
    --------
    >>> from zapnb.documents import check_document
    >>> try:
    ...     check_document({"tags": {"a"}})
    ... except InvalidValueError as err:
    ...     print(in_row(err, 3).path, str(err)[:37])
    [3].tags Invalid value at [3].tags: a builtins
    """
    message, path = str(error), f"[{row}]{error.path}"
    place = f" at {error.path}: " if error.path else ": "
    head, found, rest = message.partition(place)
    shaped = found and head and ":" not in head  # else not a document rule's message: say the row first
    message = f"{head} at {path}: {rest}" if shaped else f"Row [{row}]: {message}"
    error.args, error.path = (message,), path
    return error


# --- checking a frame column by column ----------------------------------------------------------------------


def is_flat(definition: TableDefinition | None) -> bool:
    """Whether a table's frames can be checked column by column: an object whose fields are all scalars."""
    if definition is None or not isinstance(definition.document, ObjectValidator):
        return False
    fields = definition.document.fields
    return len(fields) <= MAX_OBJECT_FIELDS and all(
        slot_of(name, validator, True).codec.kind in _SCALAR_KINDS for name, validator in fields
    )


def check_frame(
    frame: pl.DataFrame,
    definition: TableDefinition | None,
    table: str,
    ids: Mapping[str, int],
    check_row: CheckRow,
) -> pl.DataFrame | None:
    """The columns of ``frame`` checked and normalized, or ``None`` when the table is not flat.

    Raises what ``check_row`` raises for the first bad row (the one a list of the frame's rows as dicts
    would fail on first).
    """
    if not is_flat(definition):
        return None
    assert definition is not None
    assert isinstance(definition.document, ObjectValidator)
    if frame.height == 0:
        return frame.clear()
    fields = dict(definition.document.fields)
    columns, first_bad = _checked_columns(frame, fields, ids)
    if first_bad == frame.height:
        first_bad = _first_too_large(columns, fields)
    if first_bad < frame.height:
        _row_error(frame, definition, first_bad, check_row)
    import polars as pl

    return _canonical_floats(pl.DataFrame(columns))


def _checked_columns(
    frame: pl.DataFrame, fields: Mapping[str, Any], ids: Mapping[str, int]
) -> tuple[list[pl.Series], int]:
    """The checked columns and the first bad row (the number of rows when none is bad)."""
    required = [name for name, f in fields.items() if not isinstance(f, OptionalValidator)]
    if set(frame.columns) - set(fields) or not set(required) <= set(frame.columns):
        return [], 0  # an extra field, or a required one missing: the first row already has it
    columns, first_bad = [], frame.height
    for name in [n for n in fields if n in frame.columns]:
        column = frame.get_column(name)
        first_bad = min(first_bad, _first_outside_int64(column))
        checked = check_column(fields[name], column, ids=ids)
        if isinstance(checked, int):
            first_bad = min(first_bad, checked)
        else:
            columns.append(checked)
    return columns, first_bad


def _first_outside_int64(column: pl.Series) -> int:
    """The first row holding an integer outside int64 (a document cannot hold it, whatever the field's
    validator: ``v.number()`` too), or the number of rows; only UInt64 and 128-bit columns can."""
    import polars as pl

    within = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
    if not column.dtype.is_integer() or column.dtype in within:
        return len(column)
    outside = column.cast(pl.Int64, strict=False).is_null() & column.is_not_null()
    rows = outside.arg_true()
    return int(rows[0]) if len(rows) else len(column)


def _first_too_large(columns: Sequence[pl.Series], fields: Mapping[str, Any]) -> int:
    """The first row whose document is larger than :data:`~zapnb.documents.MAX_DOCUMENT_SIZE`, or the
    number of rows (sizes by the rules of :mod:`zapnb.documents`: 2, then per field name + 1 + value)."""
    import numpy as np

    if not columns:
        return 0
    sizes = np.full(len(columns[0]), 2, np.int64)
    for column in columns:
        head = len(column.name) + 1
        cells = _cell_sizes(column, slot_of(column.name, fields[column.name], True).codec.kind) + head
        if column.null_count():
            missing = isinstance(fields[column.name], OptionalValidator)  # else a null is the value None
            cells = np.where(column.is_null().to_numpy(), 0 if missing else head + 1, cells)
        sizes += cells
    too_large = np.flatnonzero(sizes > MAX_DOCUMENT_SIZE)
    return int(too_large[0]) if len(too_large) else len(sizes)


def _cell_sizes(column: pl.Series, kind: str) -> npt.NDArray[np.int64] | int:
    """The size of each non-null value of a checked column (strings and bytes: 2 + length in bytes)."""
    import numpy as np
    import polars as pl

    if kind in _VALUE_SIZES:
        return _VALUE_SIZES[kind]
    if kind == "bytes":
        lengths = column.bin.size()
    elif isinstance(column.dtype, pl.Enum):  # each category's length, by the codes
        categories = column.dtype.categories.str.len_bytes().to_numpy().astype(np.int64)
        if not len(categories):  # every value is null
            return 2
        sizes: npt.NDArray[np.int64] = categories[column.to_physical().fill_null(0).to_numpy()] + 2
        return sizes
    else:
        lengths = column.cast(pl.String).str.len_bytes()
    cells: npt.NDArray[np.int64] = lengths.fill_null(0).to_numpy().astype(np.int64) + 2
    return cells


def _row_error(frame: pl.DataFrame, definition: TableDefinition, row: int, check_row: CheckRow) -> NoReturn:
    """Raise the row check's error for ``row``; if that row passes it, check every row (a safety net)."""
    check_row(frame_rows(frame.slice(row, 1), definition)[0], row)
    for i, doc in enumerate(frame_rows(frame, definition)):
        check_row(doc, i)
    raise AssertionError(f"row {row} of the frame failed its column check but passed the row check")


def _canonical_floats(frame: pl.DataFrame) -> pl.DataFrame:
    """Every NaN the quiet NaN of its sign, as :func:`zapnb.values.canonical_float` stores NaNs."""
    import polars as pl

    floats = [name for name, dtype in frame.schema.items() if dtype == pl.Float64]
    if not floats or not frame.select(pl.any_horizontal(pl.col(floats).is_nan().any())).item():
        return frame
    import numpy as np

    out = []
    for name in floats:
        values = frame.get_column(name)
        nan = values.is_nan().fill_null(False)
        data = values.to_numpy()  # nulls read as NaN here; the mask keeps them null below
        signed = np.where(np.signbit(data), -np.nan, np.nan)
        out.append(pl.Series(name, np.where(nan.to_numpy(), signed, data)).set(values.is_null(), None))
    return frame.with_columns(out)


# --- the batch ----------------------------------------------------------------------------------------------


def batch_from_frame(
    table: str, layout: Layout, columns: pl.DataFrame, ids: list[Id], times: npt.NDArray[np.float64]
) -> BulkRows:
    """The batch of rows checked by :func:`check_frame`, with their IDs and creation times."""
    import pyarrow as pa

    rows = _arrow_of(columns).append_column("_id", _id_column(ids))
    rows = rows.append_column("_creationTime", pa.array(times, pa.float64()))
    return BulkRows(table, ids, layout.from_arrow(rows), layout)


def _arrow_of(columns: pl.DataFrame) -> pa.Table:
    """The checked columns as Arrow: strings and bytes copied once, at their exact size, in slices (Polars
    holds them as views, which Arrow's plain string columns cannot share); other columns as they come."""
    import polars as pl
    import pyarrow as pa

    arrays = {}
    for name in columns.columns:
        series = columns.get_column(name)
        if series.dtype in (pl.String, pl.Binary):
            arrays[name] = _contiguous(series)
        else:
            arrays[name] = series.to_arrow(compat_level=pl.CompatLevel.oldest())
    return pa.table(arrays)


def _contiguous(series: pl.Series) -> pa.Array:
    """A column of strings (or bytes) as one Arrow array, written slice by slice into buffers of its size."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    binary = series.dtype == pl.Binary
    lengths = series.bin.size() if binary else series.str.len_bytes()
    offsets = np.zeros(len(series) + 1, np.int64)
    np.cumsum(lengths.fill_null(0).to_numpy(), out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    for start in range(0, len(series), _SLICE_ROWS):
        part = series.slice(start, _SLICE_ROWS).to_arrow(compat_level=pl.CompatLevel.oldest())
        ends = np.frombuffer(part.buffers()[1], np.int64)[part.offset : part.offset + len(part) + 1]
        piece = np.frombuffer(part.buffers()[2] or b"", np.uint8)[ends[0] : ends[-1]]
        data[offsets[start] : offsets[start] + len(piece)] = piece
    large = bool(offsets[-1] >= 2**31)  # 32-bit offsets, as the layout stores them, when they fit
    if binary:
        kind = pa.large_binary() if large else pa.binary()
    else:
        kind = pa.large_string() if large else pa.string()
    valid = pa.array(series.is_not_null().to_numpy()).buffers()[1] if series.null_count() else None
    buffers = [valid, pa.py_buffer(offsets if large else offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(kind, len(series), buffers, null_count=series.null_count())


def _id_column(ids: Sequence[str]) -> pa.StringArray:
    """The Arrow column of ``ids``, written from their text in slices (no per-ID conversion, no copy of
    the whole text at once)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, ids), np.int64, len(ids)), out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    for start in range(0, len(ids), _SLICE_ROWS):
        text = "".join(ids[start : start + _SLICE_ROWS]).encode("ascii")  # IDs are ASCII: a character a byte
        data[offsets[start] : offsets[start] + len(text)] = np.frombuffer(text, np.uint8)
    kind, width = (pa.string(), np.int32) if offsets[-1] < 2**31 else (pa.large_string(), np.int64)
    buffers = [None, pa.py_buffer(offsets.astype(width)), pa.py_buffer(data)]
    column: pa.StringArray = pa.Array.from_buffers(kind, len(ids), buffers)
    return column


def batch_from_documents(
    table: str, layout: Layout, docs: Iterable[Mapping[str, Any]], ids: list[Id]
) -> BulkRows:
    """The batch of stored documents (each with its ``_id`` and ``_creationTime``)."""
    return BulkRows(table, ids, layout.to_arrow(list(docs)), layout)


class PendingBulk:
    """A transaction's batches until it commits: rows read back by ID, rows it rewrote since taken out.

    A row the transaction patches, replaces or deletes after inserting it in bulk leaves the batch
    (:meth:`drop`); the transaction writes it as a single document instead.
    """

    def __init__(self) -> None:
        self._batches: list[BulkRows] = []
        self._where: dict[str, tuple[int, int]] | None = None  # ID -> (batch, row), made on first use
        self._dropped: set[str] = set()
        self._written: list[Write] | None = None  # the rows as documents, made on first use

    def __bool__(self) -> bool:
        return sum(len(b.ids) for b in self._batches) > len(self._dropped)

    def add(self, batch: BulkRows) -> None:
        """Hold a new batch."""
        self._batches.append(batch)
        self._where = self._written = None

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._rows() and doc_id not in self._dropped

    def get(self, doc_id: str) -> dict[str, Any] | None:
        """The document with this ID, if a batch holds it."""
        if doc_id not in self:
            return None
        at, row = self._rows()[doc_id]
        batch = self._batches[at]
        return batch.layout.to_documents(batch.rows.slice(row, 1))[0]

    def drop(self, doc_id: str) -> None:
        """Take a row out of its batch (nothing happens for an ID no batch holds)."""
        if doc_id in self:
            self._dropped.add(doc_id)
            self._written = None

    def writes(self) -> list[Write]:
        """Every row as a written document, batch by batch, in row order (made once per change)."""
        if self._written is None:
            self._written = [
                Write(batch.table, str(doc["_id"]), doc)
                for batch in self.batches()
                for doc in batch.layout.to_documents(batch.rows)
            ]
        return self._written

    def batches(self) -> list[BulkRows]:
        """The batches, without the rows taken out."""
        if not self._dropped:
            return list(self._batches)
        import pyarrow as pa
        import pyarrow.compute as pc

        out = []
        dropped = pa.array(sorted(self._dropped), pa.string())
        for batch in self._batches:
            keep = pc.invert(pc.is_in(batch.rows.column("_id"), value_set=dropped))
            ids = [doc_id for doc_id in batch.ids if doc_id not in self._dropped]
            out.append(BulkRows(batch.table, ids, batch.rows.filter(keep), batch.layout))
        return [batch for batch in out if batch.ids]

    def _rows(self) -> dict[str, tuple[int, int]]:
        if self._where is None:
            self._where = {
                str(doc_id): (at, row)
                for at, batch in enumerate(self._batches)
                for row, doc_id in enumerate(batch.ids)
            }
        return self._where


@dataclass(slots=True)
class BulkPart:
    """One table's rows of a bulk commit (its ``batches`` joined), and each index's keys of them (sorted, and
    each one's row), which :func:`build_keys` fills in."""

    table: str
    rows: pa.Table
    layout: Layout
    keys: dict[str, SortedRows] = field(default_factory=dict)
    batches: tuple[BulkRows, ...] = ()

    def use_written(self, rows: pa.Table) -> None:
        """Hold ``rows``, the same rows mapped from the side file just written, instead of those in memory;
        so do the batches, each its own slice."""
        self.rows = rows
        start = 0
        for batch in self.batches:
            count = batch.rows.num_rows
            batch.rows = rows.slice(start, count)
            start += count


def bulk_parts(bulk: Sequence[BulkRows]) -> list[BulkPart]:
    """One part per table, in the order the tables first appear (a table's batches joined, without a copy)."""
    by_table: dict[str, list[BulkRows]] = {}
    for batch in bulk:
        by_table.setdefault(batch.table, []).append(batch)
    parts = []
    for table, batches in by_table.items():
        import pyarrow as pa

        rows = batches[0].rows if len(batches) == 1 else pa.concat_tables([b.rows for b in batches])
        parts.append(BulkPart(table, rows, batches[0].layout, batches=tuple(batches)))
    return parts


def build_keys(
    parts: Sequence[BulkPart],
    specs: Callable[[str], list[IndexSpec]],
    sources: Sequence[pa.Table | None] | None = None,
) -> None:
    """Fill in each part's keys in the indexes ``specs(table)``, two indexes at a time (sorting and Arrow's
    kernels release the GIL); a column's share of the keys is read once for all of them (:class:`KeyColumns`).

    ``sources`` are the rows to read the keys from, per part (by default its rows): the columns they need.
    """
    for at, part in enumerate(parts):
        wanted = specs(part.table)
        source = None if sources is None else sources[at]
        rows = part.rows if source is None else source
        columns = KeyColumns(part.layout, rows)
        keys_of = partial(sorted_table_keys, layout=part.layout, table=rows, columns=columns)
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            made = list(pool.map(keys_of, wanted))
        part.keys.update((spec.name, keys) for spec, keys in zip(wanted, made, strict=True))


@contextlib.contextmanager
def keys_meanwhile(
    parts: Sequence[BulkPart], specs: Callable[[str], list[IndexSpec]]
) -> Iterator[tuple[Callable[[], None], sidefiles.Written]]:
    """Build the parts' keys (:func:`build_keys`) while the block runs (writing the side files): a part's in
    another thread as soon as its side file is written.

    Yields two functions: ``built()`` waits for the keys (building now those of a part whose file was not
    written) and raises what building them raised; ``written`` is what :func:`zapnb.sidefiles.pending` calls
    as each file is written. From then on a part and its batches hold its rows mapped from that file, and the
    rows in memory are let go of but for the columns the keys read. Building the keys only then means that the
    rows in memory and all the keys are never held at once (at 1M messages, 330 MB and 290 MB).
    """
    sources: list[pa.Table | None] = [_key_source(part, specs(part.table)) for part in parts]
    started: dict[int, Future[None]] = {}

    def build(at: int) -> None:
        build_keys([parts[at]], specs, [sources[at]])
        sources[at] = None  # the columns in memory are no longer needed

    with ThreadPoolExecutor(max_workers=1) as pool:

        def written(at: int, mapped: pa.Table | None) -> None:
            if mapped is not None:
                parts[at].use_written(mapped)
            started[at] = pool.submit(build, at)

        def built() -> None:
            for at in range(len(parts)):
                if at in started:
                    started[at].result()
                elif sources[at] is not None:
                    build(at)

        yield built, written


def _key_source(part: BulkPart, specs: Sequence[IndexSpec]) -> pa.Table:
    """The part's rows, with only the columns the keys of ``specs`` read when that is known."""
    names = key_columns(specs, part.layout)
    return part.rows if names is None else part.rows.select(names)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk insert (it makes a million objects, none cyclic).

    Each batch of new objects that outlives a young collection pushes the collector toward a full pass
    over every object in the process; reference counting still frees everything. If something else paused
    the collector, it stays paused.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
