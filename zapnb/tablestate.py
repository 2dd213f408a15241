"""One table's documents and indexes in memory, readable at any snapshot LSN.

Responsibilities:

- hold the table's *base* (its documents as of the last checkpoint, read through a row reader over the
  memory-mapped base file) and its *overlay* (every version written since, with the LSN that wrote it);
- take a bulk insert as a columnar *batch* (:meth:`TableState.apply_bulk`): its Arrow rows are appended to
  the base in memory, and each index gets their keys as one sorted run, visible from the insert's LSN on
  (so rows past the checkpoint's are reached only through index entries of snapshots that may see them);
- keep every index of the table current as commits are applied, and yield the :class:`~zapnb.changes.Change`
  each write made (old and new document, the index keys it moved), or the
  :class:`~zapnb.changes.BulkChange` of a batch;
- answer "this document at snapshot S" and "this index range at snapshot S".

One thread applies commits (in LSN order, under the engine's apply lock) while any number of threads read at
snapshots at or below the last applied LSN. A checkpoint replaces the whole object: readers that hold the old
one keep a consistent view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from zapnb.changes import BulkChange, Change, Write
from zapnb.columnkeys import sorted_table_keys
from zapnb.documents import result_document
from zapnb.index import Entry, IndexData, IndexSpec
from zapnb.indexbase import SortedKeys
from zapnb.indexspec import system_key_parts
from zapnb.keys import encode_key

if TYPE_CHECKING:
    import pyarrow as pa

    from zapnb.layout import Layout

__all__ = ["Batch", "SortedRows", "TableState"]

Document = Mapping[str, Any]
RowReader = Callable[[int], dict[str, Any]]
SortedRows = tuple[SortedKeys, npt.NDArray[np.int64]]
"""An index's keys of a batch, sorted, and the row of each within the batch."""


class Batch(NamedTuple):
    """A bulk insert applied at ``lsn``: rows ``start`` to ``start + len(rows) - 1`` of the table's base, in
    ``layout``, and each index's keys of them."""

    lsn: int
    start: int
    rows: pa.Table
    layout: Layout
    keys: Mapping[str, SortedRows]


def _no_rows(position: int) -> dict[str, Any]:
    raise IndexError(f"the table base has no row {position}")


@dataclass
class TableState:
    """A table's documents and indexes at every snapshot from ``base_lsn`` on.

    Attributes
    ----------
    name, number:
        The table's name and number (the number is encoded in its document IDs).
    base_lsn:
        The checkpoint LSN the base holds; every overlay version and batch is newer.
    base_rows:
        The number of rows in the base: the checkpoint's, then those of the batches applied since.
    batches:
        The bulk inserts applied since the checkpoint, in LSN order.
    rebuilt:
        The state was rebuilt because its checkpoint files are damaged: the next checkpoint writes them anew
        even if nothing changed.
    """

    name: str
    number: int
    indexes: dict[str, tuple[IndexSpec, IndexData]]
    base_lsn: int = 0
    base_rows: int = 0
    read_row: RowReader = _no_rows
    base: Any = None  # the base as an Arrow table (memory-mapped, then the batches), when there is one
    batches: list[Batch] = field(default_factory=list)
    rebuilt: bool = False

    def __post_init__(self) -> None:
        self.overlay: dict[str, list[tuple[int, Document | None]]] = {}

    # --- reading --------------------------------------------------------------------------------------------

    def get(self, doc_id: str, snapshot: int) -> Document | None:
        """The document with this ID as of ``snapshot``, or ``None``."""
        versions = self.overlay.get(doc_id)
        if versions:
            for lsn, doc in reversed(versions):
                if lsn <= snapshot:
                    return doc
        return self._base_document(doc_id, snapshot)

    def get_copy(self, doc_id: str, snapshot: int) -> dict[str, Any] | None:
        """:meth:`get`, as a document the caller owns (:func:`~zapnb.documents.result_document`): an overlay
        version is copied, a base row is read afresh (and labelled as it is read)."""
        if doc_id not in self.overlay:
            return self._base_document(doc_id, snapshot)
        doc = self.get(doc_id, snapshot)
        return None if doc is None else result_document(self.name, doc)

    def _base_document(self, doc_id: str, snapshot: int) -> dict[str, Any] | None:
        """The document's row in the base, read afresh, or ``None`` if the base does not hold it."""
        position = self.base_position(doc_id, snapshot)
        return None if position < 0 else self.read_row(position)

    def base_position(self, doc_id: str, snapshot: int | None = None) -> int:
        """The row of this document in the base (a batch's row only if applied at or before ``snapshot``),
        or -1 if the base does not hold it. A row stays the document's after it is rewritten or deleted."""
        if not self.base_rows:
            return -1
        return self.indexes["by_id"][1].row_of(encode_key([doc_id]), snapshot)

    def scan(
        self, index: str, lo: bytes | None, hi: bytes | None, snapshot: int, *, reverse: bool = False
    ) -> Iterator[Document]:
        """The documents of an index range ``[lo, hi)`` at ``snapshot``, in index order."""
        _spec, data = self.indexes[index]
        for entry in data.scan(lo, hi, snapshot=snapshot, reverse=reverse):
            yield self._document_at(entry, snapshot)

    def _document_at(self, entry: Entry, snapshot: int) -> Document:
        doc_id = entry.doc_id
        if doc_id is None:  # a base entry: its key is unchanged, but the document may have been rewritten
            if not self.overlay:
                return self.read_row(entry.position)
            doc_id = self._base_id(entry.position)
        for lsn, doc in reversed(self.overlay.get(doc_id, ())):
            if lsn <= snapshot and doc is not None:
                return doc
        # a base document: a base entry, or a delta entry of an index built since the base (deploy)
        return self.read_row(entry.position if entry.position >= 0 else self.base_position(doc_id))

    def _base_id(self, position: int) -> str:
        if self.base is not None:
            return str(self.base.column("_id")[position].as_py())
        return str(self.read_row(position)["_id"])

    def count(self, snapshot: int) -> int:
        """How many documents the table holds at ``snapshot`` (an index count: no document is visited)."""
        return self.indexes["by_id"][1].count(None, None, snapshot=snapshot)

    # --- writing --------------------------------------------------------------------------------------------

    def apply(self, lsn: int, write: Write) -> Change:
        """Apply one write of the commit at ``lsn``; return what it changed."""
        return self.apply_many(lsn, [write])[0]

    def apply_many(
        self, lsn: int, writes: Sequence[Write], known: Mapping[str, Document | None] | None = None
    ) -> list[Change]:
        """Apply a commit's writes to this table (each document at most once); return what each changed.

        Each index receives the commit's key changes in one call, so a large commit costs one bulk update per
        index rather than one per document. ``known`` may give documents as they are just before ``lsn``
        (what the committing transaction read, unchanged since), so they need not be looked up again. A key
        is computed once when the fields it is made of are the same before and after.
        """
        if known:
            olds = [known[w.id] if w.id in known else self.get(w.id, lsn) for w in writes]
        else:
            olds = [self.get(write.id, lsn) for write in writes]
        touched: list[list[tuple[str, bytes]]] = [[] for _ in writes]
        # every key of a document ends with its encoded system fields: encode them once per document
        old_parts = [None if old is None else system_key_parts(old) for old in olds]
        new_parts = [None if w.doc is None else system_key_parts(w.doc) for w in writes]
        for name, (spec, data) in self.indexes.items():
            removed: list[bytes] = []
            added: list[tuple[bytes, str]] = []
            fields = spec.key_fields
            columns = zip(writes, olds, touched, old_parts, new_parts, strict=True)
            for write, old, keys, old_part, new_part in columns:
                new = write.doc
                old_key = None if old is None or old_part is None else spec.key_from(old, old_part)
                if new is None or new_part is None:
                    new_key = None
                elif old is not None and _same_fields(old, new, fields):
                    new_key = old_key
                else:
                    new_key = spec.key_from(new, new_part)
                if old_key is not None:
                    keys.append((name, old_key))
                if new_key is not None and new_key != old_key:
                    keys.append((name, new_key))
                if old_key != new_key:
                    if old_key is not None:
                        removed.append(old_key)
                    if new_key is not None:
                        added.append((new_key, write.id))
            if removed or added:
                # the by_id index is searched for every added ID; the others need not be (Delta.apply)
                data.apply(lsn, removed, added, search_added=spec.kind == "by_id")
        for write in writes:
            self.overlay.setdefault(write.id, []).append((lsn, write.doc))
        return [
            Change(write.table, write.id, old, write.doc, tuple(keys))
            for write, old, keys in zip(writes, olds, touched, strict=True)
        ]

    def accepts(self, rows: pa.Table) -> bool:
        """Whether a batch of ``rows`` can be appended to the base (it is empty, or in the same layout)."""
        if self.base is None:
            return not self.base_rows
        return bool(self.base.schema.equals(rows.schema, check_metadata=True))

    def apply_bulk(
        self, lsn: int, rows: pa.Table, layout: Layout, keys: Mapping[str, SortedRows] | None = None
    ) -> BulkChange:
        """Apply a commit's bulk insert of ``rows`` (new documents, in ``layout``); return what it changed.

        The rows are appended to the base (:meth:`accepts` must hold); each index gets their keys as one
        sorted run, from ``keys`` when it has them for that index (computed beforehand) or computed here.
        """
        start = self.base_rows
        base = rows if self.base is None else _concat(self.base, rows)
        made = {}
        for name, (spec, _data) in self.indexes.items():
            made[name] = (
                keys[name] if keys is not None and name in keys else sorted_table_keys(spec, layout, rows)
            )
        self.base, self.read_row = base, layout.row_reader(base)
        self.base_rows = start + rows.num_rows
        for name, (_spec, data) in self.indexes.items():
            data.apply_run(lsn, made[name][0], start + made[name][1])
        self.batches.append(Batch(lsn, start, rows, layout, made))
        return BulkChange(
            self.name, rows.num_rows, {name: sorted_keys for name, (sorted_keys, _) in made.items()}
        )

    def changed_since_base(self) -> bool:
        """Whether any commit wrote to the table after its base."""
        return bool(self.overlay) or bool(self.batches)

    def frozen(self) -> TableState:
        """A copy whose overlay (documents and the list of their versions), batches and index list no longer
        change, except that versions newer than the copy's newest LSN may still be appended to the lists (call
        it under the engine's apply lock).

        The indexes themselves are shared: they serve readers at any snapshot up to the copy's newest LSN.
        """
        copy = TableState(
            self.name, self.number, dict(self.indexes), self.base_lsn, self.base_rows, self.read_row
        )
        copy.base, copy.rebuilt = self.base, self.rebuilt
        copy.batches = list(self.batches)
        # The histories are shared: they only ever grow, and a checkpoint reads each as of its LSN. Copying
        # them under the apply lock took 0.17 s for 60,000 documents, a pause every commit waited for.
        copy.overlay = dict(self.overlay)
        return copy

    def add_index(self, spec: IndexSpec, data: IndexData) -> None:
        """Start maintaining a newly built index (the caller brought it up to the last applied LSN).

        The index list is replaced, not changed in place: a thread going through it meanwhile (a commit
        listing the indexes its bulk keys are for, a checkpoint) keeps the one it started with.
        """
        self.indexes = {**self.indexes, spec.name: (spec, data)}

    def drop_index(self, name: str) -> None:
        """Stop maintaining an index (the index list is replaced, as by :meth:`add_index`)."""
        self.indexes = {key: value for key, value in self.indexes.items() if key != name}

    def documents(self, snapshot: int) -> Iterator[Document]:
        """Every document of the table at ``snapshot``, in ``by_creation_time`` order."""
        return self.scan("by_creation_time", None, None, snapshot)


_ABSENT: Final = object()


def _same_fields(old: Document, new: Document, fields: tuple[str, ...]) -> bool:
    """Whether the two documents hold the same values in ``fields`` (the same objects, or equal strings),
    so that their keys are equal. ``False`` may be wrong, never ``True``."""
    for name in fields:
        a, b = old.get(name, _ABSENT), new.get(name, _ABSENT)
        if a is not b and not (isinstance(a, str) and isinstance(b, str) and a == b):
            return False
    return True


def _concat(base: pa.Table, rows: pa.Table) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables([base, rows])
