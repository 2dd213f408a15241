"""Queries: ``db.query("t").with_index(...).order(...).filter(...)`` and their results as Polars frames.

Responsibilities:

- :class:`Query`, an immutable builder (each call returns a new query) over a table, an index range
  (:mod:`zapnb.ranges`), an order and filters (:mod:`zapnb.filters`);
- its terminals: ``collect()`` and ``take(n)`` (typed frames, :mod:`zapnb.frames`), ``first()``,
  ``unique()`` and iteration (exact documents), ``paginate(...)`` (:mod:`zapnb.pagination`), ``count()`` and
  ``explain()``;
- reading inside a transaction (:mod:`zapnb.scan`: its own writes included) and recording what was read as
  index key ranges: the whole range for ``collect()``, ``count()`` and iteration; for ``take(n)``,
  ``first()``, ``unique()`` and ``paginate()`` only up to the last key read, so a later insert beyond it does
  not conflict. A filter reads every document it passes over, so its range runs to the last one examined.

A query from ``db.query`` reads the newest snapshot each time a terminal runs; one from ``tx.query`` (or
``ctx.db.query``) reads its transaction's snapshot and writes. Without ``with_index`` a query reads
``by_creation_time``. A filter that reads more than 1,000 documents for each one it returns, or all of a
table of over 10,000, warns with :class:`~zapnb.errors.FilterScanWarning`: use an index range instead.

Examples
--------
>>> import tempfile, zapnb
>>> from zapnb import v
>>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
...     _ = db.deploy(zapnb.define_schema({
...         "tasks": zapnb.define_table({"owner": v.string(), "n": v.int64()}).index("by_owner", ["owner"]),
...     }), progress=False)
...     rows = [{"owner": "ann", "n": 1}, {"owner": "bob", "n": 2}, {"owner": "ann", "n": 3}]
...     _ = db.insert_many("tasks", rows)
...     mine = db.query("tasks").with_index("by_owner", lambda q: q.eq("owner", "ann")).order("desc")
...     print(mine.collect().select("owner", "n"))
...     big = db.query("tasks").filter(lambda q: q.gt(q.field("n"), 1))
...     print(mine.count(), mine.first()["n"], big.count())
shape: (2, 2)
┌───────┬─────┐
│ owner ┆ n   │
│ ---   ┆ --- │
│ str   ┆ i64 │
╞═══════╪═════╡
│ ann   ┆ 3   │
│ ann   ┆ 1   │
└───────┴─────┘
2 3 2
"""

from __future__ import annotations

import functools
import gc
import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from zapnb import scan
from zapnb.changes import ReadRange
from zapnb.documents import result_document
from zapnb.errors import (
    FilterScanWarning,
    InvalidQueryError,
    NotUniqueError,
)
from zapnb.explain import Explain, Order
from zapnb.filters import Expr, FilterBuilder, Logical, as_expr, compile_filter
from zapnb.frames import FrameShape, build_frame, frame_shape, range_count, range_frame
from zapnb.index import IndexSpec
from zapnb.pagination import (
    DEFAULT_MAXIMUM_ROWS_READ,
    PageStatus,
    PaginationResult,
    after,
    check_page_arguments,
    cursor_bounds,
    fingerprint,
    make_cursor,
)
from zapnb.queryindex import resolve_index
from zapnb.ranges import IndexRangeBuilder, KeyRange, compile_range, field_validators, literal_coercer
from zapnb.schema import table_definition
from zapnb.transaction import Transaction
from zapnb.vectorfilter import vector_filter

if TYPE_CHECKING:
    import polars as pl

    from zapnb.engine import Engine, Snapshot
    from zapnb.schema import Schema

__all__ = ["FULL_SCAN_WARNING", "SCAN_WARNING_RATIO", "Explain", "Order", "PaginationResult", "Query"]

P = ParamSpec("P")
R = TypeVar("R")
Document = dict[str, Any]

SCAN_WARNING_RATIO: Final = 1_000
"""A filter that reads more than this many documents for each one it returns warns."""
FULL_SCAN_WARNING: Final = 10_000
"""A filter over a whole table that reads more than this many documents warns."""
DEFAULT_ORDER_INDEX: Final = "by_creation_time"


@dataclass(frozen=True)
class _Plan:
    """A query compiled against one schema: its index, key range, filter closure and frame shape."""

    schema: Schema | None
    spec: IndexSpec
    keys: KeyRange
    predicate: Callable[[Mapping[str, Any]], bool] | None
    shape: FrameShape
    vector: pl.Expr | None = None  # the filters as one expression over the typed frame, where exact

    def fingerprint(self, table: str, order: Order, filters: tuple[Expr, ...]) -> str:
        """The query's fingerprint, kept in its cursors."""
        texts = [repr(expr) for expr in filters]
        return fingerprint(table, self.spec.name, self.spec.fields, self.keys, order, texts)


@dataclass(frozen=True)
class _Read:
    """What one pass over a range read: the rows kept, how many documents it examined, the last key examined,
    whether it reached the end of the range, and the key in the middle of what it examined."""

    rows: list[scan.Row]
    scanned: int
    last: bytes | None
    exhausted: bool
    middle: bytes | None = None


WHOLE_RANGE_ROWS: Final = 256
"""``collect()``, and ``count()`` with a filter, read a range of at least this many rows whole, as arrays; a
shorter one entry by entry (faster below about this size: the arrays' set-up costs 15-30 µs)."""


def _gc_paused(terminal: Callable[P, R]) -> Callable[P, R]:
    """Run a terminal with the cyclic garbage collector paused.

    A terminal that reads many documents makes one small tuple per row; each batch of them that outlives a
    young collection pushes the collector toward a full pass over every object in the process, which made
    reading 50,000 documents three times slower. Nothing a terminal makes is cyclic garbage, and reference
    counting still frees everything at once; the collector runs again as soon as the terminal returns (if
    something else turned it off, it stays off).
    """

    @functools.wraps(terminal)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return terminal(*args, **kwargs)
        gc.disable()  # inline rather than bulk.paused_gc: a generator context manager costs 1.5 µs a query
        try:
            return terminal(*args, **kwargs)
        finally:
            gc.enable()

    return run


class Query:
    """A query of one table. Immutable: ``with_index``, ``order`` and ``filter`` return new queries.

    Make one with ``db.query(table)``, ``tx.query(table)`` or ``ctx.db.query(table)``.
    """

    __slots__ = ("_cache", "_filters", "_index", "_order", "_range", "_source", "table")

    def __init__(
        self,
        source: Engine | Transaction,
        table: str,
        *,
        index: str | None = None,
        range: IndexRangeBuilder | None = None,
        order: Order = "asc",
        filters: tuple[Expr, ...] = (),
    ) -> None:
        if not isinstance(table, str) or not table:
            raise InvalidQueryError(f"query() takes a table name, not {table!r}.", method="query")
        self._source = source
        self.table = table
        self._index = index
        self._range = range if range is not None else IndexRangeBuilder()
        self._order: Order = order
        self._filters = filters
        self._cache: list[_Plan] = []

    @property
    def source(self) -> Engine | Transaction:
        """What the query reads: its database's engine, or the transaction it was built in."""
        return self._source

    def _with(self, **changes: Any) -> Query:
        fields = {"index": self._index, "range": self._range, "order": self._order, "filters": self._filters}
        return Query(self._source, self.table, **{**fields, **changes})

    def within(self, tx: Transaction) -> Query:
        """This query reading ``tx``'s snapshot (and recording its reads in ``tx``'s read set)."""
        return Query(
            tx, self.table, index=self._index, range=self._range, order=self._order, filters=self._filters
        )

    # --- building -------------------------------------------------------------------------------------------

    def with_index(
        self, name: str, range: Callable[[IndexRangeBuilder], IndexRangeBuilder] | None = None
    ) -> Query:
        """Read the index ``name``, limited to ``range`` (``lambda q: q.eq("a", 1).gt("b", 2)``).

        Raises :class:`~zapnb.errors.IndexNotFoundError` for an unknown index and
        :class:`~zapnb.errors.InvalidIndexRangeError` for a range the index cannot answer.
        """
        if self._index is not None:
            raise InvalidQueryError(
                f"This query already reads index {self._index!r}: call with_index once, on db.query(...).",
                method="with_index",
            )
        if range is not None and not callable(range):
            raise InvalidQueryError(
                f"The range of with_index({name!r}, ...) is {range!r}; pass a function that builds it, as in "
                'lambda q: q.eq("field", value), or nothing for the whole index.',
                method="with_index",
            )
        built = IndexRangeBuilder() if range is None else range(IndexRangeBuilder())
        if not isinstance(built, IndexRangeBuilder):
            raise InvalidQueryError(
                f"The range function of with_index({name!r}, ...) returned {built!r}; return the builder it "
                'was given, as in lambda q: q.eq("field", value).',
                method="with_index",
            )
        query = self._with(index=name, range=built)
        query._plan(query._known_snapshot())  # check the index and the range now, where the mistake is
        return query

    def order(self, order: Order) -> Query:
        """Return rows in ascending (``"asc"``, the default) or descending index order."""
        if order not in ("asc", "desc"):
            raise InvalidQueryError(f'order() takes "asc" or "desc", not {order!r}.', method="order")
        query = self._with(order=order)
        query._cache[:] = self._cache  # the plan does not depend on the order
        return query

    def filter(self, predicate: Callable[[FilterBuilder], Any]) -> Query:
        """Keep the documents for which ``predicate(q)``'s expression is true (several filters AND together).

        Filters read every document of the range; prefer an index range where one fits. ``predicate`` must
        return an expression built with ``q``: Python's ``==``, ``<``, ``and``, ``or`` and ``not`` on
        expressions raise :class:`~zapnb.errors.FilterExpressionError`, and a result that is no expression
        (a Python bool from ``is`` or ``in``) raises :class:`~zapnb.errors.InvalidQueryError`.
        """
        built = predicate(FilterBuilder())
        if not isinstance(built, Expr):
            why = ""
            if isinstance(built, bool):
                why = " (Python decided it, with an operator such as `is` or `in`)"
            raise InvalidQueryError(
                f"The filter function returned {type(built).__name__} {built!r}{why}, not a filter "
                'expression: return an expression built with q, such as q.eq(q.field("status"), "active").',
                method="filter",
            )
        return self._with(filters=(*self._filters, as_expr(built, "filter")))

    # --- compiling ------------------------------------------------------------------------------------------

    @property
    def index(self) -> str:
        """The index read (``by_creation_time`` unless ``with_index`` chose one)."""
        return self._index or DEFAULT_ORDER_INDEX

    def _known_snapshot(self) -> Snapshot:
        """The snapshot to check the query against when it is built (each terminal reads a fresh one)."""
        if isinstance(self._source, Transaction):
            return self._source.snapshot
        return self._source.known_snapshot()

    def _plan(self, snapshot: Snapshot) -> _Plan:
        schema = snapshot.catalog.schema
        if self._cache and self._cache[0].schema is schema:
            return self._cache[0]
        spec = resolve_index(snapshot, self.table, self.index)
        definition = table_definition(schema, self.table)
        keys = compile_range(self.table, spec, self._range, literal_coercer(definition))
        predicate, vector = None, None
        if self._filters:
            validators_of = field_validators(definition)
            checks = [compile_filter(expr, validators_of) for expr in self._filters]
            predicate = checks[0] if len(checks) == 1 else _all_of(checks)
            vector = vector_filter(Logical("and_", self._filters), validators_of)
        plan = _Plan(schema, spec, keys, predicate, frame_shape(self.table, schema), vector)
        self._cache[:] = [plan]
        return plan

    def _start(self) -> tuple[Transaction, _Plan, scan.Source]:
        tx = self._source if isinstance(self._source, Transaction) else Transaction(self._source)
        tx._check_open()
        plan = self._plan(tx.snapshot)
        state = tx.snapshot.tables.get(self.table)
        pending = scan.pending_writes(tx, self.table) if tx.writes else []
        return tx, plan, scan.Source(self.table, state, plan.spec, tx.snapshot.lsn, pending)

    # --- reading --------------------------------------------------------------------------------------------

    def _read(
        self,
        source: scan.Source,
        plan: _Plan,
        bounds: tuple[bytes | None, bytes | None],
        limit: int | None = None,
        maximum: int | None = None,
    ) -> _Read:
        """Read the range in order until ``limit`` rows are kept or ``maximum`` documents examined."""
        rows = scan.rows(source, *bounds, reverse=self._order == "desc")
        if plan.predicate is None and maximum is None:
            taken = list(rows if limit is None else itertools.islice(rows, limit))
            full = limit is not None and len(taken) == limit
            return _Read(taken, len(taken), taken[-1].key if taken else None, not full)
        kept: list[scan.Row] = []
        examined: list[bytes] = []
        scanned, last, keep = 0, None, plan.predicate
        for row in rows:
            scanned, last = scanned + 1, row.key
            if maximum is not None:
                examined.append(row.key)
            if keep is None:
                kept.append(row)
            else:
                doc = scan.document(source, row)
                if keep(doc):
                    kept.append(scan.Row(row.key, row.position, doc))
            if (limit is not None and len(kept) >= limit) or (maximum is not None and scanned >= maximum):
                return _Read(kept, scanned, last, False, examined[len(examined) // 2] if examined else None)
        return _Read(kept, scanned, last, True, examined[len(examined) // 2] if examined else None)

    def _record(
        self, tx: Transaction, plan: _Plan, bounds: tuple[bytes | None, bytes | None], read: _Read
    ) -> None:
        lo, hi = bounds
        if not read.exhausted:
            if read.last is None:
                return
            if self._order == "desc":
                lo = read.last
            else:
                hi = after(read.last)
        tx.record_read(ReadRange(self.table, plan.spec.name, lo, hi))

    def _run(
        self, limit: int | None = None, started: tuple[Transaction, _Plan, scan.Source] | None = None
    ) -> tuple[scan.Source, _Plan, _Read]:
        tx, plan, source = self._start() if started is None else started
        bounds = (plan.keys.lo, plan.keys.hi)
        read = self._read(source, plan, bounds, limit) if limit != 0 else _Read([], 0, None, False)
        self._record(tx, plan, bounds, read)
        self._warn(plan, read, stacklevel=5)
        return source, plan, read

    def _advice(self, plan: _Plan, read: _Read, returned: int | None = None) -> str | None:
        if plan.predicate is None:
            return None
        returned = len(read.rows) if returned is None else returned
        too_many = read.scanned > SCAN_WARNING_RATIO * max(1, returned)
        whole_table = plan.keys.is_full and read.scanned > FULL_SCAN_WARNING
        if not (too_many or whole_table):
            return None
        return (
            f"This query's filter read {read.scanned} documents of {self.table!r} to return "
            f"{returned}. "
            "Never use .filter() on large tables: define an index on the filtered fields and query it with "
            ".with_index(name, lambda q: q.eq(...)), which reads only the matching documents."
        )

    def _warn(self, plan: _Plan, read: _Read, stacklevel: int = 3, returned: int | None = None) -> None:
        """Warn (at the caller of the terminal ``stacklevel - 1`` frames up) when a filter read too much."""
        returned = len(read.rows) if returned is None else returned
        advice = self._advice(plan, read, returned)
        if advice is not None:
            warning = FilterScanWarning(
                advice, table=self.table, index=plan.spec.name, scanned=read.scanned, returned=returned
            )
            warnings.warn(warning, stacklevel=stacklevel)

    def _whole(
        self,
        tx: Transaction,
        plan: _Plan,
        source: scan.Source,
        vector: pl.Expr | None,
        *,
        count: bool = False,
    ) -> pl.DataFrame | int | None:
        """The whole range read at once (:func:`~zapnb.scan.row_arrays`), filtered by ``vector``: its frame,
        or with ``count`` its number of rows; ``None`` where only the per-document path can read it.

        Every document of the range counts as read, as the per-document path does for ``collect()``.
        """
        bounds = (plan.keys.lo, plan.keys.hi)
        if source.pending or scan.count(source, *bounds) < WHOLE_RANGE_ROWS:
            return None
        ranged = scan.row_arrays(source, *bounds, reverse=self._order == "desc")
        if ranged is None:
            return None
        state = source.state
        if count and vector is not None:
            result: pl.DataFrame | int | None = range_count(plan.shape, state, ranged, vector)
        else:
            result = range_frame(plan.shape, state, ranged, vector)
        if result is None:
            return None
        returned = result if isinstance(result, int) else result.height
        read = _Read([], len(ranged.rows), None, True)
        self._record(tx, plan, bounds, read)
        self._warn(plan, read, stacklevel=5, returned=returned)
        return result

    def _filtered_frame(
        self, tx: Transaction, plan: _Plan, source: scan.Source, vector: pl.Expr
    ) -> pl.DataFrame:
        """The filtered result of a started query whose filters are exact on columns (``plan.vector``).

        Every document of the range is read (as the per-document path does for ``collect()``), built into
        the typed frame once, and filtered there by :func:`~zapnb.vectorfilter.vector_filter`'s expression.
        """
        bounds = (plan.keys.lo, plan.keys.hi)
        rows = list(scan.rows(source, *bounds, reverse=self._order == "desc"))
        read = _Read(rows, len(rows), rows[-1].key if rows else None, True)
        self._record(tx, plan, bounds, read)
        frame = self._frame(source, plan, rows).filter(vector)
        self._warn(plan, read, stacklevel=5, returned=frame.height)
        return frame

    def _document(self, source: scan.Source, row: scan.Row) -> Document:
        return result_document(self.table, scan.document(source, row))

    def _frame(self, source: scan.Source, plan: _Plan, rows: list[scan.Row]) -> pl.DataFrame:
        return build_frame(plan.shape, source.state, [(row[1], row[2]) for row in rows])

    # --- terminals ------------------------------------------------------------------------------------------

    @_gc_paused
    def collect(self) -> pl.DataFrame:
        """Every matching document, as a typed frame in index order."""
        tx, plan, source = self._start()
        if plan.predicate is None or plan.vector is not None:
            whole = self._whole(tx, plan, source, plan.vector)
            if whole is not None and not isinstance(whole, int):
                return whole
        if plan.vector is not None:
            return self._filtered_frame(tx, plan, source, plan.vector)
        source, plan, read = self._run(started=(tx, plan, source))
        return self._frame(source, plan, read.rows)

    @_gc_paused
    def take(self, n: int) -> pl.DataFrame:
        """The first ``n`` matching documents, as a typed frame in index order."""
        if type(n) is not int or n < 0:
            raise InvalidQueryError(f"take() takes a whole number of rows >= 0, not {n!r}.", method="take")
        started = self._start()
        if started[1].predicate is None:
            frame = self._base_take(*started, n)
            if frame is not None:
                return frame
        source, plan, read = self._run(n, started=started)
        return self._frame(source, plan, read.rows)

    def _base_take(self, tx: Transaction, plan: _Plan, source: scan.Source, n: int) -> pl.DataFrame | None:
        """``take(n)`` of an unfiltered range whose rows all lie in the table's base, gathered from a slice of
        the index (:func:`~zapnb.scan.base_prefix`); ``None`` where the rows are read one by one. It reads
        (and records) what the per-row path would."""
        bounds = (plan.keys.lo, plan.keys.hi)
        prefix = scan.base_prefix(source, *bounds, n, reverse=self._order == "desc")
        if prefix is None:
            return None
        rows, last = prefix
        frame = range_frame(plan.shape, source.state, scan.RowArrays(rows, {}))
        if frame is None:
            return None
        self._record(tx, plan, bounds, _Read([], len(rows), last, len(rows) < n))
        return frame

    @_gc_paused
    def first(self) -> Document | None:
        """The first matching document, or ``None``."""
        source, _plan, read = self._run(1)
        return self._document(source, read.rows[0]) if read.rows else None

    @_gc_paused
    def unique(self) -> Document | None:
        """The one matching document, or ``None``; raises :class:`~zapnb.errors.NotUniqueError` for more."""
        source, _plan, read = self._run(2)
        docs = [self._document(source, row) for row in read.rows]
        if len(docs) > 1:
            ids = tuple(str(doc["_id"]) for doc in docs)
            raise NotUniqueError(
                f"unique() query returned more than one result from table {self.table}:\n "
                f"[{ids[0]}, {ids[1]}, ...]\nUse first() for any one of them, or narrow the query (an index "
                "range on a field whose values are unique).",
                table=self.table,
                ids=ids,
            )
        return docs[0] if docs else None

    @_gc_paused
    def count(self) -> int:
        """How many documents match. Without a filter the index counts them: no document is read."""
        tx, plan, source = self._start()
        bounds = (plan.keys.lo, plan.keys.hi)
        if plan.predicate is None:
            tx.record_read(ReadRange(self.table, plan.spec.name, *bounds))
            return scan.count(source, *bounds)
        if plan.vector is not None:
            whole = self._whole(tx, plan, source, plan.vector, count=True)
            if isinstance(whole, int):
                return whole
            return self._filtered_frame(tx, plan, source, plan.vector).height
        read = self._read(source, plan, bounds)
        self._record(tx, plan, bounds, read)
        self._warn(plan, read, stacklevel=4)
        return len(read.rows)

    def __iter__(self) -> Iterator[Document]:
        """The matching documents, read lazily (the whole range is recorded as read at once)."""
        tx, plan, source = self._start()
        bounds = (plan.keys.lo, plan.keys.hi)
        tx.record_read(ReadRange(self.table, plan.spec.name, *bounds))
        return self._documents(source, plan, bounds)

    def _documents(
        self, source: scan.Source, plan: _Plan, bounds: tuple[bytes | None, bytes | None]
    ) -> Iterator[Document]:
        keep = plan.predicate
        for row in scan.rows(source, *bounds, reverse=self._order == "desc"):
            doc = self._document(source, row)
            if keep is None or keep(doc):
                yield doc

    @_gc_paused
    def paginate(
        self,
        num_items: int,
        cursor: str | None = None,
        *,
        end_cursor: str | None = None,
        maximum_rows_read: int = DEFAULT_MAXIMUM_ROWS_READ,
    ) -> PaginationResult:
        """One page: ``num_items`` rows after ``cursor`` (``None``: from the start), as a typed frame.

        Pass the result's ``continue_cursor`` to get the next page; no row repeats and none is skipped, even
        with writes in between, except a document whose index key a patch moves across the cursor between
        two pages (seen twice or not at all, as in Convex; see :mod:`zapnb.pagination`).
        ``end_cursor`` makes the page run exactly up to that cursor (``num_items``
        is then not used). A page stops early when it has examined ``maximum_rows_read`` documents (a
        filter rejecting most of them); see :class:`~zapnb.pagination.PaginationResult` for
        ``page_status`` and ``split_cursor``. A cursor from another query raises
        :class:`~zapnb.errors.InvalidCursorError`.
        """
        check_page_arguments(num_items, maximum_rows_read, end_cursor)
        tx, plan, source = self._start()
        reverse, query_print = self._order == "desc", plan.fingerprint(self.table, self._order, self._filters)
        bounds, start, end = cursor_bounds(plan.keys, query_print, cursor, end_cursor, reverse)
        limit = None if end_cursor is not None else num_items
        read = self._read(source, plan, bounds, limit, maximum_rows_read)
        self._record(tx, plan, bounds, read)
        self._warn(plan, read, stacklevel=4)
        stopped = not read.exhausted and (limit is None or len(read.rows) < limit)
        status: PageStatus = None
        if stopped:
            status = "SplitRequired" if end_cursor is not None else "SplitRecommended"
        elif read.scanned > maximum_rows_read // 2:
            status = "SplitRecommended"
        position = end if end_cursor is not None else (read.last if read.last is not None else start)
        return PaginationResult(
            page=self._frame(source, plan, read.rows),
            is_done=read.exhausted and end_cursor is None,
            continue_cursor=make_cursor(query_print, position),
            split_cursor=None if status is None else make_cursor(query_print, read.middle or start),
            page_status=status,
        )

    @_gc_paused
    def explain(self) -> Explain:
        """Run the query (as ``collect()`` does) and say how: index, range, order, documents read/returned."""
        _source, plan, read = self._run()
        return Explain(
            table=self.table,
            index=plan.spec.name,
            index_fields=(*plan.spec.fields, "_creationTime") if plan.spec.kind != "by_id" else ("_id",),
            range=plan.keys.describe(),
            order=self._order,
            filters=tuple(repr(expr) for expr in self._filters),
            scanned=read.scanned,
            returned=len(read.rows),
            advice=self._advice(plan, read),
        )

    def __repr__(self) -> str:
        text = f"query({self.table!r})"
        if self._index is not None:
            text += f".with_index({self._index!r}, lambda q: {self._range!r})"
        if self._order != "asc":
            text += f".order({self._order!r})"
        return text + "".join(f".filter(lambda q: q.{expr!r})" for expr in self._filters)


def _all_of(checks: list[Callable[[Mapping[str, Any]], bool]]) -> Callable[[Mapping[str, Any]], bool]:
    def keep(doc: Mapping[str, Any]) -> bool:
        return all(check(doc) for check in checks)

    return keep
