"""Reading one index range inside a transaction: the snapshot's entries merged with the transaction's writes.

Responsibilities:

- :func:`rows`: the rows of an index range ``[lo, hi)`` in key order (or reversed), as a transaction sees
  them: the entries visible at its snapshot, without the documents it has since rewritten or deleted, plus
  the documents it wrote whose new keys fall in the range;
- :func:`count`: how many rows :func:`rows` would yield, from the index's counts (no document is visited);
- :func:`document`: a row's document.

A row of the table's checkpoint base keeps its position and no document, so that frames can gather it from
the base in bulk (:mod:`zapnb.frames`); a document rewritten since the base (with an unchanged key) is read
from the table's overlay, its ID taken from the end of its index key.

Examples
--------
>>> from zapnb.index import IndexSpec
>>> spec = IndexSpec.by_creation_time()
>>> doc = {"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "_creationTime": 1.0}
>>> source = Source("notes", None, spec, 0, [(doc["_id"], doc)])
>>> [row.doc for row in rows(source, None, None)] == [doc], count(source, None, None)
(True, 1)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from zapnb.index import Entry, IndexSpec
    from zapnb.tablestate import TableState
    from zapnb.transaction import Transaction

__all__ = [
    "Row",
    "RowArrays",
    "Source",
    "base_prefix",
    "count",
    "doc_id_of_key",
    "document",
    "pending_writes",
    "row_arrays",
    "rows",
]

Document = Mapping[str, Any]
Int64s: TypeAlias = "npt.NDArray[np.int64]"


class Row(NamedTuple):
    """One row of a range: its index key, its row in the table base (-1 if none) and its document if known.

    Read the document as ``row[2]``: a base row may be the index's own ``Entry`` (same shape, other names).
    """

    key: bytes
    position: int
    doc: Document | None


@dataclass(frozen=True, slots=True)
class Source:
    """What a query reads: a table's state at snapshot ``lsn``, one of its indexes, and the reading
    transaction's own writes to the table (``(id, document or None)``, in write order)."""

    table: str
    state: TableState | None
    spec: IndexSpec
    lsn: int
    pending: Sequence[tuple[str, Document | None]]


def pending_writes(tx: Transaction, table: str) -> list[tuple[str, Document | None]]:
    """The transaction's writes to ``table`` so far (a deletion is ``None``)."""
    return [(write.id, write.doc) for write in tx.writes if write.table == table]


def doc_id_of_key(key: bytes) -> str:
    """The document ID an index key ends with (IDs are base32 text: no byte of theirs is a string tag).

    Examples
    --------
    >>> from zapnb.keys import encode_key
    >>> doc_id_of_key(encode_key(["a", 1.5, "jx73xh1f86gz7s9zgchp6wzbed7ec7aj"]))
    'jx73xh1f86gz7s9zgchp6wzbed7ec7aj'
    """
    return key[key.rindex(7) + 1 : -1].decode()


def _version(history: Sequence[tuple[int, Document | None]], lsn: int) -> Document | None:
    """The newest version written at or before ``lsn`` that is a document (as ``TableState`` reads it)."""
    for version_lsn, doc in reversed(history):
        if version_lsn <= lsn and doc is not None:
            return doc
    return None


def _snapshot_rows(source: Source, lo: bytes | None, hi: bytes | None, reverse: bool) -> Iterator[Row]:
    state = source.state
    if state is None or source.spec.name not in state.indexes:
        return iter(())
    data = state.indexes[source.spec.name][1]
    entries = data.scan(lo, hi, snapshot=source.lsn, reverse=reverse)
    if not state.overlay and not data.delta_count:
        # Nothing written since the base (a commit applied meanwhile is newer than the snapshot): every entry
        # is a base row, and an index entry (key, position, None) already has a row's shape.
        return cast("Iterator[Row]", entries)
    return _resolved(state, entries, source.lsn)


def _resolved(state: TableState, entries: Iterator[Entry], lsn: int) -> Iterator[Row]:
    """Index entries as rows, each document rewritten since the base read from the overlay."""
    overlay = state.overlay
    for key, position, doc_id in entries:
        if doc_id is None:
            history = overlay.get(doc_id_of_key(key)) if overlay else None
            doc = _version(history, lsn) if history else None
            yield Row(key, position, None) if doc is None else Row(key, -1, doc)
        else:
            row, doc = _added(state, doc_id, lsn)
            yield Row(key, row, doc)


def _added(state: TableState, doc_id: str, lsn: int) -> tuple[int, Document | None]:
    """An index entry added since the base, as (row in the table base, document): ``(-1, version)`` for a
    document written since; ``(row, None)`` for an entry of an index built since the base, for a document of
    the base."""
    doc = _version(state.overlay.get(doc_id, ()), lsn)
    return (state.base_position(doc_id), None) if doc is None else (-1, doc)


def _own_writes(
    source: Source, lo: bytes | None, hi: bytes | None, reverse: bool
) -> tuple[set[bytes], list[Row]]:
    """The snapshot keys the transaction's writes replaced, and its written rows in the range, sorted."""
    hidden: set[bytes] = set()
    added: list[Row] = []
    for doc_id, new in source.pending:
        old = None if source.state is None else source.state.get(doc_id, source.lsn)
        if old is not None:
            hidden.add(source.spec.key_for(old))
        if new is not None:
            key = source.spec.key_for(new)
            if (lo is None or key >= lo) and (hi is None or key < hi):
                added.append(Row(key, -1, new))
    added.sort(key=lambda row: row.key, reverse=reverse)
    return hidden, added


def rows(source: Source, lo: bytes | None, hi: bytes | None, *, reverse: bool = False) -> Iterator[Row]:
    """The rows of the index range ``[lo, hi)`` as the transaction sees them, in key order (or reversed).

    Lazy: taking the first ``n`` reads about ``n`` index entries.
    """
    snapshot = _snapshot_rows(source, lo, hi, reverse)
    if not source.pending:
        return snapshot
    hidden, added = _own_writes(source, lo, hi, reverse)
    return _merge(snapshot, hidden, added, reverse)


def _merge(snapshot: Iterator[Row], hidden: set[bytes], added: list[Row], reverse: bool) -> Iterator[Row]:
    i = 0
    for row in snapshot:
        if row.key in hidden:
            continue
        while i < len(added) and ((added[i].key > row.key) if reverse else (added[i].key < row.key)):
            yield added[i]
            i += 1
        yield row
    yield from added[i:]


@dataclass(frozen=True, slots=True)
class RowArrays:
    """A whole range at once: ``rows[k]`` is the table-base row of the ``k``-th row, or -1 when its
    document is ``docs[k]`` (written since the base)."""

    rows: Int64s
    docs: dict[int, Document]


def row_arrays(
    source: Source, lo: bytes | None, hi: bytes | None, *, reverse: bool = False
) -> RowArrays | None:
    """The rows :func:`rows` yields, as arrays (vectorised: for reading long ranges whole).

    ``None`` when the transaction has written to the table (read those ranges with :func:`rows`).
    """
    import numpy as np

    if source.pending:
        return None
    state = source.state
    if state is None or source.spec.name not in state.indexes:
        return RowArrays(np.empty(0, np.int64), {})
    ranged = state.indexes[source.spec.name][1].range_rows(lo, hi, snapshot=source.lsn)
    if reverse:
        ranged = ranged.reversed()
    rows, docs = ranged.rows, {}
    if ranged.added or state.overlay:
        rows = rows.copy()
    for k, doc_id in ranged.added.items():
        rows[k], doc = _added(state, doc_id, source.lsn)
        if doc is not None:
            docs[k] = doc
    if state.overlay:
        _rewritten(state, source.lsn, rows, docs)
    return RowArrays(rows, docs)


def base_prefix(
    source: Source, lo: bytes | None, hi: bytes | None, limit: int, *, reverse: bool = False
) -> tuple[Int64s, bytes | None] | None:
    """The first ``limit`` rows :func:`rows` yields, as table-base rows, with the key of the last one, when
    nothing was written to the table since its base (and the transaction wrote nothing to it); else
    ``None`` (read them with :func:`rows`)."""
    state = source.state
    if source.pending or state is None or state.overlay or source.spec.name not in state.indexes:
        return None
    data = state.indexes[source.spec.name][1]
    return data.base_prefix(lo, hi, snapshot=source.lsn, limit=limit, reverse=reverse)


def _rewritten(state: TableState, lsn: int, rows: Int64s, docs: dict[int, Document]) -> None:
    """Move the base rows whose documents were rewritten by ``lsn`` (keys unchanged) into ``docs``."""
    import numpy as np

    newer: dict[int, Document] = {}
    for doc_id, history in list(state.overlay.items()):  # one step: the writer may add to it meanwhile
        doc = _version(history, lsn)
        if doc is not None and (position := state.base_position(doc_id)) >= 0:
            newer[position] = doc
    if not newer:
        return
    hits = np.flatnonzero(np.isin(rows, np.fromiter(newer, np.int64, len(newer))))
    for k in hits.tolist():
        docs[k] = newer[int(rows[k])]
        rows[k] = -1


def count(source: Source, lo: bytes | None, hi: bytes | None) -> int:
    """How many rows :func:`rows` yields for ``[lo, hi)``, from index counts (no document is visited)."""
    state = source.state
    total = 0
    if state is not None and source.spec.name in state.indexes:
        total = state.indexes[source.spec.name][1].count(lo, hi, snapshot=source.lsn)
    for doc_id, new in source.pending:
        old = None if state is None else state.get(doc_id, source.lsn)
        for doc, step in ((old, -1), (new, 1)):
            if doc is not None:
                key = source.spec.key_for(doc)
                if (lo is None or key >= lo) and (hi is None or key < hi):
                    total += step
    return total


def document(source: Source, row: Row) -> Document:
    """The document of a row (read from the table base when the row has none yet)."""
    doc = row[2]  # by position: a base row may be the index's own entry, whose third item is also None
    if doc is not None:
        return doc
    assert source.state is not None
    return source.state.read_row(row.position)
