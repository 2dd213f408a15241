"""Transactions: a snapshot, their own writes on top, and the read set that makes them serializable.

Responsibilities:

- read at one snapshot, seeing the transaction's own writes (``get``);
- check and buffer writes (``insert``, ``insert_many``, ``patch``, ``replace``, ``delete``): document rules,
  the schema's validators, and existence, so a bad write raises before anything is committed; a large
  ``insert_many`` is checked column by column where it can be and held as one columnar batch
  (:mod:`zapnb.bulk`);
- record what was read as index key ranges, and commit everything at once through the engine, which refuses
  the commit if a newer commit changed anything in those ranges.

Every write of zapnb, from ``db.insert`` to a bulk import, goes through :meth:`Transaction.commit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

from zapnb.bulk import (
    PendingBulk,
    batch_from_documents,
    batch_from_frame,
    check_frame,
    frame_of,
    frame_rows,
    in_row,
    paused_gc,
)
from zapnb.changes import ReadRange, Write
from zapnb.documents import check_document, result_document
from zapnb.engine import Engine, Snapshot, next_table_number
from zapnb.errors import (
    ClosedError,
    InvalidIdError,
    InvalidValueError,
    NonexistentDocumentError,
    SchemaValidationError,
)
from zapnb.ids import Id, new_ids, table_number_for_lookup
from zapnb.keys import encode_key, encode_value, prefix_end
from zapnb.layout import Layout
from zapnb.schema import stored_definition, table_definition
from zapnb.schema_rules import check_table_name
from zapnb.values import MISSING, UNSET

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from zapnb.queries import Query
    from zapnb.schema import TableDefinition

__all__ = ["BULK_ROWS", "Rows", "Transaction", "check_rows", "read_by_id"]

BULK_ROWS = 1000
"""An ``insert_many`` of at least this many rows is committed as a columnar batch (see :mod:`zapnb.bulk`)."""

Document = dict[str, Any]
Rows: TypeAlias = "Iterable[Mapping[str, Any]] | pl.DataFrame | pa.Table"
"""What ``insert_many`` takes: dicts, a Polars frame or an Arrow table (or record batch)."""


class Transaction:
    """Reads at one snapshot plus this transaction's writes; commits all of them or none.

    Use it as ``with db.transaction() as tx:``; the block commits when it ends without an exception and
    discards every write when it raises.
    """

    def __init__(self, engine: Engine, snapshot: Snapshot | None = None) -> None:
        self._engine = engine
        self.snapshot = snapshot or engine.snapshot()
        self._writes: dict[str, Write] = {}
        self._bulk = PendingBulk()
        self._reads: list[ReadRange] = []
        # by ID at the snapshot, as stored: what was read, and None for the IDs this transaction made
        self._seen: dict[str, Mapping[str, Any] | None] = {}
        self._new_tables: dict[str, int] = {}
        self._done = False
        self.commit_lsn: int | None = None

    # --- reading --------------------------------------------------------------------------------------------

    def get(self, doc_id: str) -> Document | None:
        """The document with this ID, or ``None`` (also for a string that is not an ID of any table)."""
        self._check_open()
        table = self._table_of(doc_id)
        if table is None:
            return None
        return self._read(table, str(doc_id))

    def normalize_id(self, table: str, text: str) -> Id | None:
        """``text`` as an :class:`~zapnb.Id` of ``table``, or ``None`` if it is not an ID of that table."""
        try:
            decoded = Id.decode(text)
        except InvalidIdError:
            return None
        number = self._numbers().get(table)
        return Id(text, table=table) if number == decoded.table_number else None

    def query(self, table: str) -> Query:
        """A query of ``table`` reading this transaction's snapshot and its own writes (``zapnb.query``)."""
        from zapnb.queries import Query

        self._check_open()
        return Query(self, table)

    @property
    def writes(self) -> tuple[Write, ...]:
        """The writes so far, one per document (its latest), in the order the documents were first written;
        then the documents inserted in bulk (large ``insert_many`` calls), in the order of their inserts."""
        return (*self._writes.values(), *self._bulk.writes()) if self._bulk else tuple(self._writes.values())

    @property
    def reads(self) -> tuple[ReadRange, ...]:
        """The read set so far: every index range read (what a conflict check and a watched query test)."""
        return tuple(self._reads)

    def record_read(self, read: ReadRange) -> None:
        """Add an index range to the read set (queries call this with the ranges they scanned)."""
        self._reads.append(read)

    def _read(self, table: str, doc_id: str) -> Document | None:
        """The document as this transaction sees it (a copy the caller owns), recording the read."""
        doc = self._stored(table, doc_id)
        return None if doc is None else result_document(table, doc)

    def _stored(self, table: str, doc_id: str) -> Mapping[str, Any] | None:
        """The stored document as this transaction sees it, recording the read: for writes, which build
        a new document and never change this one."""
        key = encode_key([doc_id])
        self._reads.append(ReadRange(table, "by_id", key, prefix_end(key)))
        if doc_id in self._writes:
            doc = self._writes[doc_id].doc
        elif self._bulk and doc_id in self._bulk:
            doc = self._bulk.get(doc_id)
        else:
            state = self.snapshot.tables.get(table)
            doc = None if state is None else state.get(doc_id, self.snapshot.lsn)
            self._seen[doc_id] = doc
        return doc

    # --- writing --------------------------------------------------------------------------------------------

    def insert(self, table: str, doc: Mapping[str, Any]) -> Id:
        """Insert a document; return its new ID."""
        self._check_open()
        check_table_name(table)
        return self._insert_documents(table, [self._checked(table, _document(doc, "insert"))])[0]

    def insert_many(self, table: str, rows: Rows) -> list[Id]:
        """Insert several documents; return their IDs in order.

        ``rows`` is an iterable of dicts, a Polars frame or an Arrow table (a null in the column of an
        optional field is a missing field). A frame of a table whose fields are all scalars is checked
        column by column; any other rows one by one, with the same errors, which name the row (``[3]``).
        """
        self._check_open()
        check_table_name(table)
        check_rows(rows)
        with paused_gc():
            return self._insert_rows(table, rows)

    def _insert_rows(self, table: str, rows: Rows) -> list[Id]:
        frame = frame_of(rows)
        definition = self._definition(table)
        if frame is not None:
            columns = check_frame(frame, definition, table, self._numbers(), partial(self._checked, table))
            if columns is not None:
                return self._insert_columns(table, columns)
            rows = frame_rows(frame, self._declared_definition(table))
        return self._insert_documents(
            table, [self._checked(table, _row(row, i), i) for i, row in enumerate(rows)]
        )

    def _insert_documents(self, table: str, docs: list[Document]) -> list[Id]:
        ids = new_ids(self._table_number(table), len(docs), table=table)
        if len(docs) >= BULK_ROWS:
            times = self._engine.creation_times(len(docs)).tolist()
            stored = [{"_id": i, "_creationTime": t, **d} for i, t, d in zip(ids, times, docs, strict=True)]
            try:
                self._bulk.add(batch_from_documents(table, self._layout(table), stored, ids))
                return ids
            except InvalidValueError:  # unchecked documents that do not fit the typed columns: one by one
                pass
        for doc_id, doc in zip(ids, docs, strict=True):
            stored_doc = {"_id": doc_id, "_creationTime": self._engine.creation_time(), **doc}
            self._writes[doc_id] = Write(table, doc_id, stored_doc)
            self._seen[doc_id] = None  # a new ID: applying the commit need not look it up
        return ids

    def _insert_columns(self, table: str, columns: pl.DataFrame) -> list[Id]:
        ids = new_ids(self._table_number(table), columns.height, table=table)
        times = self._engine.creation_times(columns.height)
        batch = batch_from_frame(table, self._layout(table), columns, ids, times)
        if columns.height >= BULK_ROWS:
            self._bulk.add(batch)
            return ids
        for doc in batch.layout.to_documents(batch.rows):
            self._writes[doc["_id"]] = Write(table, doc["_id"], doc)
            self._seen[doc["_id"]] = None
        return ids

    def patch(self, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Shallow-merge ``fields`` into a document (``zapnb.UNSET`` removes a field).

        A patch that changes nothing records no write.
        """
        fields = _document(fields, "patch")
        table, current = self._existing(doc_id, "Update")
        merged = {k: v for k, v in current.items() if k not in fields}
        merged.update({k: v for k, v in fields.items() if v is not UNSET})
        user = {k: v for k, v in merged.items() if k not in ("_id", "_creationTime")}
        for name in fields:
            if name in ("_id", "_creationTime") and fields[name] != current.get(name):
                raise _system_field_error(table, name)
        self._put(table, current, self._checked(table, user))

    def replace(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Replace a document's fields, keeping its ``_id`` and ``_creationTime``."""
        user = _document(doc, "replace")
        table, current = self._existing(doc_id, "Update")
        for name in ("_id", "_creationTime"):
            if name in user and user.pop(name) != current[name]:
                raise _system_field_error(table, name)
        self._put(table, current, self._checked(table, user))

    def delete(self, doc_id: str) -> None:
        """Delete a document."""
        table, current = self._existing(doc_id, "Delete")
        key = str(current["_id"])
        created = key in self._bulk or (key in self._seen and self._seen[key] is None)
        self._bulk.drop(key)
        if created:  # inserted by this transaction: deleting it leaves nothing to write
            self._writes.pop(key, None)
            return
        self._writes[key] = Write(table, key, None)

    def _put(self, table: str, current: Mapping[str, Any], user: Document) -> None:
        stored = {"_id": current["_id"], "_creationTime": current["_creationTime"], **user}
        if _same_document(stored, current):
            return  # a no-change write records nothing (compared by the total order: 1 != 1.0, -0.0 != 0.0)
        self._bulk.drop(str(current["_id"]))
        self._writes[str(current["_id"])] = Write(table, str(current["_id"]), stored)

    def _existing(self, doc_id: str, verb: str) -> tuple[str, Mapping[str, Any]]:
        self._check_open()
        table = self._table_of(doc_id)
        current = None if table is None else self._stored(table, str(doc_id))
        if table is None or current is None:
            raise NonexistentDocumentError(
                f"{verb} on nonexistent document ID {doc_id}: no document with this ID exists (it was "
                "deleted, or never inserted). Check the ID, or insert the document first.",
                id=str(doc_id),
            )
        return table, current

    def _checked(self, table: str, doc: Document, row: int | None = None) -> Document:
        """``doc`` checked and normalized; errors of a bulk insert's ``row`` name it in their path."""
        try:
            checked = check_document(doc)
        except InvalidValueError as err:
            if row is not None:
                in_row(err, row)  # the same error, now naming the row
            raise
        definition = self._definition(table)
        if definition is None:
            return checked
        path = "" if row is None else f"[{row}]"
        result: Document = definition.document.validate(checked, path=path, ids=self._numbers(), table=table)
        return result

    def _definition(self, table: str) -> TableDefinition | None:
        """The definition that documents written to ``table`` must match (``None``: they are not checked)."""
        schema = self.snapshot.catalog.schema
        return None if schema is None or not schema.schema_validation else schema.tables.get(table)

    def _declared_definition(self, table: str) -> TableDefinition | None:
        """The table's declared definition (validated or not): how a frame's columns are read."""
        return table_definition(self.snapshot.catalog.schema, table)

    def _layout(self, table: str) -> Layout:
        """The layout the table's documents are stored in."""
        return Layout.for_table(stored_definition(self.snapshot.catalog.schema, table), table=table)

    # --- committing -----------------------------------------------------------------------------------------

    def commit(self) -> int | None:
        """Commit every write; return the commit's LSN (``None`` when there was nothing to write)."""
        self._check_open()
        self._done = True
        if not self._writes and not self._bulk:
            return None
        writes = list(self._writes.values())
        if not self._bulk:
            seen = self._seen
            known = {w.id: seen[w.id] for w in writes if w.id in seen}
            self.commit_lsn = self._engine.commit(
                self.snapshot, writes, self._reads, self._new_tables, known=known
            )
            return self.commit_lsn
        with paused_gc():
            bulk = self._bulk.batches()
            self.commit_lsn = self._engine.commit(self.snapshot, writes, self._reads, self._new_tables, bulk)
        return self.commit_lsn

    def discard(self) -> None:
        """Drop every write; the transaction cannot be used afterwards."""
        self._done = True
        self._writes.clear()
        self._bulk = PendingBulk()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def _check_open(self) -> None:
        self._engine.check_usable()
        if self._done:
            raise ClosedError(
                "This transaction has already committed or been discarded. Start a new one with "
                "db.transaction().",
                resource="transaction",
            )

    # --- tables and IDs -------------------------------------------------------------------------------------

    def _numbers(self) -> Mapping[str, int]:
        numbers = self.snapshot.catalog.numbers
        return {**numbers, **self._new_tables} if self._new_tables else numbers

    def _table_number(self, table: str) -> int:
        numbers = self._numbers()
        number = numbers.get(table)
        if number is None:
            number = self._new_tables[table] = next_table_number(numbers)
        return number

    def _table_of(self, doc_id: str) -> str | None:
        number = table_number_for_lookup(doc_id)
        if number is None:
            return None
        table = _table_numbered(self.snapshot.catalog.numbers, number)
        if table is None:  # a table this transaction creates
            table = next((name for name, n in self._new_tables.items() if n == number), None)
        return table


def _same_document(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two documents are equal in the total order (the same fields, equal values; ``1 != 1.0``)."""
    if len(a) != len(b):
        return False
    for name, value in a.items():
        other = b.get(name, MISSING)
        if value is other:
            continue
        if isinstance(value, str) and isinstance(other, str):
            if value != other:
                return False
        elif other is MISSING or encode_value(value) != encode_value(other):
            return False
    return True


def _document(doc: object, method: str) -> Document:
    """``doc`` as a dict of its own; anything but a mapping is refused."""
    if not isinstance(doc, Mapping):
        raise InvalidValueError(
            f"{method} takes a document, a dict of field names to values, not {type(doc).__name__} "
            f"{doc!r:.80}; pass one such as {{'text': 'hello'}}.",
            path="",
            value=doc,
        )
    return dict(doc)


def check_rows(rows: object) -> None:
    """Refuse what ``insert_many`` cannot take as rows (a dict, a string, a lazy frame) before reading any."""
    if type(rows).__name__ == "LazyFrame":
        raise InvalidValueError(
            "insert_many takes a Polars DataFrame, not a LazyFrame: call .collect() on it first.",
            path="",
            value=None,
        )
    if rows is None or isinstance(rows, Mapping | str | bytes):
        raise InvalidValueError(
            f"insert_many takes rows (a list of dicts, a Polars frame or an Arrow table), not "
            f"{type(rows).__name__}; for one document use insert.",
            path="",
            value=rows,
        )


def _row(row: object, at: int) -> Document:
    """Row ``at`` of an ``insert_many`` as a dict of its own; a row that is not a mapping is refused."""
    if not isinstance(row, Mapping):
        raise InvalidValueError(
            f"Invalid value at [{at}]: each row of insert_many is a dict of field names to values, not a "
            f"{type(row).__name__}; pass dicts such as {{'text': 'hello'}}.",
            path=f"[{at}]",
            value=row,
        )
    return dict(row)


def read_by_id(snapshot: Snapshot, doc_id: str) -> Document | None:
    """The document with this ID at ``snapshot``, or ``None`` (also for a string that is not an ID of any
    table), recording no read: ``db.get`` outside a transaction, which has nothing to conflict with."""
    number = table_number_for_lookup(doc_id)
    table = None if number is None else _table_numbered(snapshot.catalog.numbers, number)
    state = None if table is None else snapshot.tables.get(table)
    return None if state is None else state.get_copy(str(doc_id), snapshot.lsn)


_BY_NUMBER: dict[int, tuple[Mapping[str, int], dict[int, str]]] = {}


def _table_numbered(numbers: Mapping[str, int], number: int) -> str | None:
    """The table of ``numbers`` (a catalog's: its reverse is kept) that has ``number``."""
    known = _BY_NUMBER.get(id(numbers))
    if known is None or known[0] is not numbers:
        if len(_BY_NUMBER) > 64:
            _BY_NUMBER.clear()
        known = _BY_NUMBER[id(numbers)] = (numbers, {n: name for name, n in numbers.items()})
    return known[1].get(number)


def _system_field_error(table: str, name: str) -> SchemaValidationError:
    return SchemaValidationError(
        f"Failed to insert or update a document in table {table!r}: the system field `{name}` cannot be "
        "changed. Leave it out of the write.",
        table=table,
        path=f".{name}",
        value=None,
        validator="",
    )
