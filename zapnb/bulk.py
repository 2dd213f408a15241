"""Bulk inserts: rows given as a Polars frame, an Arrow table or dicts, checked and laid out as one batch.

Responsibilities:

- tell a frame from an iterable of dicts (:func:`frame_of`), and turn a frame into the dicts the row path
  checks (:func:`frame_rows`: a null in an optional field's column is a missing field);
- check a frame column by column (:func:`check_frame`) when its table is *flat* (an object whose fields all
  sit in scalar columns: strings, IDs, enums, numbers, booleans, bytes, null, each maybe nullable or
  optional), with :func:`zapnb.columns.check_column` and the document size rule computed per row; for the
  first bad row it runs the row check on that row's dict, so the error is the one a list of dicts raises;
- make the Arrow batch of the checked rows in the table's layout, with their IDs and creation times
  (:func:`batch_from_frame`, :func:`batch_from_documents`);
- hold a transaction's batches until it commits (:class:`PendingBulk`): read a row back by ID, take out a
  row the transaction rewrites or deletes;
- gather a commit's batches into one part per table (:func:`bulk_parts`) and build each index's keys of its
  rows, sorted, before the commit takes the log's lock, while its side files are written
  (:func:`build_keys`, :func:`keys_meanwhile`).

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NoReturn

from zapnb.changes import Write
from zapnb.columnkeys import sorted_table_keys
from zapnb.columns import check_column
from zapnb.documents import MAX_DOCUMENT_SIZE, MAX_OBJECT_FIELDS
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
    "keys_meanwhile",
    "paused_gc",
]

CheckRow = Callable[[dict[str, Any], int], object]
"""The row check of one row (its dict and its number): raises the error a list of dicts would raise."""

_SCALAR_KINDS: Final = frozenset({"string", "id", "float64", "int64", "boolean", "bytes", "null"})
_VALUE_SIZES: Final = {"float64": 9, "int64": 9, "boolean": 1, "null": 1}  # strings and bytes: 2 + length


@dataclass(frozen=True, slots=True)
class BulkRows:
    """Rows inserted into one table as one batch: their IDs and the Arrow table of the stored documents.

    ``rows`` is in ``layout`` (``_id``, ``_creationTime``, then the table's columns), one row per ID.
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
        checked = check_column(fields[name], frame.get_column(name), ids=ids)
        if isinstance(checked, int):
            first_bad = min(first_bad, checked)
        else:
            columns.append(checked)
    return columns, first_bad


def _first_too_large(columns: Sequence[pl.Series], fields: Mapping[str, Any]) -> int:
    """The first row whose document is larger than :data:`~zapnb.documents.MAX_DOCUMENT_SIZE`, or the
    number of rows (sizes by the rules of :mod:`zapnb.documents`: 2, then per field name + 1 + value)."""
    import polars as pl

    terms = []
    for column in columns:
        kind = slot_of(column.name, fields[column.name], True).codec.kind
        head = len(column.name) + 1
        if kind in _VALUE_SIZES:
            size = pl.lit(head + _VALUE_SIZES[kind], pl.Int64)
        elif kind == "bytes":
            size = pl.col(column.name).bin.size().cast(pl.Int64) + head + 2
        else:
            size = pl.col(column.name).cast(pl.String).str.len_bytes().cast(pl.Int64) + head + 2
        missing = isinstance(fields[column.name], OptionalValidator)  # else a null is the value None
        terms.append(pl.when(pl.col(column.name).is_null()).then(0 if missing else head + 1).otherwise(size))
    if not terms:
        return len(columns[0]) if columns else 0
    sizes = pl.DataFrame(columns).select(pl.sum_horizontal(terms).alias("size") + 2).to_series()
    too_large = sizes > MAX_DOCUMENT_SIZE
    return int(too_large.arg_max()) if too_large.any() else len(sizes)  # type: ignore[arg-type]


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
    import polars as pl

    system = [pl.Series("_id", ids, pl.String), pl.Series("_creationTime", times)]
    return BulkRows(table, ids, layout.from_polars(columns.with_columns(system)), layout)


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


@dataclass(frozen=True, slots=True)
class BulkPart:
    """One table's rows of a bulk commit, and each index's keys of them (sorted, and each one's row), which
    :func:`build_keys` fills in."""

    table: str
    rows: pa.Table
    layout: Layout
    keys: dict[str, SortedRows] = field(default_factory=dict)


def bulk_parts(bulk: Sequence[BulkRows]) -> list[BulkPart]:
    """One part per table, in the order the tables first appear (a table's batches joined, without a copy)."""
    by_table: dict[str, list[BulkRows]] = {}
    for batch in bulk:
        by_table.setdefault(batch.table, []).append(batch)
    parts = []
    for table, batches in by_table.items():
        import pyarrow as pa

        rows = batches[0].rows if len(batches) == 1 else pa.concat_tables([b.rows for b in batches])
        parts.append(BulkPart(table, rows, batches[0].layout))
    return parts


def build_keys(parts: Sequence[BulkPart], specs: Callable[[str], list[IndexSpec]]) -> None:
    """Fill in each part's keys in the indexes ``specs(table)``, two indexes at a time (sorting and Arrow's
    kernels release the GIL)."""
    for part in parts:
        wanted = specs(part.table)
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            made = list(pool.map(partial(_keys_of, layout=part.layout, rows=part.rows), wanted))
        part.keys.update((spec.name, keys) for spec, keys in zip(wanted, made, strict=True))


@contextlib.contextmanager
def keys_meanwhile(
    parts: Sequence[BulkPart], specs: Callable[[str], list[IndexSpec]]
) -> Iterator[Callable[[], None]]:
    """Build the parts' keys (:func:`build_keys`) in another thread while the block runs (writing the side
    files); calling what it yields waits for them, and raises what building them raised."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(build_keys, parts, specs)
        yield future.result


def _keys_of(spec: IndexSpec, layout: Layout, rows: pa.Table) -> SortedRows:
    return sorted_table_keys(spec, layout, rows)


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
