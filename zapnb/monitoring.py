"""The run log: one record per ``db.run(...)`` of a query or mutation, readable as a Polars frame.

Responsibilities: count what a run reads and writes (:class:`RunCounts`, :class:`CountedQuery`); hold the
last :data:`RUN_LOG_SIZE` run records of a database in memory (older ones drop off the front) and turn them
into a typed frame for ``db.logs()``. Appending takes a small lock for a moment; nothing else is locked,
and the run itself never waits on it.

The log lives in memory only: it starts empty in every process and is shared by every view of one
connection (``db.as_user(...)``).

Examples
--------
>>> from zapnb.monitoring import RunLog, RunRecord
>>> log = RunLog(size=2)
>>> for name in ["a", "b", "c"]:
...     log.append(RunRecord(name, "query", 1.7e9, 0.5, 1, 40, 0, 0, "success", 1, None, None))
>>> log.frame()["function"].to_list()
['b', 'c']
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from zapnb.documents import document_size, value_size
from zapnb.pagination import DEFAULT_MAXIMUM_ROWS_READ

if TYPE_CHECKING:
    import polars as pl

    from zapnb.filters import FilterBuilder
    from zapnb.pagination import PaginationResult
    from zapnb.queries import Explain, Query
    from zapnb.ranges import IndexRangeBuilder
    from zapnb.transaction import Transaction

__all__ = ["RUN_LOG_SIZE", "CountedQuery", "Outcome", "RunCounts", "RunLog", "RunRecord", "log_schema"]

#: How many runs ``db.logs()`` keeps (the most recent ones).
RUN_LOG_SIZE: Final = 10_000
#: The longest error message kept in a record; longer ones are cut.
MAX_MESSAGE: Final = 2_000

Outcome = Literal["success", "error", "conflict"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a function: what it was, when, how long, what it read and wrote, and how it ended.

    ``documents_read``/``bytes_read`` count what the function read through ``ctx.db`` over all its
    attempts; ``documents_written``/``bytes_written`` what its committed attempt wrote (zero when it
    failed). ``attempts`` is how many times the handler ran (0 when its arguments were refused).
    """

    function: str
    kind: str
    started_at: float  # seconds since the epoch
    duration_ms: float
    documents_read: int
    bytes_read: int
    documents_written: int
    bytes_written: int
    outcome: Outcome
    attempts: int
    error_type: str | None
    error_message: str | None


def log_schema() -> dict[str, pl.DataType]:
    """The columns of ``db.logs()`` and their dtypes.

    Examples
    --------
    >>> list(log_schema())[:4]
    ['function', 'kind', 'started_at', 'duration_ms']
    """
    import polars as pl

    return {
        "function": pl.String(),
        "kind": pl.Enum(["query", "mutation"]),
        "started_at": pl.Datetime("us", "UTC"),
        "duration_ms": pl.Float64(),
        "documents_read": pl.Int64(),
        "bytes_read": pl.Int64(),
        "documents_written": pl.Int64(),
        "bytes_written": pl.Int64(),
        "outcome": pl.Enum(["success", "error", "conflict"]),
        "attempts": pl.Int64(),
        "error_type": pl.String(),
        "error_message": pl.String(),
    }


class RunCounts:
    """What one run read and wrote, counted as it goes (by the thread that runs it).

    Bytes are sizes by Convex's rules (:func:`zapnb.documents.value_size`) for documents, and the in-memory
    size (``estimated_size()``) for frames, which are not measured document by document.
    """

    __slots__ = ("attempts", "bytes_read", "bytes_written", "documents_read", "documents_written")

    def __init__(self) -> None:
        self.attempts = self.documents_read = self.bytes_read = 0
        self.documents_written = self.bytes_written = 0

    def document(self, doc: dict[str, Any]) -> None:
        """Count one document read."""
        self.documents_read += 1
        self.bytes_read += value_size(doc)

    def frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Count the rows of a frame a query returned, and hand it back."""
        self.documents_read += frame.height
        self.bytes_read += int(frame.estimated_size())
        return frame

    def documents(self, documents: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Count the documents of an iterator as they are taken from it."""
        for doc in documents:
            self.document(doc)
            yield doc

    def wrote(self, tx: Transaction) -> None:
        """Count the documents a committed transaction wrote (a deletion counts as a document of 0 bytes)."""
        writes = tx.writes  # the committed writes: one per document, in write order
        self.documents_written += len(writes)
        self.bytes_written += sum(document_size(dict(w.doc)) for w in writes if w.doc is not None)


class CountedQuery:
    """``ctx.db.query(...)`` in a function: a :class:`~zapnb.queries.Query` whose results count as read.

    It offers the query's methods and returns what they return; building methods return counted queries.
    What counts: the documents a terminal returns (``first``, ``unique``, iteration, the rows of
    ``collect``, ``take`` and a ``paginate`` page), not the documents a filter examined and rejected, and
    nothing for ``count()`` and ``explain()``.
    """

    __slots__ = ("_counts", "_query")

    def __init__(self, query: Query, counts: RunCounts) -> None:
        self._query = query
        self._counts = counts

    @property
    def table(self) -> str:
        """The table queried."""
        return self._query.table

    @property
    def index(self) -> str:
        """The index read."""
        return self._query.index

    def with_index(
        self, name: str, range: Callable[[IndexRangeBuilder], IndexRangeBuilder] | None = None
    ) -> CountedQuery:
        """See :meth:`zapnb.queries.Query.with_index`."""
        return CountedQuery(self._query.with_index(name, range), self._counts)

    def order(self, order: Literal["asc", "desc"]) -> CountedQuery:
        """See :meth:`zapnb.queries.Query.order`."""
        return CountedQuery(self._query.order(order), self._counts)

    def filter(self, predicate: Callable[[FilterBuilder], Any]) -> CountedQuery:
        """See :meth:`zapnb.queries.Query.filter`."""
        return CountedQuery(self._query.filter(predicate), self._counts)

    def collect(self) -> pl.DataFrame:
        """See :meth:`zapnb.queries.Query.collect`."""
        return self._counts.frame(self._query.collect())

    def take(self, n: int) -> pl.DataFrame:
        """See :meth:`zapnb.queries.Query.take`."""
        return self._counts.frame(self._query.take(n))

    def first(self) -> dict[str, Any] | None:
        """See :meth:`zapnb.queries.Query.first`."""
        return self._one(self._query.first())

    def unique(self) -> dict[str, Any] | None:
        """See :meth:`zapnb.queries.Query.unique`."""
        return self._one(self._query.unique())

    def count(self) -> int:
        """See :meth:`zapnb.queries.Query.count`."""
        return self._query.count()

    def paginate(
        self,
        num_items: int,
        cursor: str | None = None,
        *,
        end_cursor: str | None = None,
        maximum_rows_read: int = DEFAULT_MAXIMUM_ROWS_READ,
    ) -> PaginationResult:
        """See :meth:`zapnb.queries.Query.paginate`."""
        result = self._query.paginate(
            num_items, cursor, end_cursor=end_cursor, maximum_rows_read=maximum_rows_read
        )
        self._counts.frame(result.page)
        return result

    def explain(self) -> Explain:
        """See :meth:`zapnb.queries.Query.explain`."""
        return self._query.explain()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._counts.documents(self._query)

    def _one(self, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        if doc is not None:
            self._counts.document(doc)
        return doc

    def __repr__(self) -> str:
        return repr(self._query)


class RunLog:
    """A bounded, thread-safe ring of :class:`RunRecord`, oldest first.

    Parameters
    ----------
    size:
        How many records it keeps; appending to a full log drops the oldest.
    """

    def __init__(self, size: int = RUN_LOG_SIZE) -> None:
        self._records: collections.deque[RunRecord] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, record: RunRecord) -> None:
        """Add a record (dropping the oldest when full)."""
        with self._lock:
            self._records.append(record)

    def records(self) -> list[RunRecord]:
        """The records, oldest first."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def frame(self) -> pl.DataFrame:
        """The records as a typed frame with the columns of :func:`log_schema`, oldest first."""
        import polars as pl

        schema = log_schema()
        records = self.records()
        data = {name: [getattr(record, name) for record in records] for name in schema}
        data["started_at"] = [round(record.started_at * 1_000_000) for record in records]
        raw = {**schema, "started_at": pl.Int64(), "kind": pl.String(), "outcome": pl.String()}
        return pl.DataFrame(data, schema=raw).with_columns(
            pl.col(name).cast(schema[name]) for name in ("started_at", "kind", "outcome")
        )

    def __repr__(self) -> str:
        return f"<zapnb.RunLog {len(self)} runs (keeps {self._records.maxlen})>"
